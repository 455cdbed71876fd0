"""helpers.augment: shapes, errors, exact parity with timm where the math is deterministic,
statistical parity where it is random, and the Pillow 13 regression."""
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing as TimmRandomErasing
from timm.data import auto_augment as timm_aa
from timm.data.mixup import cutmix_bbox_and_lam, mixup_target
from timm.loss import SoftTargetCrossEntropy
from torchvision import transforms as T

from helpers import augment as A
from helpers.batch_augment import BatchAugment
from helpers.losses import soft_target_cross_entropy
from helpers.constants import CIFAR_FILL, MEAN, STD


def noise_images(b, c=3, h=32, w=32, seed=0):
    return torch.randint(0, 256, (b, c, h, w), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov distance between the empirical CDFs of a and b."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    return np.max(np.abs(np.searchsorted(a, grid, "right") / len(a)
                         - np.searchsorted(b, grid, "right") / len(b)))


# --- crop + flip, normalize -------------------------------------------------------------------

def test_random_crop_flip_is_a_zero_padded_crop_per_image_with_independent_offsets():
    x = noise_images(40)
    out = A.random_crop_flip(x, padding=4, generator=gen(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (4, 4, 4, 4))
    found = []
    for i in range(len(x)):
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if flip else c)(
                       padded[i, :, dy:dy + 32, dx:dx + 32]))]
        assert len(matches) == 1, f"image {i} is not a single crop of its padded self"
        found.append(matches[0])
    assert len({f[:2] for f in found}) > 20  # offsets drawn per image, not per batch
    assert 5 < sum(f[2] for f in found) < 35  # flips too


def test_random_crop_flip_reproducible_and_padding_zero_only_flips():
    x = noise_images(16)
    assert torch.equal(A.random_crop_flip(x, generator=gen(3)), A.random_crop_flip(x, generator=gen(3)))
    out = A.random_crop_flip(x, padding=0, generator=gen(0))
    for a, b in zip(out, x):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))


def test_crop_offsets_cover_every_shift_evenly_and_half_the_images_flip():
    offsets, flips = A.crop_flip_choices(9000, padding=4, generator=gen(0))
    counts = torch.bincount(offsets.flatten(), minlength=9)
    assert len(counts) == 9 and (counts - 2000).abs().max() < 200  # 0..8, each 1/9 of 2 x 9000 draws
    assert abs(flips.float().mean().item() - 0.5) < 0.02


def test_normalize_matches_torchvision():
    x = noise_images(4)
    expected = T.Normalize(MEAN, STD)(x.float() / 255)
    torch.testing.assert_close(A.normalize(x), expected)
    with pytest.raises(ValueError, match="uint8"):
        A.normalize(x.float() / 255)


@pytest.mark.parametrize("bad", [torch.zeros(3, 32, 32, dtype=torch.uint8),
                                 torch.zeros(2, 32, 32, 3, dtype=torch.uint8)])
def test_bad_shapes_raise_value_error_naming_the_layout(bad):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)|channels"):
        A.normalize(bad)
    with pytest.raises(ValueError):
        BatchAugment()(bad, torch.zeros(len(bad), dtype=torch.long))


def test_batch_augment_rejects_float_images_and_mismatched_labels():
    with pytest.raises(ValueError, match="uint8"):
        BatchAugment()(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        BatchAugment()(noise_images(4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="0..9"):
        A.smooth_one_hot(torch.tensor([0, 10]), 10)


# --- label smoothing, MixUp, CutMix -----------------------------------------------------------

@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("lam", [1.0, 0.7, 0.123])
def test_mixed_targets_equal_timms(smoothing, lam):
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    expected = mixup_target(labels, 10, lam, smoothing)
    assert torch.equal(A.mix_targets(labels, 10, lam, smoothing), expected)
    smoothed = A.smooth_one_hot(labels, 10, smoothing)
    torch.testing.assert_close(smoothed.sum(1), torch.ones(8))
    assert smoothed[0, 3].item() == pytest.approx(1 - smoothing + smoothing / 10)


def replay_timm(mixer, x, labels, seed):
    """Run timm's Mixup with numpy seeded; return its output images and targets."""
    np.random.seed(seed)
    return mixer(x.clone(), labels)


@pytest.mark.parametrize("seed", range(5))
def test_mixup_equals_timm_for_the_same_lambda_and_pairing(seed):
    x, labels = A.normalize(noise_images(8, seed=seed)), torch.arange(8) % 10
    timm_x, timm_t = replay_timm(Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1,
                                       num_classes=10), x, labels, seed)
    np.random.seed(seed)
    np.random.rand()  # timm's "apply at all?" draw
    lam = float(np.random.beta(0.8, 0.8))
    assert torch.equal(A.mixup(x, lam), timm_x)
    assert torch.equal(A.mix_targets(labels, 10, lam, 0.1), timm_t)


@pytest.mark.parametrize("seed", range(8))
def test_cutmix_equals_timm_for_the_same_box_including_clipping(seed):
    x, labels = A.normalize(noise_images(6, seed=seed)), torch.tensor([0, 1, 2, 3, 4, 5])
    timm_x, timm_t = replay_timm(Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1,
                                       num_classes=10), x, labels, seed)
    np.random.seed(seed)
    np.random.rand()
    lam = float(np.random.beta(1.0, 1.0))
    center = (np.random.randint(0, 32), np.random.randint(0, 32))
    box = A.cutmix_box(32, 32, lam, center=center)
    corrected = A.cutmix_lambda(box, 32, 32)
    assert torch.equal(A.cutmix(x, box), timm_x)
    assert torch.equal(A.mix_targets(labels, 10, corrected, 0.1), timm_t)



def test_cutmix_box_equals_timms_rand_bbox_for_odd_and_even_sides():
    """Notebook 01 compares a CutMix box with timm's bit for bit; odd sides are where timm
    changed: from 1.0.29 its box ends (cut + 1) // 2 after the centre, before that cut // 2."""
    from timm.data.mixup import rand_bbox

    sides = set()
    for seed, lam in enumerate(np.linspace(0.02, 0.98, 40)):
        np.random.seed(seed)
        timm_box = tuple(int(v) for v in rand_bbox((3, 32, 32), lam))
        np.random.seed(seed)
        center = (np.random.randint(0, 32), np.random.randint(0, 32))
        sides.add(int(32 * math.sqrt(1 - lam)) % 2)
        assert A.cutmix_box(32, 32, lam, center=center) == timm_box, (
            f"lam={lam:.3f}, centre {center}: timm's box {timm_box}. timm older than 1.0.29 "
            f"makes odd sides one pixel short; notebook 01 needs timm>=1.0.29.")
    assert sides == {0, 1}  # both odd and even sides were tried


def test_cutmix_box_is_clipped_and_lambda_counts_the_pasted_area():
    box = A.cutmix_box(32, 32, lam=0.75, center=(0, 31))  # 16x16 asked, in a corner
    assert box == (0, 8, 23, 32)
    assert A.cutmix_lambda(box, 32, 32) == pytest.approx(1 - 8 * 9 / 1024)
    assert A.cutmix_box(32, 32, lam=0.75, center=(16, 16)) == (8, 24, 8, 24)
    x = A.normalize(noise_images(4))
    out = A.cutmix(x, (8, 24, 8, 24))
    assert torch.equal(out[0, :, 8:24, 8:24], x[3, :, 8:24, 8:24])
    assert torch.equal(out[0, :, :8], x[0, :, :8])


def test_switch_lambda_distributions_and_frequency_match_timm():
    x, labels = A.normalize(noise_images(2, h=8, w=8)), torch.tensor([0, 1])
    g = gen(0)
    ours = {"mixup": [], "cutmix": []}
    for _ in range(4000):
        _, _, info = A.mix_batch(x, labels, 10, 0.8, 1.0, switch_prob=0.5, generator=g)
        ours[info.method].append(info.lam)
    mixer = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, num_classes=10)
    np.random.seed(0)
    theirs = {True: [], False: []}
    for _ in range(4000):
        lam, use_cutmix = mixer._params_per_batch()
        theirs[use_cutmix].append(lam)
    assert abs(len(ours["cutmix"]) / 4000 - 0.5) < 0.03
    assert ks_statistic(ours["mixup"], theirs[False]) < 0.05
    # Beta(0.8, 0.8): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.0962
    assert np.mean(ours["mixup"]) == pytest.approx(0.5, abs=0.02)
    assert np.var(ours["mixup"]) == pytest.approx(1 / (4 * 2.6), abs=0.01)
    # CutMix's lambda is area-corrected, so compare with timm's corrected lambda on 8x8 images
    np.random.seed(1)
    corrected = [cutmix_bbox_and_lam((8, 8), lam)[1] for lam in theirs[True]]
    assert ks_statistic(ours["cutmix"], corrected) < 0.06


def test_switch_prob_is_the_share_of_cutmix_batches_when_both_are_on():
    g = gen(0)
    methods = [A.draw_mix(32, 32, mixup_alpha=0.8, cutmix_alpha=0.3, switch_prob=0.2, generator=g).method
               for _ in range(2000)]
    assert abs(methods.count("cutmix") / 2000 - 0.2) < 0.03 and "none" not in methods


def test_mix_prob_zero_and_alpha_zero_leave_images_alone():
    x, labels = A.normalize(noise_images(4)), torch.arange(4)
    out, targets, info = A.mix_batch(x, labels, 10, prob=0.0, smoothing=0.1, generator=gen())
    assert info.method == "none" and torch.equal(out, x)
    assert torch.equal(targets, A.smooth_one_hot(labels, 10, 0.1))
    _, _, info = A.mix_batch(x, labels, 10, mixup_alpha=0.0, cutmix_alpha=1.0, generator=gen())
    assert info.method == "cutmix"  # one alpha at zero turns that method off, not mixing
    out, targets, info = A.mix_batch(x, labels, 10, mixup_alpha=0.0, cutmix_alpha=0.0, smoothing=0.1, generator=gen())
    assert info.method == "none" and torch.equal(out, x)  # both at zero: nothing mixes, whatever prob says
    assert torch.equal(targets, A.smooth_one_hot(labels, 10, 0.1))


def test_odd_batch_timm_asserts_ours_pairs_the_middle_image_with_itself():
    x, labels = A.normalize(noise_images(5)), torch.tensor([0, 1, 2, 3, 4])
    with pytest.raises(AssertionError):
        A.starter_mixup()(x.clone(), labels)
    out, targets, info = A.mix_batch(x, labels, 10, cutmix_alpha=0.0, smoothing=0.0, generator=gen())
    assert info.method == "mixup" and 0 < info.lam < 1
    torch.testing.assert_close(out[2], x[2])
    assert targets[2, 2].item() == pytest.approx(1.0)
    torch.testing.assert_close(targets.sum(1), torch.ones(5))


def test_soft_target_cross_entropy_matches_timm_and_hard_labels():
    logits = torch.randn(6, 10, generator=gen(2))
    targets = A.mix_targets(torch.tensor([0, 1, 2, 3, 4, 5]), 10, 0.3, 0.1)
    torch.testing.assert_close(soft_target_cross_entropy(logits, targets),
                               SoftTargetCrossEntropy()(logits, targets))
    labels = torch.tensor([9, 8, 7, 6, 5, 4])
    torch.testing.assert_close(soft_target_cross_entropy(logits, F.one_hot(labels, 10).float()),
                               F.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match="F.cross_entropy"):
        soft_target_cross_entropy(logits, labels)


def test_cross_entropy_with_label_smoothing_smooths_mixed_targets_a_second_time():
    logits = torch.randn(6, 10, generator=gen(4))
    targets = A.mix_targets(torch.tensor([0, 1, 2, 3, 4, 5]), 10, 0.6, 0.1)
    double = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, targets)
    assert not torch.allclose(double, soft_target_cross_entropy(logits, targets))
    torch.testing.assert_close(double, soft_target_cross_entropy(logits, 0.9 * targets + 0.01))


# --- Random Erasing ---------------------------------------------------------------------------

def test_random_erasing_statistics_match_timm():
    n = 3000
    ours = A.erase_boxes(n, 32, 32, p=0.25, generator=gen(0))
    our_area = (ours[:, 2] * ours[:, 3]).float() / 1024
    random.seed(0)
    eraser = TimmRandomErasing(probability=0.25, mode="pixel", device="cpu")
    zeros = torch.zeros(n, 1, 32, 32)
    erased_masks = eraser(zeros)[:, 0] != 0
    their_area = erased_masks.float().mean(dim=(1, 2))
    assert abs((our_area > 0).float().mean() - (their_area > 0).float().mean()) < 0.03
    ours_on, theirs_on = our_area[our_area > 0], their_area[their_area > 0]
    assert ks_statistic(ours_on, theirs_on) < 0.1
    assert 0.02 * 0.8 <= ours_on.min() and ours_on.max() <= 1 / 3 * 1.2
    erased = their_area > 0  # timm's box sides, read back from its erased pixels
    their_h = (eraser_out := erased_masks[erased]).any(dim=2).sum(1).float()
    their_w = eraser_out.any(dim=1).sum(1).float()
    our_aspect = (ours[:, 2].float() / ours[:, 3].float())[our_area > 0]
    assert ks_statistic(our_aspect.log(), (their_h / their_w).log()) < 0.1
    assert our_aspect.min() < 0.4 and our_aspect.max() > 2.5  # log-uniform over [0.3, 1/0.3]


def test_random_erasing_fills_the_box_with_standard_normal_noise_and_leaves_the_rest():
    x = A.normalize(noise_images(200, seed=5))
    out = A.random_erase(x, p=1.0, generator=gen(7))
    boxes = A.erase_boxes(200, 32, 32, p=1.0, generator=gen(7))
    inside = torch.zeros(200, 1, 32, 32, dtype=torch.bool)
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        inside[i, :, top:top + h, left:left + w] = True
    assert inside.any(dim=(1, 2, 3)).all()  # p=1: every image erased
    mask = inside.expand_as(x)
    assert torch.equal(out[~mask], x[~mask])
    assert not torch.equal(out[mask], x[mask])
    assert out[mask].mean().abs() < 0.02 and (out[mask].std() - 1).abs() < 0.02
    assert torch.equal(A.RandomErasing(p=1.0, generator=gen(7))(x), out)


def test_random_erasing_redraws_boxes_that_do_not_fit():
    # Half the image in area: only aspect ratios in (1/2, 2) fit, about 58% of draws.
    boxes = A.erase_boxes(2000, 32, 32, p=1.0, min_area=0.5, max_area=0.5, generator=gen(1))
    erased = boxes[:, 2] > 0
    assert erased.float().mean() > 0.99
    assert boxes[erased, 2].max() < 32 and boxes[erased, 3].max() < 32
    assert (boxes[:, 0] + boxes[:, 2]).max() <= 32 and (boxes[:, 1] + boxes[:, 3]).max() <= 32


def test_erasing_boxes_from_given_draws_are_the_ones_worked_out_by_hand():
    # A 32 x 16 image, two attempts per image. Draws u = 1, v = 1: area 512 / 3, aspect 1 / 0.3, so
    # h = round(sqrt(568.9)) = 24 and w = round(sqrt(51.2)) = 7; v = 0 swaps them (w = 24 > 16: no fit).
    f64 = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    erase = f64(0.1, 0.9, 0.0)  # p = 0.25: the second image is not erased
    area = f64([1.0, 1.0], [0.5, 0.5], [1.0, 1.0])
    aspect = f64([0.0, 1.0], [0.5, 0.5], [0.0, 0.0])  # the first fits at its second attempt, the third never
    top, left = f64(0.999, 0.5, 0.5), f64(0.999, 0.5, 0.5)  # near 1: the box ends at the far edges
    boxes = A.boxes_from_draws((erase, area, aspect, top, left), 32, 16, p=0.25)
    assert boxes.tolist() == [[8, 9, 24, 7], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_random_erasing_single_image_and_errors():
    img = A.normalize(noise_images(1))[0]
    assert A.random_erase(img, p=1.0, generator=gen()).shape == img.shape
    assert torch.equal(A.random_erase(img, p=0.0, generator=gen()), img)
    with pytest.raises(ValueError, match="normalize"):
        A.random_erase(noise_images(2))
    with pytest.raises(ValueError, match="probability"):
        A.random_erase(img, p=2.0)


# --- RandAugment ------------------------------------------------------------------------------

def test_parse_rand_augment_strings():
    c = A.parse_rand_augment("rand-m9-mstd0.5-inc1")
    assert (c.n, c.m, c.mstd, c.mmax, c.inc, c.p) == (2, 9.0, 0.5, 10.0, True, 0.5)
    c = A.parse_rand_augment("rand-n3-m7-mmax12-p0.8")
    assert (c.n, c.m, c.mstd, c.mmax, c.inc, c.p) == (3, 7.0, 0.0, 12.0, False, 0.8)
    assert math.isinf(A.parse_rand_augment("rand-mstd101").mstd)
    for bad in ("augmix-m9", "rand-q3", "rand-m"):
        with pytest.raises(ValueError, match="rand-m9-mstd0.5-inc1"):
            A.parse_rand_augment(bad)


def test_only_an_mstd_above_100_means_uniform_magnitudes():
    assert A.parse_rand_augment("rand-mstd100").mstd == 100.0  # timm's rule: mstd > 100
    assert math.isinf(A.parse_rand_augment("rand-mstd100.5").mstd)


def cifar_like_image(seed=0, size=32):
    rng = np.random.default_rng(seed)
    smooth = np.kron(rng.integers(0, 256, (size // 4, size // 4, 3)), np.ones((4, 4, 1)))
    return Image.fromarray(smooth.astype(np.uint8))



def test_the_two_pools_share_nine_ops_and_differ_in_six():
    """What notebook 01 says about timm's two RandAugment pools."""
    shared = set(A.OPS_STANDARD) & set(A.OPS_INCREASING)
    standard_only = [n for n in A.OPS_STANDARD if n not in shared]
    assert len(A.OPS_STANDARD) == len(A.OPS_INCREASING) == 15
    assert len(shared) == 9 and len(shared | set(A.OPS_INCREASING) | set(A.OPS_STANDARD)) == 21
    assert standard_only == ["Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness"]
    assert sorted(n for n in A.OPS_INCREASING if n not in shared) == sorted(n + "Increasing" for n in standard_only)
    # The shared ops with a magnitude get stronger as M grows; the three others take none.
    for name in shared:
        values = [A.op_argument(name, m) for m in range(11)]
        if values[0] is None:
            assert name in ("AutoContrast", "Equalize", "Invert")
        else:
            assert values == sorted(values) and values[-1] > values[0], name


@pytest.mark.parametrize("name", sorted(set(A.OPS_STANDARD + A.OPS_INCREASING)))
def test_every_op_equals_timms_at_several_magnitudes_and_both_signs(name, monkeypatch):
    img = cifar_like_image(1)
    kwargs = dict(fillcolor=CIFAR_FILL, resample=Image.Resampling.BICUBIC)
    for sign in (1, -1):
        monkeypatch.setattr(timm_aa, "_randomly_negate", lambda v, s=sign: s * v)
        for m in (0.0, 2.5, 5.0, 7.0, 9.0, 9.7):
            if name == "Posterize" and m < 2.5:
                continue  # timm asks Pillow for 0 bits here; covered by the regression test
            level_fn = timm_aa.LEVEL_TO_ARG[name]
            args = level_fn(m, {}) if level_fn else ()
            if args:
                assert A.op_argument(name, m, sign) == args[0]
            expected = timm_aa.NAME_TO_OP[name](img, *args, **kwargs)
            ours = A.apply_op(img, name, m, sign)
            assert np.array_equal(np.asarray(ours), np.asarray(expected)), (name, m, sign)


def test_posterize_at_magnitude_10_keeps_one_bit_instead_of_raising():
    img = cifar_like_image(2)
    out = np.asarray(A.apply_op(img, "PosterizeIncreasing", 10.0))
    assert set(np.unique(out)) == {0, 128}  # both: zero bits would leave only 0
    assert A.op_argument("Posterize", 0.0) == 1 and A.op_argument("PosterizeIncreasing", 10.0) == 1


def test_seed_string_forced_to_magnitude_10_runs_every_op():
    ra = A.RandAugment.from_string("rand-m10-mstd0-inc1", rng=random.Random(0))
    ra.p = 1.0
    img, seen = cifar_like_image(3), set()
    for _ in range(300):
        out = ra(img)
        assert out.size == img.size and out.mode == "RGB"
        seen.update(name for name, m in ra.last_ops if m == 10.0)
    assert seen == set(A.OPS_INCREASING)


def test_seed_rand_augment_string_runs_50000_times_on_newest_pillow():
    ra = A.RandAugment.from_string(A.STARTER_RAND_AUGMENT, rng=random.Random(0))
    img, hit_max = cifar_like_image(4), 0
    for _ in range(50_000):
        ra(img)
        hit_max += any(name == "PosterizeIncreasing" and m == 10.0 for name, m in ra.last_ops)
    assert hit_max > 10  # the case that crashes timm on Pillow 13 did come up


def test_op_frequencies_and_magnitudes_match_timm():
    n = 6000
    ours = A.RandAugment.from_string(A.STARTER_RAND_AUGMENT, rng=random.Random(0))
    img = Image.new("RGB", (8, 8), (100, 150, 200))
    our_ops = []
    for _ in range(n):
        ours(img)
        our_ops += ours.last_ops
    theirs = timm_aa.rand_augment_transform(A.STARTER_RAND_AUGMENT, {"img_mean": CIFAR_FILL})
    their_ops = []
    for op in theirs.ops:  # record each applied op and its magnitude; skip the image work
        op.aug_fn = lambda img, *a, _name=op.name, **k: img
        op.level_fn = (lambda m, h, _name=op.name: (their_ops.append((_name, m)), (0,))[1])
    random.seed(0)
    np.random.seed(0)
    for _ in range(n):
        theirs(img)
    expected = n * 2 * 0.5 / 15  # 2 ops per image, applied half the time, 15 ops
    for name in A.OPS_INCREASING:
        count = sum(1 for o, _ in our_ops if o == name)
        assert abs(count - expected) < 4 * math.sqrt(expected), name
    assert abs(len(our_ops) - n) < 4 * math.sqrt(n / 2)
    our_m = [m for _, m in our_ops]
    their_m = [m for _, m in their_ops]  # timm records only ops with an argument
    assert ks_statistic(our_m, their_m) < 0.05
    assert np.mean(our_m) == pytest.approx(np.mean(their_m), abs=0.03)
    assert max(our_m) == 10.0 and min(our_m) > 7


def test_rand_augment_rejects_tensors():
    with pytest.raises(ValueError, match="to_pil_image"):
        A.RandAugment()(torch.zeros(3, 32, 32))


# --- whole pipelines --------------------------------------------------------------------------

def test_seed_pipeline_is_timms_imagenet_recipe():
    train, evaluation = A.starter_transforms()
    names = [type(t).__name__ for t in train.transforms]
    assert names[0] == "RandomResizedCropAndInterpolation" and "RandomErasing" in names
    assert train.transforms[0].scale == (0.08, 1.0)
    assert [type(t).__name__ for t in evaluation.transforms][:2] == ["Resize", "CenterCrop"]
    assert evaluation.transforms[0].size == 36
    mixer = A.starter_mixup()
    assert (mixer.mixup_alpha, mixer.cutmix_alpha, mixer.switch_prob, mixer.label_smoothing,
            mixer.mode, mixer.num_classes) == (0.8, 1.0, 0.5, 0.1, "batch", 10)


def test_deit_train_and_eval_transforms_at_32px():
    train = A.deit_train_transform(rng=random.Random(0), generator=gen())
    crop = train.transforms[0]
    assert isinstance(crop, T.RandomCrop) and crop.size == (32, 32) and crop.padding == 4
    assert not any(isinstance(t, T.RandomResizedCrop) for t in train.transforms)
    img = cifar_like_image(5)
    out = train(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).unsqueeze(0)
    torch.testing.assert_close(A.eval_transform()(img), A.normalize(x)[0])


def test_deit_train_transform_normalizes_and_erases_with_its_own_reprob():
    img = Image.new("RGB", (32, 32), (200, 100, 50))
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    colour, pad = (torch.tensor([200.0, 100.0, 50.0]).view(3, 1, 1) / 255 - mean) / std, -mean / std

    def untouched(out):  # every pixel is the image's colour or the crop's zero padding, normalized
        return (((out - colour).abs().amax(0) < 1e-5) | ((out - pad).abs().amax(0) < 1e-5)).all()
    torch.manual_seed(0)  # torchvision's crop and flip draw from the global generator
    plain = A.deit_train_transform(rand_augment=None, reprob=0.0)
    for _ in range(5):
        out = plain(img)
        assert untouched(out)
        torch.testing.assert_close(out[:, 16, 16], colour[:, 0, 0])  # a shift of at most 4 keeps the centre
    erasing = A.deit_train_transform(rand_augment=None, reprob=1.0, generator=gen(0))
    assert not any(untouched(erasing(img)) for _ in range(20))


def test_batch_augment_outputs_and_reproducibility():
    images, labels = noise_images(7), torch.arange(7)
    x, targets = BatchAugment(generator=gen(0))(images, labels)
    assert x.shape == (7, 3, 32, 32) and x.dtype == torch.float32
    assert targets.shape == (7, 10) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(7))
    x2, targets2 = BatchAugment(generator=gen(0))(images, labels)
    assert torch.equal(x, x2) and torch.equal(targets, targets2)
    plain = BatchAugment(crop_flip=False, mixup=0, cutmix=0, smoothing=0, reprob=0)
    x, targets = plain(images, labels)
    assert torch.equal(x, A.normalize(images)) and torch.equal(targets, labels)
    x, targets = BatchAugment(mixup=0, cutmix=0, smoothing=0.1, generator=gen())(images, labels)
    assert torch.equal(targets, A.smooth_one_hot(labels, 10, 0.1))


def test_batch_augment_per_image_hook_runs_on_the_uint8_batch():
    seen = []
    hook = lambda x: (seen.append(x.dtype), 255 - x)[1]  # noqa: E731
    plain = BatchAugment(crop_flip=False, mixup=0, cutmix=0, smoothing=0, reprob=0, per_image=hook)
    x, _ = plain(noise_images(2), torch.tensor([0, 1]))
    assert seen == [torch.uint8] and torch.equal(x, A.normalize(255 - noise_images(2)))


# --- exercise checkers ------------------------------------------------------------------------

def _todo(*args):
    raise NotImplementedError


@pytest.mark.parametrize("checker, reference, wrong", [
    ("check_smooth_one_hot", A.smooth_one_hot,
     lambda y, k, eps: A.smooth_one_hot(y, k, 0.0) * (1 - eps) + eps / (k - 1)),
    ("check_cutmix_lambda", A.cutmix_lambda, lambda box, h, w: 1 - (box[1] - box[0]) / h),
    ("check_cutmix_lambda", A.cutmix_lambda, lambda box, h, w: str(A.cutmix_lambda(box, h, w))),  # a string
    ("check_soft_target_cross_entropy", soft_target_cross_entropy,
     lambda z, t: torch.nn.CrossEntropyLoss(label_smoothing=0.1)(z, t)),
])
def test_checkers_say_right_wrong_or_todo_and_never_raise(checker, reference, wrong, capsys):
    from helpers import exercises_augment
    check = getattr(exercises_augment, checker)
    check(reference)
    assert capsys.readouterr().out.startswith("Correct!")
    check(wrong)
    out = capsys.readouterr().out
    assert out.startswith("Not right yet.") and "Hint:" in out
    check(_todo)
    assert "NotImplementedError" in capsys.readouterr().out
    check(lambda *a: None)
    assert capsys.readouterr().out.startswith("Not right yet.")


def test_the_soft_target_checker_refuses_a_loss_cut_off_from_the_logits(capsys):
    from helpers import exercises_augment

    def without_gradient(logits, targets):
        with torch.no_grad():
            return soft_target_cross_entropy(logits, targets)
    exercises_augment.check_soft_target_cross_entropy(without_gradient)
    out = capsys.readouterr().out
    assert out.startswith("Not right yet. The value is right, but training needs a tensor") and "backward()" in out


# --- RandAugment's sampler (notebook 01, exercise 4) ------------------------------------------

def test_sample_ops_are_the_draws_that_rand_augment_applies():
    img = cifar_like_image(6)
    config = A.parse_rand_augment("rand-n3-m9-mstd1-inc1")
    sampler = A.RandAugment.from_config(config, rng=random.Random(5))
    applier = A.RandAugment.from_string("rand-n3-m9-mstd1-inc1", rng=random.Random(5))
    signs = set()
    for _ in range(200):
        draws = sampler.sample_ops()
        out = applier(img)
        assert [(name, m) for name, m, _ in draws] == applier.last_ops
        expected = img
        for name, m, sign in draws:
            expected = A.apply_op(expected, name, m, sign)
        assert np.array_equal(np.asarray(out), np.asarray(expected))
        signs.update(sign for _, _, sign in draws)
    assert signs == {-1, 1}


def _sampler(config, rng, replace=True, clip=True, use_p=True, ceiling=None, slots=None):
    """A from-scratch sampler with switchable mistakes (the draws in helpers' order when right)."""
    pool = A.OPS_INCREASING if config.inc else A.OPS_STANDARD
    names = None if replace else rng.sample(pool, config.n)
    ceiling = config.mmax if ceiling is None else ceiling
    draws = []
    for slot in range(config.n if slots is None else slots):
        name = rng.choice(pool) if replace else names[slot]
        if use_p and rng.random() >= config.p:
            continue
        if math.isinf(config.mstd):
            m = rng.uniform(0.0, config.m)
        else:
            m = rng.gauss(config.m, config.mstd) if config.mstd > 0 else config.m
        draws.append((name, max(0.0, min(m, ceiling)) if clip else m, -1 if rng.random() < 0.5 else 1))
    return draws


@pytest.mark.parametrize("mistake, words", [
    (dict(replace=False), "with replacement"),
    (dict(clip=False), "clip the noisy magnitude"),
    (dict(use_p=False), "probability p"),
])
def test_sampler_checker_passes_helpers_and_names_each_mistake(mistake, words, capsys):
    from helpers.exercises_augment import check_rand_augment_sampler

    check_rand_augment_sampler(lambda c, rng: A.RandAugment.from_config(c, rng=rng).sample_ops())
    assert capsys.readouterr().out.startswith("Correct!")
    check_rand_augment_sampler(_sampler)
    assert capsys.readouterr().out.startswith("Correct!")
    check_rand_augment_sampler(lambda c, rng: [(n, np.float32(m), s) for n, m, s in _sampler(c, rng)])
    assert capsys.readouterr().out.startswith("Correct!")  # numpy's numbers are numbers
    check_rand_augment_sampler(lambda c, rng: _sampler(c, rng, **mistake))
    out = capsys.readouterr().out
    assert out.startswith("Not right yet.") and words in out and "Hint:" in out
    flipped = lambda c, rng: [(n, m, -s) for n, m, s in _sampler(c, rng)]  # noqa: E731
    check_rand_augment_sampler(flipped)
    assert "image 0" in capsys.readouterr().out
    check_rand_augment_sampler(_todo)
    assert "NotImplementedError" in capsys.readouterr().out
    check_rand_augment_sampler(lambda *a: None)
    assert capsys.readouterr().out.startswith("Not right yet.")


def test_notebook_01_quotes_the_starter_code_literally():
    import inspect
    import json
    import re
    from pathlib import Path

    cells = json.loads((Path(__file__).parents[1] / "notebooks" / "01_augmentation.ipynb").read_text())["cells"]
    text = next("".join(c["source"]) for c in cells if "".join(c["source"]).startswith("## 1. The starter pipeline"))
    quoted = [line.strip() for block in re.findall(r"```python\n(.*?)```", text, re.S)
              for line in block.splitlines() if line.strip()]
    source = {line.strip() for f in (A.starter_transforms, A.starter_mixup)
              for line in inspect.getsource(f).splitlines()}
    assert any(line.startswith("evaluation = create_transform(") for line in quoted)
    assert [line for line in quoted if line not in source] == []


def test_smooth_one_hot_checker_survives_in_place_labels_and_shows_the_wrong_row(capsys):
    from helpers.exercises_augment import check_smooth_one_hot

    def unsqueezes_labels(labels, k, eps):  # right values, but it reshapes the caller's labels
        labels.unsqueeze_(1)
        return torch.full((len(labels), k), eps / k).scatter_(1, labels, 1 - eps + eps / k)

    check_smooth_one_hot(unsqueezes_labels)
    assert capsys.readouterr().out.startswith("Correct!")

    def first_label_everywhere(labels, k, eps):  # row 0 is right, the others are not
        return A.smooth_one_hot(labels[:1].repeat(len(labels)), k, eps)

    check_smooth_one_hot(first_label_everywhere)
    out = capsys.readouterr().out
    assert out.startswith("Not right yet.") and "row 1 =" in out


def test_sampler_checker_wants_config_mmax_and_names_replacement_only_when_it_can_show(capsys):
    from helpers.exercises_augment import check_rand_augment_sampler

    check_rand_augment_sampler(lambda c, rng: _sampler(c, rng, ceiling=10.0))  # clips at 10, not config.mmax
    out = capsys.readouterr().out
    assert out.startswith("Not right yet.") and "clip the noisy magnitude to [0, mmax]" in out
    check_rand_augment_sampler(lambda c, rng: _sampler(c, rng, slots=c.n - 1))  # one slot short
    out = capsys.readouterr().out
    assert out.startswith("Not right yet.") and "with replacement" not in out


def test_mixup_of_an_odd_batch_mixes_every_pair_and_leaves_the_middle_image():
    x = torch.randn(5, 3, 4, 4)
    mixed = A.mixup(x, 0.7)
    for i in range(5):
        torch.testing.assert_close(mixed[i], 0.7 * x[i] + 0.3 * x[4 - i])
    torch.testing.assert_close(mixed[2], x[2])


def test_the_defaults_are_deits():
    """A bare RandAugment() or RandomErasing() is DeiT's (main.py: --aa rand-m9-mstd0.5-inc1, --reprob 0.25)."""
    bare, deits = A.RandAugment(), A.RandAugment.from_string(A.STARTER_RAND_AUGMENT)
    assert (bare.n, bare.m, bare.mstd, bare.mmax, bare.p, bare.ops) == \
           (deits.n, deits.m, deits.mstd, deits.mmax, deits.p, deits.ops)
    assert A.RandomErasing().p == 0.25


def test_the_per_image_transform_erases_after_normalizing():
    """Erased pixels are N(0, 1) in normalized units (timm's pixel mode): erasing comes last."""
    from torchvision import transforms as T

    steps = A.deit_train_transform().transforms
    assert isinstance(steps[-2], T.Normalize) and isinstance(steps[-1], A.RandomErasing)
    assert steps[-1].p == 0.25
    assert not any(isinstance(s, A.RandomErasing) for s in A.deit_train_transform(reprob=0).transforms)
