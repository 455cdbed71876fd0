"""helpers.auto_augment: the policy as timm and the paper list it, the PIL version image for image
equal to timm's AutoAugment under the same seed, the batched version equal to a PIL replay of its
own draws, the draws' distribution, and its place in the recipe and the training pipeline."""
import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import auto_augment as timm_aa

from helpers import augment as A
from helpers import auto_augment as AA
from helpers.batch_augment import BatchAugment, draws_ahead, sharing_groups
from helpers.batch_randaugment import apply_choices, op_choices
from helpers.constants import CIFAR_FILL
from helpers.recipe import Recipe
from test_batch_randaugment import diff, gen, pil_replay, to_pil

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def cifar(cifar_train_small):
    return cifar_train_small.images.permute(0, 3, 1, 2).contiguous()


def test_the_policy_is_timms_original_imagenet_policy():
    theirs = timm_aa.auto_augment_policy_original({"img_mean": CIFAR_FILL})
    assert [[(op.name, op.prob, op.magnitude) for op in sub] for sub in theirs] == \
        [list(sub) for sub in AA.IMAGENET_POLICY]
    assert len(AA.IMAGENET_POLICY) == 25 and {len(sub) for sub in AA.IMAGENET_POLICY} == {2}


def test_signed_ops_are_those_whose_argument_depends_on_the_sign():
    for name in A.LEVEL_TO_ARGUMENT:
        turns = A.op_argument(name, 5.0, -1) != A.op_argument(name, 5.0, 1)
        assert turns == (name in A.SIGNED_OPS), name


def test_posterize_original_keeps_4_to_8_bits_as_timms():
    for m in range(11):
        assert A.op_argument("PosterizeOriginal", m) == timm_aa.LEVEL_TO_ARG["PosterizeOriginal"](m, {})[0]
    assert [A.op_argument("PosterizeOriginal", m) for m in (0, 10)] == [4, 8]


def test_pil_version_gives_timms_images_for_the_same_seed(cifar):
    hparams = {"img_mean": CIFAR_FILL, "interpolation": Image.Resampling.BICUBIC}
    theirs = timm_aa.auto_augment_transform("original", hparams)
    ours = AA.AutoAugment(rng=random.Random(5))
    random.seed(5)
    applied = 0
    for img in to_pil(cifar):
        expected = np.asarray(theirs(img))
        assert np.array_equal(np.asarray(ours(img)), expected), ours.last_ops
        applied += len(ours.last_ops)
    assert applied > len(cifar) // 2  # the policies really ran


def test_batched_version_equals_a_pil_replay_of_its_draws(cifar):
    draws = AA.sample_auto_augment(len(cifar), generator=gen(1))
    assert draws.ops.shape == (2, len(cifar)) and draws.applied.any()
    out = apply_choices(cifar, *op_choices(draws, AA.POOL), AA.POOL, CIFAR_FILL, "nearest")
    assert diff(out, pil_replay(cifar, draws, AA.POOL, "nearest"))[0] == 0
    seeded = AA.BatchAutoAugment(interpolation="nearest", generator=gen(1))
    assert torch.equal(seeded(cifar), out)  # the call is sample, then apply


def test_draws_follow_the_policy():
    n = 20_000
    draws = AA.sample_auto_augment(n, generator=gen(2))
    # a sub-policy is known by its ops and magnitudes (the policy's repeated entries are identical)
    table = {tuple(AA.POOL.index(name) for name, _, _ in sub) + tuple(float(m) for _, _, m in sub): sub
             for sub in AA.IMAGENET_POLICY}
    assert len({tuple(sub) for sub in AA.IMAGENET_POLICY}) == len(table)
    keys = list(zip(*[t.tolist() for t in (draws.ops[0], draws.ops[1], draws.magnitudes[0], draws.magnitudes[1])]))
    assert set(keys) == set(table)  # only the policy's sub-policies, and every one of them
    for slot in (0, 1):
        probs = torch.tensor([table[k][slot][1] for k in keys], dtype=torch.float64)
        # applied as often as the chosen ops' probabilities say (4 standard errors)
        expected, spread = probs.sum().item(), (probs * (1 - probs)).sum().sqrt().item()
        assert abs(draws.applied[slot].sum().item() - expected) < 4 * spread
        assert not draws.applied[slot][probs == 0].any()
        signed = torch.tensor([AA.POOL[o] in A.SIGNED_OPS for o in draws.ops[slot].tolist()])
        assert (draws.signs[slot][~signed] == 1).all()
        assert abs((draws.signs[slot][signed] < 0).double().mean().item() - 0.5) < 0.05


def test_recipe_and_pipeline_take_it_by_deits_name(cifar):
    transform = Recipe(aa="original").batch_transform(generator=gen(0))
    assert isinstance(transform.per_image, AA.BatchAutoAugment) and draws_ahead(transform)
    images, targets = transform(cifar[:16], torch.arange(16) % 10)
    assert images.shape == (16, 3, 32, 32) and targets.shape == (16, 10)
    # RandAugment and AutoAugment draw from different op pools: two groups in the together trainer
    assert sharing_groups([Recipe().batch_transform(), transform, Recipe().batch_transform()]) == [[0, 2], [1]]
    drawn = BatchAugment(per_image=AA.BatchAutoAugment()).draw(cifar[:4], torch.arange(4))
    assert drawn.rand_augment.ops.shape == (2, 4)  # drawn ahead, one sub-policy's two ops per image


@pytest.mark.parametrize("bad, says", [("auto", "takes a RandAugment string"), ("rand-x9", "Cannot read 'x9'")])
def test_a_wrong_aa_string_names_what_it_takes(bad, says):
    with pytest.raises(ValueError, match=says):
        Recipe(aa=bad)
    assert Recipe(aa=None).batch_transform().per_image is None and Recipe(aa="").batch_transform().per_image is None


def test_a_malformed_policy_is_refused():
    with pytest.raises(ValueError, match="at least one sub-policy"):
        AA.BatchAutoAugment(policy=())
    with pytest.raises(ValueError, match="not \\(op, probability, magnitude\\)"):
        AA.AutoAugment(policy=((("Rotate", 0.5), ("Invert", 1.0, 0)),))
    with pytest.raises(ValueError, match="sub-policy 0"):
        AA.AutoAugment(policy=((("Blur", 0.5, 3), ("Rotate", 0.5, 3)),))
    with pytest.raises(ValueError, match="same number of ops"):
        AA.BatchAutoAugment(policy=((("Rotate", 0.5, 3),), (("Rotate", 0.5, 3), ("Invert", 1.0, 0))))
    with pytest.raises(ValueError, match="PIL images"):
        AA.AutoAugment()(torch.zeros(3, 32, 32))
