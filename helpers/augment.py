"""Data augmentation for DeiT on CIFAR-10, written from scratch and checked against timm.

Batch-level pieces (crop+flip, MixUp/CutMix, label smoothing, Random Erasing) are plain torch
on (B, C, H, W) tensors, so they run on whatever device the batch is on.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import torch
from PIL import Image, ImageEnhance, ImageOps

from helpers.constants import CIFAR_FILL, MEAN, STD


def _draw_device(generator: torch.Generator | None, default="cpu") -> torch.device:
    """Random numbers are drawn where the generator lives (a CUDA generator needs CUDA tensors)."""
    return generator.device if generator is not None else torch.device(default)


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A small CPU tensor onto `device` without making the CPU wait for the GPU.

    A plain .to("cuda") from ordinary memory waits until every kernel queued before it has run,
    so the CPU could not prepare the next batch while the GPU trains on this one. From pinned
    memory the copy is queued like a kernel (non_blocking) and the CPU goes on at once.
    """
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _scalar_uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand(1, generator=generator, device=_draw_device(generator)))


def _scalar_randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(0, high, (1,), generator=generator, device=_draw_device(generator)))


def _check_batch(x: torch.Tensor, name: str = "images") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {shape}. "
                         f"Add a batch dimension with x.unsqueeze(0), or permute (B, H, W, C) "
                         f"arrays with x.permute(0, 3, 1, 2).")


def random_crop_flip(x: torch.Tensor, padding: int = 4,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Per image: zero-pad by `padding`, take a random HxW crop, flip left-right with p=0.5.

    The batched form of RandomCrop(32, padding=4) + RandomHorizontalFlip, DeiT's choice at <= 32 px.
    Offsets and flips come from `generator` (drawn on its device), so a seed gives the same crops anywhere.

    Notebooks: used in 00, 01, 02.
    """
    _check_batch(x)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, not {padding}.")
    return crop_and_flip(x, *crop_flip_choices(len(x), padding, generator), padding)


def crop_flip_choices(batch: int, padding: int, generator: torch.Generator | None = None):
    """random_crop_flip's random choices, on the CPU: offsets (2, B) (rows, columns) into the
    padded image and flips (B,) bools."""
    where = _draw_device(generator)
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator, device=where).cpu()
    flips = torch.rand(batch, generator=generator, device=where).cpu() < 0.5
    return offsets, flips


def crop_and_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Each image's crop of the zero-padded batch at its offsets, flipped where flips says (offsets
    (padding, padding) and no flip give the image back)."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    # Gather the crops with index arithmetic rather than a Python loop over images.
    rows = offsets[0].view(b, 1) + torch.arange(h)                          # (B, H)
    cols = offsets[1].view(b, 1) + torch.arange(w)                          # (B, W)
    cols = torch.where(flips.view(b, 1), cols.flip(1), cols)
    rows, cols = to_device(rows, x.device), to_device(cols, x.device)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def normalize(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 (B, 3, H, W) in 0..255 -> float32 standardized with CIFAR-10's channel statistics.

    Notebooks: used in 00, 01, 02.
    """
    _check_batch(x)
    if x.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 images in 0..255, got {x.dtype}. For floats in "
                         f"[0, 1] use torchvision.transforms.Normalize(MEAN, STD) instead.")
    if x.shape[1] != len(mean):
        raise ValueError(f"images must have {len(mean)} channels in dim 1, got shape {tuple(x.shape)}.")
    mean = to_device(torch.tensor(mean).view(1, -1, 1, 1), x.device)
    std = to_device(torch.tensor(std).view(1, -1, 1, 1), x.device)
    return (x.float() / 255.0 - mean) / std


def _check_uint8_batch(x: torch.Tensor) -> None:
    _check_batch(x)
    if x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 in 0..255, got {x.dtype}. Pass the raw batch from "
                         f"helpers.data.TensorBatches; normalization happens inside.")


def _uniform(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """U(0, 1) drawn on the generator's device (so a seed means the same numbers anywhere)."""
    return torch.rand(shape, generator=generator, device=_draw_device(generator, device)).to(device)


# ----------------------------------------------------------------------------------------------
# Label smoothing, MixUp, CutMix
# ----------------------------------------------------------------------------------------------

def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets with label smoothing: (1 - eps) on the true class plus eps/K everywhere.

    Szegedy et al. (2016) spread eps uniformly over all K classes, so the true class gets
    1 - eps + eps/K and every other class eps/K (rows still sum to 1).

    Notebooks: built in 01 (label smoothing).
    """
    labels = torch.as_tensor(labels)
    check_labels(labels, num_classes)
    check_smoothing(smoothing)
    off = smoothing / num_classes
    targets = torch.full((len(labels), num_classes), off, device=labels.device)
    return targets.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


def check_smoothing(smoothing: float) -> None:
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), not {smoothing}.")


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Class indices: a 1-D integer tensor in 0..num_classes - 1."""
    if labels.dim() != 1 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be a 1-D integer tensor of class indices, got "
                         f"{labels.dtype} with shape {tuple(labels.shape)}.")
    # Checked on the CPU only: on a GPU the check would make the CPU wait for every batch (an
    # index out of range still fails there, in the targets' indexing, with a device-side assert).
    if labels.device.type == "cpu" and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}; got {labels.min().item()}.."
                         f"{labels.max().item()}. Is num_classes={num_classes} right?")


def mix_targets(labels: torch.Tensor, num_classes: int, lam: float,
                smoothing: float = 0.0) -> torch.Tensor:
    """lam * y_i + (1 - lam) * y_partner(i), with smoothed one-hot y; the partner is the reversed batch.

    Notebooks: used in 01.
    """
    y = smooth_one_hot(labels, num_classes, smoothing)
    return y * lam + y.flip(0) * (1.0 - lam)


def sample_beta(alpha: float, generator: torch.Generator | None = None) -> float:
    """One draw of lambda ~ Beta(alpha, alpha).

    torch's Beta sampler takes no generator, so a seeded Python RNG is derived from `generator`.

    Notebooks: used in 01.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, not {alpha}.")
    seed = _scalar_randint(2**62, generator)
    return random.Random(seed).betavariate(alpha, alpha)


def mixup(x: torch.Tensor, lam: float) -> torch.Tensor:
    """MixUp (Zhang et al., 2018): lam * x_i + (1 - lam) * x_partner(i), partner = reversed batch.

    Reversal pairs image i with image B-1-i (timm's pairing). For an odd batch the middle image
    is paired with itself, so it stays unchanged: odd batches need no special case.

    Notebooks: built in 01 (MixUp).
    """
    _check_batch(x)
    if not x.dtype.is_floating_point:
        raise ValueError(f"mixup needs float images (normalize first), got {x.dtype}.")
    return x * lam + x.flip(0) * (1.0 - lam)


def cutmix_box(height: int, width: int, lam: float, center: tuple[int, int] | None = None,
               generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """CutMix's box (Yun et al., 2019): sides sqrt(1 - lam) of the image, uniform centre, clipped.

    Returns (top, bottom, left, right), bottom/right exclusive. With clipping the box can be
    smaller than asked; use cutmix_lambda for the area actually pasted.

    Notebooks: built in 01 (CutMix).
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], not {lam}.")
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    if center is None:
        cy, cx = _scalar_randint(height, generator), _scalar_randint(width, generator)
    else:
        cy, cx = center
    # The box extends cut//2 before the centre and the rest after it, then is clipped to the image.
    # (timm's rand_bbox does the same since timm 1.0.29; before, it ended cut//2 after the centre,
    # so an odd side came out one pixel short.)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, width)
    return top, bottom, left, right


def cutmix_lambda(box: tuple[int, int, int, int], height: int, width: int) -> float:
    """The share of the image that still shows the original: 1 - pasted area / image area.

    Notebooks: built in 01 (CutMix).
    """
    top, bottom, left, right = box
    return 1.0 - (bottom - top) * (right - left) / float(height * width)


def cutmix(x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Paste the box region of the partner image (reversed batch) into every image.

    Notebooks: built in 01 (CutMix).
    """
    _check_batch(x)
    top, bottom, left, right = box
    out = x.clone()
    out[:, :, top:bottom, left:right] = x.flip(0)[:, :, top:bottom, left:right]
    return out


@dataclass
class MixInfo:
    """What one call of mix_batch did (for plots and tests)."""
    method: str  # 'mixup', 'cutmix' or 'none'
    lam: float  # the label weight of the original image (area-corrected for CutMix)
    box: tuple | None = None


def mix_batch(x: torch.Tensor, labels: torch.Tensor, num_classes: int, mixup_alpha: float = 0.8,
              cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
              smoothing: float = 0.1, generator: torch.Generator | None = None):
    """MixUp or CutMix on a whole batch with one lambda (timm's 'batch' mode); soft targets out.

    With probability `prob` the batch is mixed; then CutMix with probability switch_prob (when
    both are on), else MixUp. Label smoothing is folded into the mixed targets, so the loss must
    be helpers.losses.soft_target_cross_entropy, never CrossEntropyLoss(label_smoothing=...) on top.
    Returns (mixed images, (B, K) soft targets, MixInfo).

    Notebooks: used in 01.
    """
    _check_batch(x)
    if len(labels) != len(x):
        raise ValueError(f"{len(x)} images but {len(labels)} labels; they must match.")
    info = draw_mix(x.shape[-2], x.shape[-1], mixup_alpha, cutmix_alpha, prob, switch_prob, generator)
    if info.method == "cutmix":
        x = cutmix(x, info.box)
    elif info.method == "mixup":
        x = mixup(x, info.lam)
    return x, mix_targets(labels, num_classes, info.lam, smoothing), info


def draw_mix(height: int, width: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
             switch_prob: float = 0.5, generator: torch.Generator | None = None) -> MixInfo:
    """mix_batch's random choices for one batch: MixUp, CutMix or none, lambda and CutMix's box."""
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError("mixup_alpha and cutmix_alpha must be >= 0 (0 turns one off).")
    if not ((mixup_alpha > 0 or cutmix_alpha > 0) and _scalar_uniform(generator) < prob):
        return MixInfo("none", 1.0)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = _scalar_uniform(generator) < switch_prob
    else:
        use_cutmix = cutmix_alpha > 0
    lam = sample_beta(cutmix_alpha if use_cutmix else mixup_alpha, generator)
    if not use_cutmix:
        return MixInfo("mixup", lam)
    box = cutmix_box(height, width, lam, generator=generator)
    return MixInfo("cutmix", cutmix_lambda(box, height, width), box)


# ----------------------------------------------------------------------------------------------
# Random Erasing
# ----------------------------------------------------------------------------------------------

def erase_boxes(batch: int, height: int, width: int, p: float = 0.25, min_area: float = 0.02,
                max_area: float = 1 / 3, min_aspect: float = 0.3, max_aspect: float | None = None,
                attempts: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random Erasing's rectangles, one per image: (B, 4) = top, left, h, w.

    timm's version (RandomErasing in timm/data/random_erasing.py), which DeiT uses: with
    probability p an image gets a box of area s * H * W, s ~ U(min_area, max_area), and aspect
    ratio h/w log-uniform in [min_aspect, max_aspect]; a box that does not fit is redrawn (up to
    `attempts` times, then the image is left alone). h = 0 means "not erased". The box defaults
    are timm's and p = 0.25 is DeiT's (Table 9 of the DeiT paper); the original (Zhong et
    al., 2020) draws the area from [0.02, 0.4] and the aspect ratio uniformly from [0.3, 1/0.3],
    with p = 0.5.
    """
    check_erase_probability(p)
    if not 0.0 < min_area <= max_area <= 1.0:
        raise ValueError(f"need 0 < min_area <= max_area <= 1, got {min_area}, {max_area}.")
    return boxes_from_draws(erase_draws(batch, attempts, generator), height, width, p, min_area, max_area,
                            min_aspect, max_aspect)


def check_erase_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], not {p}.")


def erase_draws(batch: int, attempts: int = 10, generator: torch.Generator | None = None) -> tuple:
    """erase_boxes's uniform draws, in its order, as float64 on the CPU: whether to erase (B,),
    area and aspect (B, attempts), top and left (B,)."""
    draw = lambda *shape: _uniform(shape, generator, "cpu").double()  # noqa: E731
    return draw(batch), draw(batch, attempts), draw(batch, attempts), draw(batch), draw(batch)


def boxes_from_draws(draws: tuple, height: int, width: int, p, min_area: float = 0.02, max_area: float = 1 / 3,
                     min_aspect: float = 0.3, max_aspect: float | None = None) -> torch.Tensor:
    """erase_boxes from erase_draws (of one batch, or several joined); p is a float or a (B,)
    tensor, one probability per image."""
    erase, area, aspect, top, left = draws
    max_aspect = max_aspect or 1.0 / min_aspect
    batch = len(erase)
    erase = erase < p
    area = (min_area + (max_area - min_area) * area) * height * width
    log_lo, log_hi = math.log(min_aspect), math.log(max_aspect)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * aspect)
    h = torch.round(torch.sqrt(area * aspect)).long()  # round half to even, like Python's round
    w = torch.round(torch.sqrt(area / aspect)).long()
    fits = (h < height) & (w < width)
    first = torch.argmax(fits.int(), dim=1)  # the first attempt that fits
    rows = torch.arange(batch)
    h, w = h[rows, first], w[rows, first]
    keep = erase & fits.any(dim=1)
    top = (top * (height - h + 1)).long()
    left = (left * (width - w + 1)).long()
    zero = torch.zeros_like(h)
    return torch.stack([torch.where(keep, top, zero), torch.where(keep, left, zero),
                        torch.where(keep, h, zero), torch.where(keep, w, zero)], dim=1)


def random_erase(x: torch.Tensor, p: float = 0.25, min_area: float = 0.02, max_area: float = 1 / 3,
                 min_aspect: float = 0.3, max_aspect: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Random Erasing in timm's 'pixel' mode on normalized images: the box gets per-pixel N(0, 1)
    noise (the original paper fills it with random values in 0..255).

    N(0, 1) is "a random image" in normalized units. Accepts (C, H, W) or (B, C, H, W); returns a
    new tensor on the same device.

    Notebooks: built in 01 (random erasing).
    """
    single = x.dim() == 3
    batch = x.unsqueeze(0) if single else x
    _check_batch(batch, "x")
    if not batch.dtype.is_floating_point:
        raise ValueError(f"random_erase works on normalized float images, got {batch.dtype}. "
                         f"Call normalize(x) first.")
    b, c, h, w = batch.shape
    boxes = erase_boxes(b, h, w, p, min_area, max_area, min_aspect, max_aspect, generator=generator)
    out = erase(batch, boxes, erase_noise(batch.shape, generator, batch.device))
    return out[0] if single else out


def erase_noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Random Erasing's N(0, 1) pixels, drawn on the generator's device (else on `device`)."""
    return torch.randn(shape, generator=generator, device=_draw_device(generator, device))


def erase(x: torch.Tensor, boxes: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x with each image's box (a row of erase_boxes; height 0: none) replaced by its noise."""
    b, _, h, w = x.shape
    boxes = to_device(boxes, x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left, bh, bw = (boxes[:, i].view(b, 1, 1) for i in range(4))
    inside = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
    return torch.where(inside.unsqueeze(1), noise.to(x.device, x.dtype), x)


class RandomErasing:
    """Random Erasing as a transform (per image or per batch), pixel mode; see random_erase."""

    def __init__(self, p: float = 0.25, min_area: float = 0.02, max_area: float = 1 / 3,
                 min_aspect: float = 0.3, max_aspect: float | None = None,
                 generator: torch.Generator | None = None):
        self.p, self.min_area, self.max_area = p, min_area, max_area
        self.min_aspect, self.max_aspect, self.generator = min_aspect, max_aspect, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return random_erase(x, self.p, self.min_area, self.max_area, self.min_aspect,
                            self.max_aspect, self.generator)

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, mode=pixel, area=({self.min_area}, {self.max_area:.3g}))"


# ----------------------------------------------------------------------------------------------
# RandAugment on PIL images (Cubuk et al., 2020), with timm's extensions mstd, mmax and inc
# ----------------------------------------------------------------------------------------------

MAX_LEVEL = 10.0  # magnitude M lives on a 0..10 scale; level = M / 10

OPS_STANDARD = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness",
                "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
# 'inc1': the same pool, but every op with a magnitude gets stronger as M grows (in the standard
# pool Posterize, Solarize and the enhance ops get *weaker* or change direction with M). The nine
# ops in both pools behave the same in each.
OPS_INCREASING = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                  "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                  "BrightnessIncreasing", "SharpnessIncreasing",
                  "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_ENHANCERS = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
              "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}


def _trunc(x):
    """int() truncation for a float or every element of a tensor."""
    return torch.trunc(x) if isinstance(x, torch.Tensor) else float(int(x))


def _clamp(x, low=None, high=None):
    if isinstance(x, torch.Tensor):
        return x.clamp(min=low, max=high)
    return min(high, x) if low is None else max(low, x if high is None else min(high, x))


def _enhance(level, sign):  # enhance factor 0.1..1.9; 1.0 = unchanged
    return level * 1.8 + 0.1


def _enhance_increasing(level, sign):  # the factor moves away from 1.0 as M grows
    return _clamp(1.0 + sign * (level * 0.9), low=0.1)


# Every op's argument at level = M / 10, with the ranges timm uses: ONE table, used by the PIL
# version here and, on whole tensors of levels, by the batched version (helpers.batch_randaugment).
# sign (+1/-1) picks the direction of the symmetric ops; None: the op takes no argument.
LEVEL_TO_ARGUMENT = {
    "AutoContrast": None, "Equalize": None, "Invert": None,
    "Rotate": lambda level, sign: sign * (level * 30.0),  # degrees
    # bits kept (fewer = stronger, so the standard op weakens with M); >= 1: Pillow 13 refuses 0
    "Posterize": lambda level, sign: _clamp(_trunc(level * 4), low=1),
    "PosterizeIncreasing": lambda level, sign: _clamp(4 - _trunc(level * 4), low=1),
    # AutoAugment's own posterize keeps 4..8 bits (its paper's range; timm's PosterizeOriginal)
    "PosterizeOriginal": lambda level, sign: _trunc(level * 4) + 4,
    # threshold above which pixels are inverted
    "Solarize": lambda level, sign: _clamp(_trunc(level * 256), high=256),
    "SolarizeIncreasing": lambda level, sign: 256 - _clamp(_trunc(level * 256), high=256),
    "SolarizeAdd": lambda level, sign: _clamp(_trunc(level * 110), high=128),  # added below 128
    **{name: _enhance for name in _ENHANCERS},
    **{name + "Increasing": _enhance_increasing for name in _ENHANCERS},
    "ShearX": lambda level, sign: sign * (level * 0.3),
    "ShearY": lambda level, sign: sign * (level * 0.3),
    "TranslateXRel": lambda level, sign: sign * (level * 0.45),  # fraction of the image side
    "TranslateYRel": lambda level, sign: sign * (level * 0.45),
}
_INTEGER_ARGUMENTS = {"Posterize", "PosterizeIncreasing", "PosterizeOriginal", "Solarize", "SolarizeIncreasing",
                      "SolarizeAdd"}
# The ops whose argument has a random sign (rotate left or right, and so on): timm's level
# functions that call _randomly_negate.
SIGNED_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
                        *(name + "Increasing" for name in _ENHANCERS)})


def op_argument(name: str, magnitude: float, sign: int = 1):
    """The argument an op gets at magnitude M (0..10); None for ops without an argument.

    sign (+1/-1) picks the direction of the symmetric ops (rotate left or right, etc.).

    Notebooks: used in 01.
    """
    if name not in LEVEL_TO_ARGUMENT:
        raise ValueError(f"Unknown op {name!r}; choose from {sorted(LEVEL_TO_ARGUMENT)}.")
    formula = LEVEL_TO_ARGUMENT[name]
    if formula is None:
        return None
    value = formula(magnitude / MAX_LEVEL, sign)
    return int(value) if name in _INTEGER_ARGUMENTS else value


def apply_op(img: Image.Image, name: str, magnitude: float, sign: int = 1,
             fill=CIFAR_FILL, interpolation=Image.Resampling.BICUBIC) -> Image.Image:
    """One RandAugment op on a PIL image at magnitude M (deterministic: the sign is given).

    Notebooks: used in 01, 04.
    """
    arg = op_argument(name, magnitude, sign)
    geometry = dict(resample=interpolation, fillcolor=fill)
    base = name.removesuffix("Increasing").removesuffix("Original")
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        return img.rotate(arg, **geometry)
    if base == "Posterize":
        return ImageOps.posterize(img, arg) if arg < 8 else img
    if base == "Solarize":
        return ImageOps.solarize(img, arg)
    if name == "SolarizeAdd":
        table = [min(255, v + arg) if v < 128 else v for v in range(256)]
        return img.point(table * len(img.getbands()))
    if base in _ENHANCERS:
        return _ENHANCERS[base](img).enhance(arg)
    # Affine ops: PIL maps each output pixel (x, y) to input (a x + b y + c, d x + e y + f).
    coefficients = {"ShearX": (1, arg, 0, 0, 1, 0), "ShearY": (1, 0, 0, arg, 1, 0),
                    "TranslateXRel": (1, 0, arg * img.size[0], 0, 1, 0),
                    "TranslateYRel": (1, 0, 0, 0, 1, arg * img.size[1])}[name]
    return img.transform(img.size, Image.Transform.AFFINE, coefficients, **geometry)


@dataclass(frozen=True)
class RandAugmentConfig:
    """The knobs of a timm-style RandAugment string such as 'rand-m9-mstd0.5-inc1'."""
    n: int = 2  # ops per image
    m: float = 10.0  # magnitude, 0..10
    mstd: float = 0.0  # std of Gaussian noise on M per op; inf = uniform in [0, M]
    mmax: float = MAX_LEVEL  # clip the noisy magnitude to [0, mmax]
    inc: bool = False  # use the increasing-severity op pool
    p: float = 0.5  # probability that each chosen op is applied


def parse_rand_augment(spec: str) -> RandAugmentConfig:
    """'rand-m9-n2-mstd0.5-mmax10-inc1-p0.5' -> RandAugmentConfig (any order, all optional).

    Defaults follow timm: n=2, m=10, mstd=0, mmax=10, inc=0, p=0.5; mstd > 100 means uniform.

    Notebooks: built in 01 (RandAugment).
    """
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"A RandAugment string starts with 'rand', e.g. 'rand-m9-mstd0.5-inc1'; "
                         f"got {spec!r}.")
    values = {}
    for part in parts[1:]:
        match = re.fullmatch(r"(mstd|mmax|inc|m|n|p)(\d+(?:\.\d*)?|inf)", part)
        if match is None:
            raise ValueError(f"Cannot read {part!r} in {spec!r}. Known sections: m<magnitude>, "
                             f"n<ops>, mstd<std>, mmax<max>, inc<0|1>, p<prob>, e.g. 'rand-m9-mstd0.5-inc1'.")
        key, value = match.groups()
        values[key] = float(value)
    if values.get("mstd", 0.0) > 100:
        values["mstd"] = math.inf  # timm's convention for "uniform in [0, M]"
    return RandAugmentConfig(n=int(values.get("n", 2)), m=values.get("m", MAX_LEVEL),
                             mstd=values.get("mstd", 0.0), mmax=values.get("mmax", MAX_LEVEL),
                             inc=bool(values.get("inc", 0)), p=values.get("p", 0.5))


class RandAugment:
    """RandAugment on PIL images: n ops drawn uniformly (with replacement) from the pool, each
    applied with probability p at magnitude M + N(0, mstd) clipped to [0, mmax].

    `rng` (a random.Random) makes it reproducible; `last_ops` lists (name, magnitude) of the ops
    applied to the latest image; sample_ops() draws one image's ops without applying them.
    helpers.batch_randaugment is the batched tensor version.

    Notebooks: built in 01 (RandAugment).
    """

    def __init__(self, n: int = 2, m: float = 9.0, mstd: float = 0.5, mmax: float = MAX_LEVEL,
                 increasing: bool = True, p: float = 0.5, fill=CIFAR_FILL,
                 interpolation=Image.Resampling.BICUBIC, rng: random.Random | None = None):
        if n < 0 or not 0.0 <= p <= 1.0 or m < 0 or mstd < 0:
            raise ValueError(f"need n >= 0, m >= 0, mstd >= 0 and 0 <= p <= 1; got n={n}, m={m}, "
                             f"mstd={mstd}, p={p}.")
        self.n, self.m, self.mstd, self.mmax, self.p = n, m, mstd, mmax, p
        self.ops = OPS_INCREASING if increasing else OPS_STANDARD
        self.fill, self.interpolation = fill, interpolation
        self.rng = rng or random.Random()
        self.last_ops: list[tuple[str, float]] = []

    @classmethod
    def from_config(cls, c: RandAugmentConfig, **kwargs) -> "RandAugment":
        return cls(n=c.n, m=c.m, mstd=c.mstd, mmax=c.mmax, increasing=c.inc, p=c.p, **kwargs)

    @classmethod
    def from_string(cls, spec: str, **kwargs) -> "RandAugment":
        return cls.from_config(parse_rand_augment(spec), **kwargs)

    def sample_magnitude(self) -> float:
        if math.isinf(self.mstd):
            m = self.rng.uniform(0.0, self.m)
        elif self.mstd > 0:
            m = self.rng.gauss(self.m, self.mstd)
        else:
            m = self.m
        return max(0.0, min(m, self.mmax))

    def __call__(self, img: Image.Image) -> Image.Image:
        if not isinstance(img, Image.Image):
            raise ValueError(f"RandAugment works on PIL images, got {type(img).__name__}. Use "
                             f"torchvision.transforms.functional.to_pil_image(x) first.")
        self.last_ops = []
        for name, magnitude, sign in self.sample_ops():
            img = apply_op(img, name, magnitude, sign, self.fill, self.interpolation)
            self.last_ops.append((name, magnitude))
        return img

    def sample_ops(self) -> list[tuple[str, float, int]]:
        """One image's draws, in order, without touching an image: (name, magnitude, sign) of
        each op to apply. Per slot: the op, whether to apply it, its magnitude, its sign."""
        chosen = []
        for _ in range(self.n):
            name = self.rng.choice(self.ops)
            if self.rng.random() >= self.p:
                continue
            magnitude = self.sample_magnitude()
            sign = -1 if self.rng.random() < 0.5 else 1
            chosen.append((name, magnitude, sign))
        return chosen

    def __repr__(self) -> str:
        return (f"RandAugment(n={self.n}, m={self.m}, mstd={self.mstd}, mmax={self.mmax}, "
                f"p={self.p}, ops={'increasing' if self.ops is OPS_INCREASING else 'standard'})")


# ----------------------------------------------------------------------------------------------
# Whole pipelines: the seed's (timm, as written) and the fixed one for 32x32 images
# ----------------------------------------------------------------------------------------------

STARTER_RAND_AUGMENT = "rand-m9-mstd0.5-inc1"


def starter_transforms():
    """The seed's get_deit_transforms, as written: timm's ImageNet-style recipe at 32 px.

    Known problems on CIFAR-10 (see notebook 01): RandomResizedCrop(scale=(0.08, 1)) at 32 px,
    ImageNet mean/std, an eval transform that resizes 32 -> 36 and crops back, and a
    RandAugment that raises ValueError on Pillow >= 13. Returns (train, eval).

    Notebooks: used in 01.
    """
    from timm.data import create_transform

    train = create_transform(32, is_training=True, auto_augment=STARTER_RAND_AUGMENT, re_prob=0.25,
                             re_mode="pixel", interpolation="bicubic")
    evaluation = create_transform(32, is_training=False, interpolation="bicubic")
    return train, evaluation


def starter_mixup():
    """The seed's setup_mixup, as written (timm.data.Mixup; asserts on odd batches).

    Notebooks: used in 01.
    """
    from timm.data import Mixup

    return Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch",
                 label_smoothing=0.1, num_classes=10)


def deit_train_transform(rand_augment: str | None = STARTER_RAND_AUGMENT, reprob: float = 0.25,
                         rng: random.Random | None = None,
                         generator: torch.Generator | None = None):
    """DeiT's per-image training transform at 32 px: pad-4 random crop + flip, RandAugment,
    ToTensor, CIFAR-10 Normalize, Random Erasing (pixel). PIL image in, (3, 32, 32) float out.

    Notebooks: used in 01.
    """
    from torchvision import transforms as T

    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    if rand_augment:
        steps.append(RandAugment.from_string(rand_augment, rng=rng))
    steps += [T.ToTensor(), T.Normalize(MEAN, STD)]
    if reprob > 0:
        steps.append(RandomErasing(p=reprob, generator=generator))
    return T.Compose(steps)


def eval_transform():
    """Evaluation at 32 px: no resizing, no cropping, only ToTensor + CIFAR-10 Normalize.

    Notebooks: used in 01.
    """
    from torchvision import transforms as T

    return T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
