"""RandAugment on uint8 GPU batches, with its own ops, magnitudes and signs for every image.

torchvision's v2 RandAugment and kornia draw one op set per call, so a batch transform built on
them gives every image in the batch the same ops. Here each image draws like timm's per-image
RandAugment (helpers.augment.RandAugment): `num_ops` slots, an op drawn uniformly (with
replacement) from the 15-op pool per slot, applied with probability `prob`, magnitude
N(m, mstd) clipped to [0, mmax], random sign for the symmetric ops.

No loop over images: the 15 ops fall into three families that each run as ONE batched pass
with per-image parameters, and an image whose op is in another family gets that family's
identity (identity lookup table, blend factor 1, or its own pixels back):
  * lookup tables  AutoContrast, Equalize, Invert, Posterize, Solarize, SolarizeAdd
  * blends         Color, Contrast, Brightness, Sharpness (PIL's ImageEnhance)
  * affine warps   Rotate, ShearX, ShearY, TranslateXRel, TranslateYRel
So a slot costs three passes over the batch instead of 15 masked ones, with no data-dependent
shapes (boolean indexing would sync the GPU with the host once per op).

The per-image choices (ops, arguments, masks, warp matrices) are small (slots, B) tensors: they
are drawn and worked out on the CPU for every slot at once, with lookup tables indexed by op,
and reach the GPU in two non-blocking copies, so the GPU only runs the passes over pixels and
the CPU never waits for it (hundreds of tiny kernels and blocking copies would otherwise cost
more than the model's own step). Each operator call costs the CPU a few microseconds, so their
number matters too: `python -m benchmarks.augment_calls` counts them.

The rounding follows Pillow (the reference the tests compare with, pixel for pixel where
Pillow's arithmetic is integer): truncation after float blends, (sum + 6) // 13 for the smoothing
filter, ITU-R 601 luma with Pillow's 16-bit fixed-point weights.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from helpers.constants import CIFAR_FILL
from helpers.augment import (LEVEL_TO_ARGUMENT, MAX_LEVEL, OPS_INCREASING, OPS_STANDARD,
                             RandAugmentConfig, op_argument, parse_rand_augment, to_device)

__all__ = ["OPS_INCREASING", "OPS_STANDARD", "CIFAR_FILL", "INTERPOLATIONS", "OP_FAMILIES", "OpDraws",
           "parse_rand_augment", "op_parameter", "sample_ops", "op_choices", "apply_op", "apply_ops", "apply_choices",
           "rand_augment_batch", "BatchRandAugment"]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")  # grid_sample modes; timm's seed uses bicubic

# The three families (see the module docstring); standard and increasing variants alike.
OP_FAMILIES = {
    "lookup table": ("AutoContrast", "Equalize", "Invert", "Posterize", "PosterizeIncreasing", "PosterizeOriginal",
                     "Solarize", "SolarizeIncreasing", "SolarizeAdd"),
    "blend": ("Color", "Contrast", "Brightness", "Sharpness", "ColorIncreasing",
              "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"),
    "warp": ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"),
}
# Pillow's convert("L"): L = (19595 R + 38470 G + 7471 B + 2^15) >> 16, i.e. 0.299/0.587/0.114.
_LUMA_WEIGHTS = (19595, 38470, 7471)


def check_images(images) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 (B, 3, H, W) tensor of RGB images, got {shape}. "
                         f"Add a batch dimension with x.unsqueeze(0), permute (B, H, W, 3) arrays "
                         f"with x.permute(0, 3, 1, 2), and repeat grey images to 3 channels.")
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 in 0..255, got {images.dtype}: RandAugment runs "
                         f"before normalization. Convert with (x * 255).round().to(torch.uint8).")


def check_options(interpolation: str, fill) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not {interpolation!r}.")
    if len(fill) != 3:
        raise ValueError(f"fill must be an RGB triple in 0..255 such as {CIFAR_FILL}, got {fill!r}.")


# ----------------------------------------------------------------------------------------------
# Magnitude -> argument, per image
# ----------------------------------------------------------------------------------------------

def op_parameter(name: str, magnitudes: torch.Tensor,
                 signs: torch.Tensor | None = None) -> torch.Tensor:
    """helpers.augment.op_argument for a whole batch: (B,) magnitudes (0..10) -> (B,) float64
    arguments (degrees, bits, threshold, factor, fraction of the side...); 0 for argument-free ops.

    The same table (helpers.augment.LEVEL_TO_ARGUMENT) on tensors, in float64 so that the int()
    truncations land where Python's do.
    """
    if name not in LEVEL_TO_ARGUMENT:
        op_argument(name, 0.0)  # raises the ValueError that lists the known names
    level, sign = _level_and_sign(magnitudes, signs)
    return _parameter(name, level, sign)


def _level_and_sign(magnitudes, signs) -> tuple[torch.Tensor, torch.Tensor]:
    magnitudes = torch.as_tensor(magnitudes, dtype=torch.float64)
    # tensor / tensor: torch turns `scalar / tensor` into a multiply by a reciprocal, which can
    # land one ulp off Python's division and flip the int() truncations.
    level = magnitudes / torch.full_like(magnitudes, MAX_LEVEL)
    return level, torch.ones_like(level) if signs is None else torch.as_tensor(signs).to(level)


def _parameter(name: str, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    formula = LEVEL_TO_ARGUMENT[name]
    return torch.zeros_like(level) if formula is None else formula(level, sign) * torch.ones_like(level)


# ----------------------------------------------------------------------------------------------
# The three op families, each one pass over the batch
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _members(pool: tuple, names: tuple) -> torch.Tensor:
    """(len(pool) + 1,) bool: row i + 1 says whether op i of the pool is one of `names`; row 0
    is "no op" (-1). Indexing it with ops + 1 asks every image at once."""
    return torch.tensor([False] + [name in names for name in pool])


def _chose(ops: torch.Tensor, pool: tuple, *names: str) -> torch.Tensor:
    """Bool, shaped like ops: which images chose one of `names` (names absent from the pool match nobody)."""
    return _members(pool, names)[ops + 1]


# The image groups the pixel passes tell apart, each a set of op names.
_GROUPS = {
    "AutoContrast": ("AutoContrast",), "Equalize": ("Equalize",), "Invert": ("Invert",),
    "Posterize": ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"), "Solarize": ("Solarize", "SolarizeIncreasing"),
    "SolarizeAdd": ("SolarizeAdd",), "Color": ("Color", "ColorIncreasing"),
    "Contrast": ("Contrast", "ContrastIncreasing"), "Brightness": ("Brightness", "BrightnessIncreasing"),
    "blend": OP_FAMILIES["blend"], "warp": OP_FAMILIES["warp"],
}


@dataclass
class _Slot:
    """One slot's per-image choices on the images' device: `chose(group)` masks, `args` (B,)
    float64, blend `factor` (B,) float32 and warp `theta` (B, 2, 3) float32."""
    masks: torch.Tensor
    args: torch.Tensor
    factor: torch.Tensor
    theta: torch.Tensor

    def chose(self, group: str) -> torch.Tensor:
        return self.masks[list(_GROUPS).index(group)]


def _slots(ops: torch.Tensor, args: torch.Tensor, pool: tuple, h: int, w: int, device) -> list[_Slot]:
    """Work out every slot's choices at once on the CPU from (slots, B) ops (-1: none) and
    arguments, then move them in two copies that never make the CPU wait for the GPU."""
    ops, args = ops.cpu(), args.cpu().double()
    masks = torch.stack([_chose(ops, pool, *names) for names in _GROUPS.values()], dim=-2)  # (slots, groups, B)
    factor = torch.where(_chose(ops, pool, *OP_FAMILIES["blend"]), args, 1.0)
    theta = _grid_theta(_pil_affine(ops, args, pool, h, w), h, w)
    numbers = to_device(torch.cat([args[..., None], factor[..., None], theta.flatten(-2)], dim=-1), device)
    masks = to_device(masks, device)
    return [_Slot(masks[k], numbers[k, :, 0], numbers[k, :, 1].float(), numbers[k, :, 2:].reshape(-1, 2, 3).float())
            for k in range(len(ops))]


def _lookup_tables(x: torch.Tensor, slot: _Slot) -> torch.Tensor:
    """Per image and channel a 256-entry table (identity unless the image chose a LUT op)."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w).long()
    v = torch.arange(256, device=x.device).view(1, 1, 256)
    arg = slot.args.view(b, 1, 1)
    chose = lambda group: slot.chose(group).view(b, 1, 1)  # noqa: E731

    lut = v.expand(b, c, 256)
    lut = torch.where(chose("Invert"), 255 - v, lut)
    shift = (8 - arg.clamp(1, 8)).long()  # posterize keeps the top `bits` bits
    lut = torch.where(chose("Posterize"), (v >> shift) << shift, lut)
    lut = torch.where(chose("Solarize"), torch.where(v < arg, v, 255 - v), lut)
    brighter = torch.where(v < 128, (v + arg.long()).clamp(max=255), v)
    lut = torch.where(chose("SolarizeAdd"), brighter, lut)

    # AutoContrast (ImageOps.autocontrast, cutoff 0): stretch [lo, hi] to [0, 255], int() truncates.
    lo = flat.amin(dim=2, keepdim=True).double()
    hi = flat.amax(dim=2, keepdim=True).double()
    scale = torch.full_like(hi, 255.0) / (hi - lo).clamp(min=1)  # tensor / tensor: see op_parameter
    stretched = torch.trunc(v * scale - lo * scale).clamp(0, 255).long()
    lut = torch.where(chose("AutoContrast") & (hi > lo), stretched, lut)

    # Equalize (ImageOps.equalize): histograms of all B*C channels in one scatter_add on offset
    # indices (bincount would sync with the host to size its output). step = (pixels - count of
    # the brightest value) // 255, lut[i] = (step // 2 + pixels below i) // step; step 0 (a
    # near-constant channel) keeps the channel.
    offsets = torch.arange(b * c, device=x.device).view(b, c, 1) * 256
    hist = torch.zeros(b * c * 256, dtype=torch.long, device=x.device)
    hist = hist.scatter_add_(0, (flat + offsets).view(-1), torch.ones_like(flat).view(-1))
    hist = hist.view(b, c, 256)
    brightest = hist.gather(2, flat.amax(dim=2, keepdim=True))
    step = (h * w - brightest) // 255
    below = hist.cumsum(dim=2) - hist
    equalized = ((step // 2 + below) // step.clamp(min=1)).clamp(max=255)
    lut = torch.where(chose("Equalize") & (step > 0), equalized, lut)

    return lut.gather(2, flat).view(b, c, h, w).to(torch.uint8)


def _blends(x: torch.Tensor, slot: _Slot) -> torch.Tensor:
    """ImageEnhance: out = trunc(degenerate + factor * (image - degenerate)), clamped to 0..255.

    Non-blend images get factor 1, which returns them exactly (all values are small integers).
    """
    b, c, h, w = x.shape
    chose = lambda group: slot.chose(group).view(b, 1, 1, 1)  # noqa: E731
    xi = x.int()
    luma = sum(wt * xi[:, i:i + 1] for i, wt in enumerate(_LUMA_WEIGHTS))
    grey = ((luma + (1 << 15)) >> 16).float()  # Color blends with this greyscale image
    # Contrast blends with a flat image at the mean luma, rounded half up (ImageStat's mean).
    mean = torch.floor(grey.double().mean(dim=(1, 2, 3), keepdim=True) + 0.5).float()
    # Sharpness blends with ImageFilter.SMOOTH: [[1,1,1],[1,5,1],[1,1,1]] / 13 = (3x3 box sum +
    # 4 x centre) / 13, rounded half up, border pixels unfiltered. Integer box sums by shifted
    # slices: exact, and faster than a depthwise conv2d on the CPU.
    rows = xi[:, :, :-2] + xi[:, :, 1:-1] + xi[:, :, 2:]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    smooth = xi.clone()
    smooth[:, :, 1:-1, 1:-1] = torch.div(box + 4 * xi[:, :, 1:-1, 1:-1] + 6, 13,
                                         rounding_mode="floor")
    smooth, xf = smooth.float(), x.float()

    degenerate = torch.where(chose("Color"), grey,
                 torch.where(chose("Contrast"), mean,
                 torch.where(chose("Brightness"), torch.zeros_like(xf), smooth)))
    # Pillow computes in float32 and casts with truncation (Image.blend).
    out = degenerate + slot.factor.view(b, 1, 1, 1) * (xf - degenerate)
    return torch.trunc(out).clamp(0, 255).to(torch.uint8)


def _pil_affine(ops, args, pool, h: int, w: int) -> torch.Tensor:
    """(..., 2, 3) float64: Pillow's AFFINE data, input point = A @ (x + 0.5, y + 0.5, 1) in pixels.

    Shears act about the top-left corner and translations are fractions of the side (timm);
    rotate is Image.rotate's matrix about the centre (counter-clockwise for positive degrees).
    """
    one = lambda name: _chose(ops, pool, name)  # noqa: E731
    ones = torch.ones_like(args)
    matrix = torch.stack([torch.stack([ones, torch.where(one("ShearX"), args, 0.0),
                                       torch.where(one("TranslateXRel"), args * w, 0.0)], -1),
                          torch.stack([torch.where(one("ShearY"), args, 0.0), ones,
                                       torch.where(one("TranslateYRel"), args * h, 0.0)], -1)], -2)
    angle = -torch.deg2rad(args)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = w / 2, h / 2
    rotation = torch.stack([torch.stack([cos, sin, cx - cos * cx - sin * cy], -1),
                            torch.stack([-sin, cos, cy + sin * cx - cos * cy], -1)], -2)
    return torch.where(one("Rotate")[..., None, None], rotation, matrix)


def _grid_theta(a: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pillow's pixel-coordinate matrices -> affine_grid's [-1, 1] ones (align_corners=False):
    g = 2 u / size - 1."""
    return torch.stack([
        torch.stack([a[..., 0, 0], a[..., 0, 1] * h / w,
                     a[..., 0, 0] + a[..., 0, 1] * h / w + 2 * a[..., 0, 2] / w - 1], -1),
        torch.stack([a[..., 1, 0] * w / h, a[..., 1, 1],
                     a[..., 1, 0] * w / h + a[..., 1, 1] + 2 * a[..., 1, 2] / h - 1], -1)], -2)


def _warps(x: torch.Tensor, slot: _Slot, fill, interpolation: str) -> torch.Tensor:
    """The geometric ops as one affine_grid + grid_sample with a matrix per image.

    Pillow samples at pixel centres, clamps the filter taps at the border and paints the fill
    wherever the sample point itself falls outside the image: grid_sample's 'border' padding
    plus an inside mask reproduces exactly that. Nearest and bilinear then match Pillow (up to
    float32 vs float64 rounding); bicubic differs slightly, as grid_sample's cubic kernel has
    a = -0.75 and Pillow's affine one a = -1 (under 1 grey level on average).
    """
    b, c, h, w = x.shape
    grid = F.affine_grid(slot.theta, [b, c, h, w], align_corners=False)
    warped = F.grid_sample(x.float(), grid, mode=interpolation, padding_mode="border",
                           align_corners=False)
    inside = ((grid >= -1) & (grid < 1)).all(dim=-1).unsqueeze(1)
    fill = torch.tensor(fill, dtype=torch.float32).view(1, c, 1, 1)
    warped = torch.where(inside, torch.trunc(warped.clamp(0, 255)), to_device(fill, x.device))
    warped = warped.to(torch.uint8)
    # Non-warp images are put back rather than trusted to an identity warp (float rounding).
    return torch.where(slot.chose("warp").view(b, 1, 1, 1), warped, x)


def _apply_slots(x, ops, args, pool, fill, interpolation):
    """Slot after slot, each image applies its own op (index into pool, -1 = none) with its
    argument; ops and args are (slots, B)."""
    for slot in _slots(ops, args, pool, x.shape[2], x.shape[3], x.device):
        x = _lookup_tables(x, slot)
        x = _blends(x, slot)
        x = _warps(x, slot, fill, interpolation)
    return x


def _arguments(ops, magnitudes, signs, pool) -> torch.Tensor:
    """Each image's argument for the op it chose (0 for none), float64 and shaped like ops."""
    level, sign = _level_and_sign(magnitudes, signs)
    per_op = torch.stack([torch.zeros_like(level)] + [_parameter(name, level, sign) for name in pool])
    return per_op.gather(0, (ops + 1).unsqueeze(0)).squeeze(0)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------

def apply_op(name: str, images: torch.Tensor, magnitudes, signs=None, fill=CIFAR_FILL,
             interpolation: str = "bicubic") -> torch.Tensor:
    """Apply ONE named op to every image, each at its own magnitude (float or (B,) tensor).

    signs: (B,) of +1/-1 for the symmetric ops (default +1). Deterministic; for teaching and
    for comparing with Pillow.

    Notebooks: used in 04.
    """
    check_images(images)
    check_options(interpolation, fill)
    if name not in LEVEL_TO_ARGUMENT:
        op_argument(name, 0.0)  # raises the ValueError that lists the known names
    pool = (name,)
    b = len(images)  # the per-image choices live on the CPU (see the module docstring)
    magnitudes = torch.as_tensor(magnitudes, dtype=torch.float64).cpu().expand(b)
    signs = torch.ones(b) if signs is None else torch.as_tensor(signs).cpu()
    ops = torch.full((1, b), pool.index(name), dtype=torch.long)
    return _apply_slots(images, ops, op_parameter(name, magnitudes, signs)[None], pool, fill, interpolation)


@dataclass
class OpDraws:
    """The random choices of one RandAugment call, (num_ops, B) each: op index into the pool,
    whether the op is applied (probability prob), magnitude and sign (+1/-1)."""
    ops: torch.Tensor
    applied: torch.Tensor
    magnitudes: torch.Tensor
    signs: torch.Tensor


def draw_random(kind: str, shape, generator, device, **kw) -> torch.Tensor:
    """Random numbers made on the generator's device, then moved: a seed gives the same draws
    on any device (as in helpers.augment)."""
    where = generator.device if generator is not None else device
    if kind == "randint":
        return torch.randint(0, kw["high"], shape, generator=generator, device=where).to(device)
    make = torch.rand if kind == "rand" else torch.randn
    return make(shape, generator=generator, device=where, dtype=torch.float64).to(device)


def sample_ops(batch: int, num_ops: int = 2, magnitude: float = 9.0, mstd: float = 0.5,
               mmax: float = MAX_LEVEL, prob: float = 0.5, pool_size: int = len(OPS_INCREASING),
               generator: torch.Generator | None = None, device="cpu") -> OpDraws:
    """Draw every image's ops independently, as timm's RandAugment does per image.

    Magnitude: N(magnitude, mstd) (uniform in [0, magnitude] when mstd is inf), clipped to
    [0, mmax]; timm's AugmentOp does the same.

    Notebooks: used in 04.
    """
    if num_ops < 0 or magnitude < 0 or mstd < 0 or not 0.0 <= prob <= 1.0:
        raise ValueError(f"need num_ops >= 0, magnitude >= 0, mstd >= 0 and 0 <= prob <= 1; got "
                         f"num_ops={num_ops}, magnitude={magnitude}, mstd={mstd}, prob={prob}.")
    shape = (num_ops, batch)
    ops = draw_random("randint", shape, generator, device, high=pool_size)
    applied = draw_random("rand", shape, generator, device) < prob
    if math.isinf(mstd):
        magnitudes = draw_random("rand", shape, generator, device) * magnitude
    else:
        magnitudes = magnitude + mstd * draw_random("randn", shape, generator, device)
    magnitudes = magnitudes.clamp(0.0, mmax)
    signs = torch.where(draw_random("rand", shape, generator, device) < 0.5, -1.0, 1.0).double()
    return OpDraws(ops, applied, magnitudes, signs)


def apply_ops(images: torch.Tensor, draws: OpDraws, increasing: bool = True, fill=CIFAR_FILL,
              interpolation: str = "bicubic") -> torch.Tensor:
    """Apply drawn ops slot by slot (a loop over slots, never over images).

    Notebooks: used in 04.
    """
    check_images(images)
    check_options(interpolation, fill)
    pool = _pool(increasing)
    return apply_choices(images, *op_choices(draws, pool), pool, fill, interpolation)


def _pool(increasing: bool) -> tuple:
    return OPS_INCREASING if increasing else OPS_STANDARD


def op_choices(draws: OpDraws, pool: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image's op per slot (index into pool, -1 = none) and its argument, both (slots, B):
    all slots worked out at once, on the CPU."""
    ops = torch.where(draws.applied, draws.ops, -1)
    return ops, _arguments(ops, draws.magnitudes, draws.signs, pool)


def apply_choices(images: torch.Tensor, ops: torch.Tensor, args: torch.Tensor, pool: tuple, fill=CIFAR_FILL,
                  interpolation: str = "bicubic") -> torch.Tensor:
    """Apply op_choices to a uint8 batch, slot after slot (on the CPU for Apple's MPS, which has
    no float64 for the op maths)."""
    if images.device.type == "mps":
        return _apply_slots(images.cpu(), ops, args, pool, fill, interpolation).to(images.device)
    return _apply_slots(images, ops, args, pool, fill, interpolation)


def rand_augment_batch(images: torch.Tensor, num_ops: int = 2, magnitude: float = 9.0,
                       mstd: float = 0.5, increasing: bool = True, prob: float = 0.5,
                       fill=CIFAR_FILL, generator: torch.Generator | None = None,
                       mmax: float = MAX_LEVEL, interpolation: str = "bicubic") -> torch.Tensor:
    """RandAugment on a uint8 (B, 3, H, W) batch, every image with its own ops; same device out.

    Defaults are the seed's 'rand-m9-mstd0.5-inc1' with timm's p=0.5, the CIFAR-10 mean as fill
    and bicubic resampling (what the PIL pipeline uses).
    """
    check_images(images)
    check_options(interpolation, fill)
    draws = sample_ops(len(images), num_ops, magnitude, mstd, mmax, prob, len(_pool(increasing)), generator, "cpu")
    return apply_ops(images, draws, increasing, fill, interpolation)


class BatchRandAugment:
    """rand_augment_batch as a callable, e.g. BatchAugment(per_image=BatchRandAugment.from_string(
    'rand-m9-mstd0.5-inc1'))."""

    def __init__(self, config: RandAugmentConfig = RandAugmentConfig(m=9.0, mstd=0.5, inc=True),
                 fill=CIFAR_FILL, interpolation: str = "bicubic",
                 generator: torch.Generator | None = None):
        check_options(interpolation, fill)
        self.config, self.fill, self.interpolation = config, fill, interpolation
        self.generator = generator

    @classmethod
    def from_string(cls, spec: str, **kwargs) -> "BatchRandAugment":
        return cls(parse_rand_augment(spec), **kwargs)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        return rand_augment_batch(images, c.n, c.m, c.mstd, c.inc, c.p, self.fill, self.generator,
                                  c.mmax, self.interpolation)

    @property
    def pool(self) -> tuple:
        return _pool(self.config.inc)

    def draws(self, images: torch.Tensor) -> OpDraws:
        """One call's random draws for these images, drawn as __call__ draws them (op_choices then
        apply_choices applies them)."""
        check_images(images)
        c = self.config
        return sample_ops(len(images), c.n, c.m, c.mstd, c.mmax, c.p, len(self.pool), self.generator, "cpu")

    def __repr__(self) -> str:
        c = self.config
        return (f"BatchRandAugment(n={c.n}, m={c.m}, mstd={c.mstd}, mmax={c.mmax}, p={c.p}, "
                f"ops={'increasing' if c.inc else 'standard'}, {self.interpolation})")
