"""A group's batches augmented at once get what each model's own BatchAugment gives, bit for bit."""
import pytest
import torch

from helpers import augment as A
from helpers.ablate import variants
from helpers.batch_augment import BatchAugment, apply_drawn, draws_ahead, sharing_groups
from helpers.batch_randaugment import BatchRandAugment
from helpers.recipe import Recipe
from helpers.speed import operator_calls


def batches(m, b, seed=0):
    torch.manual_seed(seed)
    images = torch.randint(0, 256, (m, b, 3, 32, 32), dtype=torch.uint8)
    images[:, :, :, :6] = 77  # flat rows: AutoContrast, Equalize and Contrast have edge cases there
    return images, torch.randint(0, 10, (m, b))


def each_alone(transforms, images, labels):
    return [t(x, y) for t, x, y in zip(transforms, images, labels)]


def together(transforms, images, labels):
    drawn = [t.draw(x, y) for t, x, y in zip(transforms, images, labels)]
    x, targets = apply_drawn(drawn, images)
    return list(zip(x, targets))


def assert_identical(expected, got):
    for k, ((x, y), (x2, y2)) in enumerate(zip(expected, got)):
        assert x2.dtype == x.dtype and torch.equal(x2, x), f"model {k}'s images differ"
        assert y2.dtype == y.dtype and torch.equal(y2, y), f"model {k}'s targets differ"


@pytest.mark.parametrize("batch", [6, 7])  # an odd batch pairs its middle image with itself
def test_every_ablation_variant_in_one_group_gets_its_own_transform_bit_for_bit(batch):
    recipes = list(variants().values())
    images, labels = batches(len(recipes), batch)
    methods = set()
    for step in range(4):  # enough steps for MixUp and CutMix batches side by side
        make = lambda: [r.batch_transform(generator=torch.Generator().manual_seed(100 * step + k))  # noqa: E731
                        for k, r in enumerate(recipes)]
        alone, group = each_alone(make(), images, labels), make()
        assert_identical(alone, together(group, images, labels))
        methods |= {t.last_mix.method for t in group if t.last_mix}
    assert methods == {"mixup", "cutmix"}


def test_mixing_stages_of_one_group_differ_per_model():
    """The group's models really drew differently: not one model's choices copied to all."""
    images, labels = batches(4, 8)
    transforms = [Recipe().batch_transform(generator=torch.Generator().manual_seed(k)) for k in range(4)]
    got = together(transforms, images[0].expand(4, *images.shape[1:]).contiguous(), labels[0].expand(4, 8))
    assert all(not torch.equal(got[0][0], got[k][0]) for k in range(1, 4))
    # mixing alone, on the same images and labels: the outputs differ only if each model mixed its own way
    mixing_only = [BatchAugment(crop_flip=False, reprob=0.0, generator=torch.Generator().manual_seed(k))
                   for k in range(4)]
    mixed = together(mixing_only, images[0].expand(4, *images.shape[1:]).contiguous(), labels[0].expand(4, 8))
    assert len({(t.last_mix.method, t.last_mix.lam) for t in mixing_only}) == 4
    assert all(not torch.equal(mixed[0][0], mixed[k][0]) for k in range(1, 4))  # the images
    assert all(not torch.equal(mixed[0][1], mixed[k][1]) for k in range(1, 4))  # the targets


def test_the_ablation_shares_one_group_and_hooks_of_their_own_stay_alone():
    table = [r.batch_transform() for r in variants().values()]
    assert sharing_groups(table) == [list(range(len(table)))]
    own_hook = BatchAugment(per_image=lambda x: 255 - x)
    nearest = BatchAugment(per_image=BatchRandAugment.from_string(Recipe().aa, interpolation="nearest"))
    cifar100 = BatchAugment(num_classes=100)
    padding2 = BatchAugment(padding=2)
    no_crop = BatchAugment(crop_flip=False)  # joins any padding
    transforms = [table[1], own_hook, nearest, cifar100, table[0], padding2, no_crop, table[2], lambda x, y: (x, y)]
    assert sharing_groups(transforms) == [[0, 4, 6, 7], [1], [2], [3], [5], [8]]
    assert not draws_ahead(own_hook) and not draws_ahead(transforms[-1]) and draws_ahead(nearest)
    images, labels = batches(2, 4)
    with pytest.raises(ValueError, match="sharing_groups"):
        apply_drawn([table[1].draw(images[0], labels[0]), nearest.draw(images[1], labels[1])], images)


def test_models_without_crop_or_randaugment_and_with_other_slot_counts_join_a_group():
    images, labels = batches(4, 5)
    make = lambda: [  # noqa: E731
        BatchAugment(crop_flip=False, generator=torch.Generator().manual_seed(1)),
        BatchAugment(per_image=BatchRandAugment.from_string("rand-n3-m9-mstd0.5-inc1",
                                                              generator=torch.Generator().manual_seed(2)),
                     generator=torch.Generator().manual_seed(3)),
        BatchAugment(per_image=BatchRandAugment.from_string("rand-n1-m5-inc1", generator=torch.Generator().manual_seed(4)),
                     mixup=0, cutmix=0, smoothing=0, reprob=0, generator=torch.Generator().manual_seed(5)),
        BatchAugment(crop_flip=False, mixup=0, cutmix=0, smoothing=0, reprob=0)]
    assert sharing_groups(make()) == [[0, 1, 2, 3]]
    assert_identical(each_alone(make(), images, labels), together(make(), images, labels))


def test_a_hook_of_its_own_still_runs_alone_in_the_one_model_call():
    hook = BatchAugment(crop_flip=False, mixup=0, cutmix=0, smoothing=0, reprob=0, per_image=lambda x: 255 - x)
    images, labels = batches(1, 3)
    x, targets = hook(images[0], labels[0])
    assert torch.equal(x, A.normalize(255 - images[0])) and torch.equal(targets, labels[0])


def test_a_group_makes_a_model_s_device_calls_once_not_once_per_model():
    """Counted on the meta device (what a GPU would launch): a group of 8 full-recipe models makes
    under twice one model's kernel launches, where eight models one by one make eight times as many."""
    def launches(m):
        images = torch.empty(m, 16, 3, 32, 32, dtype=torch.uint8, device="meta")
        labels = torch.empty(m, 16, dtype=torch.long, device="meta")
        transforms = [Recipe().batch_transform() for _ in range(m)]
        torch.manual_seed(0)
        return operator_calls(lambda: together(transforms, images, labels), on="meta")[1]
    one, eight = launches(1), launches(8)
    assert one > 100 and eight < 2 * one, (one, eight)


def test_groups_can_be_capped_in_size():
    table = [r.batch_transform() for r in variants().values()]
    assert sharing_groups(table[:5], most=2) == [[0, 1], [2, 3], [4]]


def test_a_hook_of_its_own_draws_between_the_crop_and_the_erasing_as_before():
    """Its random numbers come after the crop's and before erasing's and mixing's, as the pieces
    of helpers.augment called in order draw them."""
    def hook(x):  # draws while it applies
        return torch.where(torch.rand(x.shape[0], 1, 1, 1) < 0.5, 255 - x, x)
    images, labels = batches(1, 6)
    torch.manual_seed(3)
    x, targets = BatchAugment(per_image=hook)(images[0], labels[0])
    torch.manual_seed(3)
    expected = A.random_erase(A.normalize(hook(A.random_crop_flip(images[0]))))
    expected, expected_targets, _ = A.mix_batch(expected, labels[0], 10)
    assert torch.equal(x, expected) and torch.equal(targets, expected_targets)
    with pytest.raises(ValueError, match="draws while it applies"):
        BatchAugment(per_image=hook).draw(images[0], labels[0])


def test_a_zero_slot_randaugment_joins_a_model_without_one():
    images, labels = batches(2, 4)
    make = lambda: [BatchAugment(per_image=BatchRandAugment.from_string("rand-n0-m9"),  # noqa: E731
                                 generator=torch.Generator().manual_seed(0)),
                    BatchAugment(generator=torch.Generator().manual_seed(1))]
    assert_identical(each_alone(make(), images, labels), together(make(), images, labels))


def test_a_group_leaves_the_labels_of_a_model_without_soft_targets_untouched():
    images, labels = batches(2, 4)
    labels[1, 0] = -100  # e.g. an ignore index: never turned into a target
    make = lambda: [BatchAugment(generator=torch.Generator().manual_seed(0)),  # noqa: E731
                    BatchAugment(mixup=0, cutmix=0, smoothing=0, generator=torch.Generator().manual_seed(1))]
    got = together(make(), images, labels)
    assert torch.equal(got[1][1], labels[1])


def test_label_smoothing_out_of_range_is_refused_when_the_transform_is_made():
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        BatchAugment(smoothing=1.5)


def test_negative_padding_is_refused_when_the_transform_is_made():
    with pytest.raises(ValueError, match="padding must be >= 0"):
        BatchAugment(padding=-1)


@pytest.mark.parametrize("reprob", [0.25, 0.0])
def test_the_transform_is_the_pieces_of_helpers_augment_drawing_in_order(reprob):
    """The path training takes (draw, then apply): crop + flip, normalize, erasing, mixing, from
    one generator in this order; without erasing, nothing is drawn for it."""
    images, labels = batches(1, 6)
    transform = BatchAugment(reprob=reprob, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    methods = set()
    for _ in range(8):  # MixUp and CutMix batches
        x, targets = transform(images[0], labels[0])
        expected = A.normalize(A.random_crop_flip(images[0], generator=g))
        if reprob:
            expected = A.random_erase(expected, p=reprob, generator=g)
        expected, expected_targets, info = A.mix_batch(expected, labels[0], 10, generator=g)
        assert torch.equal(x, expected) and torch.equal(targets, expected_targets)
        methods.add(info.method)
    assert methods == {"mixup", "cutmix"}


def test_without_mixing_or_smoothing_the_targets_are_the_int_labels():
    images, labels = batches(1, 4)
    transform = BatchAugment(mix_prob=0.0, smoothing=0.0, generator=torch.Generator().manual_seed(0))
    _, targets = transform(images[0], labels[0])
    assert targets.dtype == torch.long and torch.equal(targets, labels[0])


def test_a_model_without_crop_joins_a_group_of_another_padding():
    images, labels = batches(2, 4)
    make = lambda: [BatchAugment(generator=torch.Generator().manual_seed(0)),  # noqa: E731
                    BatchAugment(crop_flip=False, padding=2, generator=torch.Generator().manual_seed(1))]
    assert sharing_groups(make()) == [[0, 1]]
    assert_identical(each_alone(make(), images, labels), together(make(), images, labels))


def test_randaugment_hooks_with_other_fill_colours_apply_apart():
    hooks = [BatchRandAugment.from_string(Recipe().aa, fill=fill) for fill in ((0, 0, 0), (255, 255, 255))]
    assert sharing_groups([BatchAugment(per_image=hook) for hook in hooks]) == [[0], [1]]
