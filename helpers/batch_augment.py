"""The training loop's batch transform, BatchAugment, for one model's batch or a group's at once.

A transform works in two steps: `BatchAugment.draw` makes one model's random choices for one
batch (small tensors on the CPU, and Random Erasing's noise), in the order the pieces of
helpers.augment draw them; `apply_drawn` then applies them. Calling a BatchAugment does both.

Why two steps: models trained together (helpers.together) each augment their own batch, with
their own recipe and random numbers. One after another, every model's batch would cost the same
few hundred operator calls (DeiT's recipe; notebook 04 counts them), each a kernel launch on a
GPU. `apply_drawn` applies the choices of M models to all M batches in one pass per stage: every
image gets its own crop, RandAugment ops and erasing box, and each model's MixUp or CutMix pairs
its images with its own reversed batch. Every stage works image by image (or within one model's
batch), so each model gets what its own BatchAugment call gives, bit for bit on the CPU
(tests/test_batch_augment.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers.augment import (MixInfo, _check_uint8_batch, boxes_from_draws, check_erase_probability, check_labels,
                             check_smoothing, crop_and_flip, crop_flip_choices, draw_mix, erase, erase_draws,
                             erase_noise, normalize, to_device)
from helpers.auto_augment import BatchAutoAugment
from helpers.batch_randaugment import BatchRandAugment, OpDraws, apply_choices, op_choices

NO_MIX = MixInfo("none", 1.0)

# The per-image hooks whose random choices can be drawn before they apply (BatchAugment.draw).
DRAWS_AHEAD = (BatchRandAugment, BatchAutoAugment)


class BatchAugment:
    """The training loop's batch transform: uint8 (B, 3, H, W) + labels -> normalized x, targets.

    Order (as in DeiT, where erasing is per image before the batch is mixed): random crop + flip
    on uint8, `per_image` hook, normalize, Random Erasing, MixUp/CutMix with label smoothing.
    Targets are (B, K) float soft targets when mixing or smoothing is on (use
    helpers.losses.soft_target_cross_entropy), else the int labels. Works on any device.

    per_image: an optional callable on the uint8 batch, e.g. helpers.batch_randaugment's
    BatchRandAugment; it must return a uint8 batch of the same shape.

    Notebooks: used in 01, 03.
    """

    def __init__(self, crop_flip: bool = True, mixup: float = 0.8, cutmix: float = 1.0,
                 switch_prob: float = 0.5, smoothing: float = 0.1, reprob: float = 0.25,
                 num_classes: int = 10, mix_prob: float = 1.0, padding: int = 4,
                 per_image=None, generator: torch.Generator | None = None):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, not {padding}.")
        check_erase_probability(reprob)
        check_smoothing(smoothing)
        self.crop_flip, self.padding, self.per_image = crop_flip, padding, per_image
        self.mixup_alpha, self.cutmix_alpha, self.switch_prob = mixup, cutmix, switch_prob
        self.smoothing, self.reprob, self.num_classes, self.mix_prob = smoothing, reprob, num_classes, mix_prob
        self.generator = generator
        self.last_mix: MixInfo | None = None

    @property
    def soft_targets(self) -> bool:
        mixing = self.mix_prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)
        return mixing or self.smoothing > 0

    def draw(self, images: torch.Tensor, labels) -> "Drawn":
        """This batch's random choices, drawn as the one-step transform draws them (not for a
        per_image hook other than those in DRAWS_AHEAD, which draws while it applies: draws_ahead)."""
        if not draws_ahead(self):
            raise ValueError(f"{self.per_image!r} draws while it applies, so its BatchAugment cannot draw "
                             f"ahead: call the BatchAugment on the batch instead.")
        drawn = self._draws_before_hook(images, labels)
        if isinstance(self.per_image, DRAWS_AHEAD):
            drawn.rand_augment = self.per_image.draws(images)
        self._draws_after_hook(drawn, images)
        return drawn

    def _draws_before_hook(self, images: torch.Tensor, labels) -> "Drawn":
        _check_uint8_batch(images)
        labels = torch.as_tensor(labels, device=images.device)
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},) to match the images, "
                             f"got {tuple(labels.shape)}.")
        drawn = Drawn(self, labels)
        if self.crop_flip:
            drawn.crop = crop_flip_choices(len(images), self.padding, self.generator)
        return drawn

    def _draws_after_hook(self, drawn: "Drawn", images: torch.Tensor) -> None:
        b, _, h, w = images.shape
        if self.reprob > 0:  # Random Erasing's boxes (helpers.augment.erase_boxes), then its noise
            drawn.erase = erase_draws(b, generator=self.generator), erase_noise(images.shape, self.generator,
                                                                                images.device)
        if self.soft_targets:
            self.last_mix = drawn.mix = draw_mix(h, w, self.mixup_alpha, self.cutmix_alpha, self.mix_prob,
                                                 self.switch_prob, self.generator)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor):
        if draws_ahead(self):
            x, (targets,) = apply_drawn([self.draw(images, labels)], images[None])
        else:  # the hook draws while it applies, so what comes after it is drawn after it
            drawn = self._draws_before_hook(images, labels)
            x = self.per_image(_crop_and_flip(images, [drawn]))
            self._draws_after_hook(drawn, x)
            x, (targets,) = _after_per_image(x, [drawn])
        return x[0], targets

    def __repr__(self) -> str:
        return (f"BatchAugment(crop_flip={self.crop_flip}, mixup={self.mixup_alpha}, "
                f"cutmix={self.cutmix_alpha}, switch_prob={self.switch_prob}, "
                f"smoothing={self.smoothing}, reprob={self.reprob}, num_classes={self.num_classes})")


@dataclass
class Drawn:
    """One model's random choices for one batch of B images (None: that stage is off)."""
    transform: BatchAugment
    labels: torch.Tensor
    crop: tuple | None = None  # offsets (2, B), flips (B,)
    rand_augment: OpDraws | None = None  # each (slots, B)
    erase: tuple | None = None  # erase_draws (for erase_boxes), noise (B, C, H, W)
    mix: MixInfo | None = None


# --- which transforms can apply together ------------------------------------------------------

def _settings(transform) -> dict | None:
    """What must agree for transforms to apply together (a None value agrees with anything), or
    None for a transform that applies alone (not a BatchAugment, or a per_image hook other than
    those in DRAWS_AHEAD, which draws while it applies)."""
    if not isinstance(transform, BatchAugment):
        return None
    hook = transform.per_image
    if hook is not None and not isinstance(hook, DRAWS_AHEAD):
        return None
    return {"num_classes": transform.num_classes, "padding": transform.padding if transform.crop_flip else None,
            "rand_augment": (hook.pool, tuple(hook.fill), hook.interpolation) if hook else None}


# On a CPU, more images at once than this leave its caches and cost more per image: augmenting 8
# batches of 256 at once took 1.7x as long per model as one batch (python -m benchmarks.augment_calls).
# A GPU gains from every image added (fewer, larger kernels), so it has no such limit.
CPU_IMAGES_AT_ONCE = 512


def draws_ahead(transform) -> bool:
    """Whether the transform can draw (BatchAugment.draw) before it applies (apply_drawn)."""
    return _settings(transform) is not None


def sharing_groups(transforms, most: int | None = None) -> list[list[int]]:
    """The transforms' indices, grouped so that each group's batches can go through apply_drawn
    at once (DeiT's recipe and all its ablation variants form one group), at most `most` a group."""
    groups, agreed = [], []
    for k, transform in enumerate(transforms):
        settings = _settings(transform)
        for group, common in zip(groups, agreed):
            if settings is not None and common is not None and len(group) < (most or len(transforms)) and all(
                    v is None or common[f] is None or v == common[f] for f, v in settings.items()):
                group.append(k)
                common.update({f: v for f, v in settings.items() if v is not None})
                break
        else:
            groups.append([k])
            agreed.append(settings)
    return groups


# --- applying a group's choices -----------------------------------------------------------------

def apply_drawn(drawn: list[Drawn], images: torch.Tensor) -> tuple[torch.Tensor, list]:
    """Apply M models' choices to their batches at once: images (M, B, C, H, W) uint8, model k's
    batch in images[k]. Returns (M, B, C, H, W) normalized images and each model's targets.

    Notebooks: used in 04."""
    transforms = [d.transform for d in drawn]
    if len(drawn) != len(images) or not all(map(draws_ahead, transforms)) or len(sharing_groups(transforms)) != 1:
        raise ValueError("apply_drawn needs one Drawn per batch, from transforms that can apply together "
                         "(helpers.batch_augment.sharing_groups puts them in one group).")
    x = _crop_and_flip(images.flatten(0, 1), drawn)
    return _after_per_image(_rand_augment(x, drawn), drawn)


def _after_per_image(x: torch.Tensor, drawn: list[Drawn]) -> tuple[torch.Tensor, list]:
    """Normalize, erase and mix the (M * B, C, H, W) uint8 images of M models; their targets."""
    x = _erase(normalize(x), drawn).unflatten(0, (len(drawn), -1))
    if not any(d.mix for d in drawn):  # no soft targets: the images as they are, int labels
        return x, [d.labels for d in drawn]
    return _mix(x, drawn), _targets(drawn)


def _joined(parts: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _crop_and_flip(x: torch.Tensor, drawn: list[Drawn]) -> torch.Tensor:
    cropping = [d for d in drawn if d.crop]
    if not cropping:
        return x
    padding, b = cropping[0].transform.padding, len(drawn[0].labels)
    # A model without crop + flip gets the centre crop, unflipped: its own image
    uncropped = (torch.full((2, b), padding), torch.zeros(b, dtype=torch.bool))
    offsets, flips = zip(*[d.crop or uncropped for d in drawn])
    return crop_and_flip(x, _joined(offsets, 1), _joined(flips), padding)


def _rand_augment(x: torch.Tensor, drawn: list[Drawn]) -> torch.Tensor:
    choosing = [d for d in drawn if d.rand_augment]
    if not choosing:
        return x
    slots, b = max(len(d.rand_augment.ops) for d in choosing), len(drawn[0].labels)
    # The models' draws side by side; a model without RandAugment, or with fewer slots, applies no op there
    draws = [_padded(d.rand_augment, slots, b) for d in drawn]
    joined = OpDraws(*[_joined([getattr(o, f) for o in draws], 1) for f in ("ops", "applied", "magnitudes", "signs")])
    hook = choosing[0].transform.per_image
    return apply_choices(x, *op_choices(joined, hook.pool), hook.pool, hook.fill, hook.interpolation)


def _padded(draws: OpDraws | None, slots: int, b: int) -> OpDraws:
    have = 0 if draws is None else len(draws.ops)
    if draws is not None and have == slots:
        return draws
    extra = OpDraws(torch.zeros(slots - have, b, dtype=torch.long), torch.zeros(slots - have, b, dtype=torch.bool),
                    torch.zeros(slots - have, b, dtype=torch.float64), torch.ones(slots - have, b, dtype=torch.float64))
    return extra if draws is None else OpDraws(*[torch.cat([getattr(draws, f), getattr(extra, f)]) for f in
                                                 ("ops", "applied", "magnitudes", "signs")])


def _erase(x: torch.Tensor, drawn: list[Drawn]) -> torch.Tensor:
    erasing = [d for d in drawn if d.erase]
    if not erasing:
        return x
    b, shape = len(drawn[0].labels), (len(drawn[0].labels), *x.shape[1:])
    if len(erasing) < len(drawn):  # a model without erasing drew nothing: any draws with p = 0 give no box
        none = (tuple(torch.zeros_like(u) for u in erasing[0].erase[0]), torch.zeros(shape, device=x.device))
    draws, noise = zip(*[d.erase or none for d in drawn])
    joined = tuple(_joined(list(u)) for u in zip(*draws))
    p = drawn[0].transform.reprob if len(drawn) == 1 else torch.tensor(
        [d.transform.reprob for d in drawn], dtype=torch.float64).repeat_interleave(b)
    boxes = boxes_from_draws(joined, x.shape[-2], x.shape[-1], p)
    return erase(x, boxes, _joined([n.to(x.device, x.dtype) for n in noise]))


def _numbers(rows: list[list[float]], columns: tuple, device) -> dict:
    """Per-model numbers, one row per model, in one small copy to the device. Computed in double
    and rounded once to float32: what torch does with a Python number in a float32 op."""
    numbers = to_device(torch.tensor(rows, dtype=torch.float64).float(), device)
    return {name: numbers[:, i] for i, name in enumerate(columns)}


def per_model_view(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """(M,) values as (M, 1, ...) with `ndim` dimensions: one factor per model of a stacked tensor."""
    return values.view(-1, *[1] * (ndim - 1))


def _mix(x: torch.Tensor, drawn: list[Drawn]) -> torch.Tensor:
    """MixUp or CutMix within each model's batch (x is (M, B, C, H, W)); the partner of image i
    is image B-1-i of the same model, as helpers.augment.mixup and cutmix pair them."""
    mixes = [d.mix or NO_MIX for d in drawn]
    methods = [mix.method for mix in mixes]
    if all(method == "none" for method in methods):
        return x
    # the images' weight and their partner's (1 and 0 without MixUp), whether MixUp, CutMix's box
    lams = [mix.lam if mix.method == "mixup" else 1.0 for mix in mixes]
    numbers = _numbers([[lam, 1.0 - lam, float(mix.method == "mixup"), *(mix.box or (0, 0, 0, 0))]
                        for lam, mix in zip(lams, mixes)],
                       ("lam", "partner", "mixup", "top", "bottom", "left", "right"), x.device)
    partner, out = x.flip(1), x
    if "mixup" in methods:
        mixed = x * per_model_view(numbers["lam"], x.ndim) + partner * per_model_view(numbers["partner"], x.ndim)
        out = mixed if all(method == "mixup" for method in methods) else torch.where(
            per_model_view(numbers["mixup"] > 0, x.ndim), mixed, x)
    if "cutmix" in methods:
        h, w = x.shape[-2:]
        rows = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
        cols = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
        box = {name: numbers[name].view(-1, 1, 1) for name in ("top", "bottom", "left", "right")}
        inside = (rows >= box["top"]) & (rows < box["bottom"]) & (cols >= box["left"]) & (cols < box["right"])
        out = torch.where(inside[:, None, None], partner, out)  # an empty box for the other models
    return out


def _targets(drawn: list[Drawn]) -> list:
    """Each model's targets: helpers.augment.mix_targets's soft targets, or its int labels."""
    soft = [d for d in drawn if d.transform.soft_targets]
    num_classes = drawn[0].transform.num_classes
    rows = []
    for d in soft:
        check_labels(d.labels, num_classes)
        t, lam = d.transform, d.mix.lam  # CutMix's lambda: the area left
        off = t.smoothing / t.num_classes  # helpers.augment.smooth_one_hot's values, rounded alike
        rows.append([lam, 1.0 - lam, off, 1.0 - t.smoothing + off])
    numbers = _numbers(rows, ("lam", "partner", "off", "on"), soft[0].labels.device)
    labels = torch.stack([d.labels for d in soft]) if len(soft) > 1 else soft[0].labels[None]
    y = per_model_view(numbers["off"], 3).expand(*labels.shape, num_classes).contiguous()
    # scatter_, as smooth_one_hot: on a GPU a label out of range fails there with a device-side assert
    y.scatter_(2, labels.long().unsqueeze(-1), per_model_view(numbers["on"], 3).expand(*labels.shape, 1))
    mixed = iter(y * per_model_view(numbers["lam"], 3) + y.flip(1) * per_model_view(numbers["partner"], 3))
    return [next(mixed) if d.transform.soft_targets else d.labels for d in drawn]
