"""helpers.batch_randaugment: every op against Pillow on real CIFAR-10 images, the per-image draws
(independent ops, magnitudes and signs), and the contract (dtype, shape, device, seeds, errors).

Tolerances against Pillow (max |diff| and mean |diff| in grey levels, 0..255):
  * lookup-table and blend ops: exact. Pillow's arithmetic there is integer, or float32 followed
    by truncation, which torch reproduces operation for operation.
  * nearest warps: exact on these images and seeds. A sample point within float32 rounding
    (about 1e-5 px) of a pixel edge could round the other way in one of the two; none does here,
    but other images or seeds could meet one.
  * bilinear warps: max 1, mean < 0.1. Pillow computes the weights in float64, grid_sample in
    float32, then both truncate, so a value that is an integer in exact arithmetic (common for
    translations) can land on either side of it. Measured mean <= 0.05.
  * bicubic warps: mean < 1.5. grid_sample's cubic kernel has a = -0.75, Pillow's affine
    bicubic a = -1 (sharper), so strong edges differ by up to ~15 levels. Measured mean <= 1.0;
    1.5 leaves room for other images without hiding a wrong matrix, which costs > 10 levels.
"""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from helpers import augment as A
from helpers.batch_augment import BatchAugment
from helpers import batch_randaugment as G

RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}
LUT_AND_BLEND_OPS = G.OP_FAMILIES["lookup table"] + G.OP_FAMILIES["blend"]
WARP_OPS = G.OP_FAMILIES["warp"]
MAGNITUDES = (0.0, 3.0, 7.0, 9.0, 10.0)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def cifar(cifar_train_small):
    """200 real CIFAR-10 images as a (B, 3, 32, 32) uint8 batch."""
    return cifar_train_small.images.permute(0, 3, 1, 2).contiguous()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def to_pil(batch):
    return [Image.fromarray(im) for im in batch.permute(0, 2, 3, 1).numpy()]


def pil_op(batch, name, magnitude, sign, interpolation="bicubic"):
    """helpers.augment's PIL op (itself tested equal to timm's) on every image -> (B, 3, H, W)."""
    out = [np.asarray(A.apply_op(im, name, magnitude, sign, interpolation=RESAMPLE[interpolation]))
           for im in to_pil(batch)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def diff(a, b):
    d = (a.int() - b.int()).abs().float()
    return d.max().item(), d.mean().item()


# --- agreement with Pillow, op by op ----------------------------------------------------------

@pytest.mark.parametrize("name", LUT_AND_BLEND_OPS)
def test_lut_and_blend_ops_equal_pillow_exactly(cifar, name):
    for m in MAGNITUDES:
        for sign in (1, -1):
            ours = G.apply_op(name, cifar, m, torch.full((len(cifar),), float(sign)))
            assert diff(ours, pil_op(cifar, name, m, sign))[0] == 0, (name, m, sign)


@pytest.mark.parametrize("interpolation, max_tol, mean_tol",
                         [("nearest", 0, 0.0), ("bilinear", 1, 0.1), ("bicubic", 255, 1.5)])
@pytest.mark.parametrize("name", WARP_OPS)
def test_warps_match_pillow_within_the_interpolation_tolerance(cifar, name, interpolation,
                                                              max_tol, mean_tol):
    for m in (3.0, 9.0, 10.0):
        for sign in (1, -1):
            ours = G.apply_op(name, cifar, m, torch.full((len(cifar),), float(sign)),
                              interpolation=interpolation)
            worst, mean = diff(ours, pil_op(cifar, name, m, sign, interpolation))
            assert worst <= max_tol and mean <= mean_tol, (name, m, sign, worst, mean)


def test_warps_on_non_square_images_match_pillow(cifar):
    wide = torch.cat([cifar[:20, :, :24], cifar[20:40, :, :24]], dim=3)  # 24 x 64
    for name in WARP_OPS:
        ours = G.apply_op(name, wide, 8.0, torch.full((20,), -1.0), interpolation="nearest")
        assert diff(ours, pil_op(wide, name, 8.0, -1, "nearest"))[0] == 0, name


def test_fill_colour_fills_uncovered_pixels(cifar):
    out = G.apply_op("TranslateXRel", cifar[:4], 10.0, fill=(1, 2, 3))  # shift by 0.45 * 32
    assert (out[:, :, :, -14:] == torch.tensor([1, 2, 3]).view(1, 3, 1, 1)).all()


def test_the_three_families_cover_every_op_once():
    names = [n for family in G.OP_FAMILIES.values() for n in family]
    assert sorted(names) == sorted(A.LEVEL_TO_ARGUMENT)  # both RandAugment pools and AutoAugment's posterize


def test_op_parameters_equal_the_pil_versions_arguments():
    m = torch.linspace(0, 10, 2001, dtype=torch.float64)
    for name in A.LEVEL_TO_ARGUMENT:
        for sign in (1, -1):
            ref = [A.op_argument(name, float(x), sign) or 0.0 for x in m]
            assert G.op_parameter(name, m, torch.full_like(m, sign)).tolist() == ref, (name, sign)


def test_posterize_at_magnitude_10_keeps_one_bit(cifar):
    out = G.apply_op("PosterizeIncreasing", cifar, 10.0)
    assert set(out.unique().tolist()) == {0, 128}  # both: zero bits would leave only 0


def test_autocontrast_and_equalize_leave_flat_channels_as_pillow_does(cifar):
    x = cifar[:2].clone()
    x[:, 0] = 100  # a constant channel: nothing to stretch
    x[:, 1] = 200
    x[:, 1, 0, :24] = 50  # 24 darker pixels: too few for Pillow's equalize (step 24 // 255 = 0)
    for name in ("AutoContrast", "Equalize"):
        out = G.apply_op(name, x, 0.0)
        assert torch.equal(out, pil_op(x, name, 0.0, 1)), name
        assert torch.equal(out[:, 0], x[:, 0]), name
    assert torch.equal(G.apply_op("Equalize", x, 0.0)[:, 1], x[:, 1])


def test_ops_that_do_not_warp_keep_every_pixel_in_place_at_any_size():
    # an identity grid_sample is exact at 32 x 32 but not at every size: such images are put back
    x = torch.randint(0, 256, (3, 3, 17, 23), dtype=torch.uint8, generator=gen(0))
    assert torch.equal(G.apply_op("Invert", x, 0.0), 255 - x)
    assert torch.equal(G.apply_op("Brightness", x, 5.0), x)  # factor 0.5 * 1.8 + 0.1 = 1


# --- each image its own ops -------------------------------------------------------------------

def pil_replay(batch, draws, pool, interpolation="nearest"):
    """The drawn ops replayed image by image, slot by slot, with the PIL ops -> (B, 3, H, W)."""
    expected = []
    for i, img in enumerate(to_pil(batch)):
        for slot in range(len(draws.ops)):
            if draws.applied[slot, i]:
                img = A.apply_op(img, pool[draws.ops[slot, i]], float(draws.magnitudes[slot, i]),
                                 int(draws.signs[slot, i]), interpolation=RESAMPLE[interpolation])
        expected.append(np.asarray(img))
    return torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2)


def test_each_image_gets_its_own_ops_magnitudes_and_signs_like_pillow_would(cifar):
    """Two slots of random per-image draws over all 15 ops, replayed image by image in PIL."""
    draws = G.sample_ops(len(cifar), num_ops=2, magnitude=7.0, mstd=2.0, prob=0.8, generator=gen(3))
    ours = G.apply_ops(cifar, draws, interpolation="nearest")
    assert len(set(draws.ops[0].tolist())) == 15  # the batch really mixes every op
    assert diff(ours, pil_replay(cifar, draws, A.OPS_INCREASING))[0] == 0


def test_the_standard_pool_applies_its_own_ops_like_pillow_would(cifar):
    draws = G.sample_ops(len(cifar), num_ops=2, magnitude=7.0, mstd=2.0, prob=0.8, generator=gen(3))
    # warps: the same in both pools, and equal to Pillow only up to float32 rounding of sample points
    warps = torch.tensor([name in WARP_OPS for name in A.OPS_STANDARD])
    draws.applied &= ~warps[draws.ops]
    ours = G.apply_ops(cifar, draws, increasing=False)
    assert diff(ours, pil_replay(cifar, draws, A.OPS_STANDARD))[0] == 0


def test_images_whose_ops_all_failed_the_coin_flip_are_untouched(cifar):
    draws = G.sample_ops(len(cifar), generator=gen(4))
    out = G.apply_ops(cifar, draws)
    untouched = ~draws.applied.any(dim=0)
    assert untouched.any() and torch.equal(out[untouched], cifar[untouched])
    assert torch.equal(G.rand_augment_batch(cifar, prob=0.0, generator=gen(0)), cifar)


def test_op_choices_are_uniform_and_independent_between_slots():
    n = 60_000
    draws = G.sample_ops(n, num_ops=2, generator=gen(1))
    counts = torch.bincount(draws.ops.flatten(), minlength=15).numpy()
    # Chi-square goodness of fit to 1/15 each (14 dof); p < 1e-4 would be a real bias.
    assert stats.chisquare(counts).pvalue > 1e-4, counts
    # Slot 2 ignores slot 1: the same op twice with probability 1/15 (binomial, 5 sigma).
    same = (draws.ops[0] == draws.ops[1]).double().mean().item()
    assert abs(same - 1 / 15) < 5 * math.sqrt(1 / 15 * 14 / 15 / n)


def test_magnitudes_signs_and_skips_have_the_right_distributions():
    n, m, mstd, prob = 100_000, 9.0, 0.5, 0.5
    draws = G.sample_ops(n, num_ops=2, magnitude=m, mstd=mstd, prob=prob, generator=gen(2))
    mags = draws.magnitudes.flatten().numpy()
    # N(9, 0.5) clipped to [0, 10]: exact moments of the clipped normal, 5 standard errors.
    a = (10 - m) / mstd
    tail = stats.norm.sf(a)
    mean = m - mstd * (stats.norm.pdf(a) - a * tail)
    reference = np.clip(stats.norm(m, mstd).rvs(2_000_000, random_state=0), 0, 10)
    assert abs(mags.mean() - mean) < 5 * mags.std() / math.sqrt(mags.size)
    assert abs(mags.std() - reference.std()) < 0.01
    assert mags.max() == 10.0 and abs((mags == 10.0).mean() - tail) < 5 * math.sqrt(tail / mags.size)
    assert abs((draws.signs == 1).double().mean().item() - 0.5) < 5 * math.sqrt(0.25 / mags.size)
    # An image is left alone when every slot fails its coin flip: (1 - p)^num_ops.
    untouched = (~draws.applied.any(dim=0)).double().mean().item()
    expected = (1 - prob) ** 2
    assert abs(untouched - expected) < 5 * math.sqrt(expected * (1 - expected) / n)


def test_mmax_caps_the_noisy_magnitudes():
    mags = G.sample_ops(10_000, magnitude=9.0, mstd=2.0, mmax=8.0, generator=gen(6)).magnitudes
    # N(9, 2) is above 8 with probability 0.69: those draws are clipped to exactly 8
    assert mags.max() == 8.0 and abs((mags == 8.0).double().mean().item() - stats.norm.sf(-0.5)) < 0.02


def test_infinite_mstd_draws_uniform_magnitudes_up_to_m():
    mags = G.sample_ops(50_000, magnitude=6.0, mstd=math.inf, generator=gen(5)).magnitudes.flatten()
    assert stats.kstest(mags.numpy(), stats.uniform(0, 6).cdf).pvalue > 1e-4


# --- the contract -----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_dtype_shape_device_and_range_are_kept(cifar, device):
    x = cifar[:64].to(device)
    out = G.rand_augment_batch(x, num_ops=3, magnitude=10.0, mstd=0.5, prob=1.0, generator=gen(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape and out.device == x.device
    assert not torch.equal(out, x)
    odd = torch.randint(0, 256, (5, 3, 17, 23), dtype=torch.uint8, generator=gen(1)).to(device)
    assert G.rand_augment_batch(odd, prob=1.0, generator=gen(0)).shape == odd.shape


def test_same_seed_same_output_and_rand_augment_batch_is_sample_then_apply(cifar):
    first = G.rand_augment_batch(cifar, generator=gen(7))
    assert torch.equal(first, G.rand_augment_batch(cifar, generator=gen(7)))
    assert not torch.equal(first, G.rand_augment_batch(cifar, generator=gen(8)))
    draws = G.sample_ops(len(cifar), 2, 9.0, 0.5, 10.0, 0.5, generator=gen(7))
    assert torch.equal(first, G.apply_ops(cifar, draws))


def test_magnitude_10_runs_every_op_in_both_pools(cifar):
    for increasing in (True, False):
        pool = G.OPS_INCREASING if increasing else G.OPS_STANDARD
        draws = G.sample_ops(len(cifar), 4, 10.0, 0.5, 10.0, 1.0, len(pool), generator=gen(1))
        at_max = {pool[op] for op, m in zip(draws.ops.flatten().tolist(), draws.magnitudes.flatten().tolist())
                  if m == 10.0}
        assert at_max == set(pool)  # every op was drawn at the top magnitude
        for interpolation in G.INTERPOLATIONS:
            out = G.apply_ops(cifar, draws, increasing, interpolation=interpolation)
            assert out.dtype == torch.uint8 and out.shape == cifar.shape
        for name in pool:
            out = G.apply_op(name, cifar, 10.0)
            assert out.dtype == torch.uint8 and out.shape == cifar.shape
            if increasing:  # at full strength every increasing op changes the images
                assert not torch.equal(out, cifar), name


def test_from_string_and_batch_augment_hook(cifar):
    ra = G.BatchRandAugment.from_string("rand-m9-mstd0.5-inc1", generator=gen(0))
    c = ra.config
    assert (c.n, c.m, c.mstd, c.inc, c.p) == (2, 9.0, 0.5, True, 0.5)
    assert torch.equal(ra(cifar), G.rand_augment_batch(cifar, generator=gen(0)))
    x, targets = BatchAugment(per_image=ra, generator=gen(1))(cifar[:16], torch.arange(16) % 10)
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and targets.shape == (16, 10)
    assert G.parse_rand_augment is A.parse_rand_augment  # one parser for both pipelines


def test_batch_rand_augment_uses_every_field_of_its_string(cifar):
    ra = G.BatchRandAugment.from_string("rand-n3-m9-mstd0.5-mmax5-p1-inc0", generator=gen(0))
    draws = ra.draws(cifar)
    assert draws.ops.shape == (3, len(cifar)) and draws.applied.all()
    assert (draws.magnitudes == 5.0).all()  # N(9, 0.5) never falls 8 sigma, to 5: every draw is capped
    ra.generator = gen(0)
    expected = G.apply_ops(cifar, G.sample_ops(len(cifar), 3, 9.0, 0.5, 5.0, 1.0, 15, generator=gen(0)), False)
    assert torch.equal(ra(cifar), expected)


@pytest.mark.parametrize("bad, says", [
    (torch.rand(2, 3, 32, 32), "uint8"),
    (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), "(B, 3, H, W)"),
    (torch.zeros(3, 32, 32, dtype=torch.uint8), "unsqueeze(0)"),
    (torch.zeros(2, 32, 32, 3, dtype=torch.uint8), "permute"),
    (np.zeros((2, 3, 32, 32), np.uint8), "tensor"),
])
def test_bad_images_raise_value_error_saying_what_to_pass(bad, says):
    with pytest.raises(ValueError) as err:
        G.rand_augment_batch(bad)
    assert says in str(err.value)


def test_bad_options_raise_value_error(cifar):
    for kwargs in (dict(prob=1.5), dict(num_ops=-1), dict(mstd=-1.0), dict(interpolation="area"),
                   dict(fill=(1, 2))):
        with pytest.raises(ValueError):
            G.rand_augment_batch(cifar[:2], **kwargs)
    with pytest.raises(ValueError, match="Unknown op"):
        G.apply_op("Blur", cifar[:2], 5.0)


def test_randaugment_calls_do_not_grow_with_the_batch_and_slots_are_worked_out_at_once():
    # each operator call costs the CPU microseconds on a GPU machine (meta: shapes only, counts
    # what a GPU would run): no loop over images, the same passes for every slot, and the
    # per-image choices of all slots at once (one slot at a time, each cost about 340 calls)
    from benchmarks.augment_calls import rand_augment_choices
    from helpers.speed import operator_calls

    def whole_call(batch, num_ops):
        images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8).to("meta")
        return operator_calls(lambda: G.rand_augment_batch(images, num_ops=num_ops))
    assert whole_call(8, 2) == whole_call(64, 2)
    one, two, three = (whole_call(64, n)[1] for n in (1, 2, 3))
    assert three - two == two - one > 0
    one_slot, three_slots = (operator_calls(rand_augment_choices(64, n, "meta"))[0] for n in (1, 3))
    assert three_slots - one_slot <= 2 * 15
