"""AutoAugment (Cubuk et al., 2019): the learned policy that RandAugment replaced, for Table 8's
"autoaugment instead of randaugment" row.

AutoAugment searched, with reinforcement learning on a proxy task, for a **policy**: 25
sub-policies of two ops, each op with its own probability and a fixed magnitude (0..10). Each
image draws one sub-policy uniformly and applies each of its two ops with that op's probability.
RandAugment (Cubuk et al., 2020) dropped the search: every op equally likely, one shared
magnitude M, and N ops per image, two numbers to tune instead of a policy.

The policy here is AutoAugment's ImageNet policy as its paper lists it (appendix, "policy found
on reduced ImageNet"), the one timm calls 'original' and DeiT's main.py accepts as --aa
original. Its ops and magnitude ranges are RandAugment's standard ones (helpers.augment), except
posterize, which keeps 4 to 8 bits ("PosterizeOriginal"). Rotate and ShearX turn either way, a
coin per image, as in timm.

`AutoAugment` works on PIL images and draws from a random.Random exactly as timm's AutoAugment
draws from Python's random module (a sub-policy, then per op: apply?, then sign), so the same
seed gives the same images, when timm is given one interpolation (hparams["interpolation"]; left
out, timm draws bilinear or bicubic for every rotate and shear, one more draw).
`BatchAutoAugment` draws every image's choices at once and applies them with
helpers.batch_randaugment's batched ops, so the training pipeline (BatchAugment, the together
trainer) treats it as it treats BatchRandAugment.
"""
from __future__ import annotations

import functools
import random

import torch
from PIL import Image

from helpers.augment import OPS_STANDARD, SIGNED_OPS, apply_op, parse_rand_augment
from helpers.batch_randaugment import (OpDraws, BatchRandAugment, apply_choices, check_images, check_options,
                                       draw_random, op_choices)
from helpers.constants import CIFAR_FILL

AUTO_AUGMENT = "original"  # the --aa name (timm's, and DeiT's main.py's help)
# (op, probability, magnitude) pairs, in the paper's order; timm's auto_augment_policy_original
# lists the same 25.
IMAGENET_POLICY = (
    (("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("PosterizeOriginal", 0.6, 7), ("PosterizeOriginal", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("PosterizeOriginal", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("PosterizeOriginal", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)
POOL = OPS_STANDARD + ("PosterizeOriginal",)  # every op a policy may name, as indices for the batched ops


def check_aa(spec: str | None) -> None:
    """Raise a ValueError naming what --aa takes, unless `spec` is '' or None (off), 'original' or
    a RandAugment string."""
    if not spec:
        return
    if not isinstance(spec, str) or spec != AUTO_AUGMENT and not spec.startswith("rand"):
        raise ValueError(f"--aa (Recipe.aa) takes a RandAugment string such as 'rand-m9-mstd0.5-inc1', "
                         f"'{AUTO_AUGMENT}' (AutoAugment's ImageNet policy) or 'none' (off), not {spec!r}.")
    if spec.startswith("rand"):
        parse_rand_augment(spec)  # a typo in a RandAugment string fails here, with its own message


def batch_policy(spec: str, **kwargs):
    """The batched per-image augmentation an --aa string names: BatchAutoAugment or BatchRandAugment."""
    check_aa(spec)
    return BatchAutoAugment(**kwargs) if spec == AUTO_AUGMENT else BatchRandAugment.from_string(spec, **kwargs)


def check_policy(policy) -> None:
    """Raise a ValueError naming the first malformed part of a policy."""
    if not policy:
        raise ValueError("a policy needs at least one sub-policy, e.g. helpers.auto_augment.IMAGENET_POLICY.")
    for k, sub_policy in enumerate(policy):
        for op in sub_policy:
            if not (isinstance(op, tuple) and len(op) == 3 and op[0] in POOL and 0 <= op[1] <= 1
                    and 0 <= op[2] <= 10):
                raise ValueError(f"sub-policy {k}: {op!r} is not (op, probability, magnitude) with an op of "
                                 f"{POOL}, a probability in [0, 1] and a magnitude in [0, 10].")
    if len({len(sub_policy) for sub_policy in policy}) != 1:
        raise ValueError("every sub-policy needs the same number of ops (AutoAugment's have two).")


class AutoAugment:
    """AutoAugment on PIL images: one sub-policy per image, each op applied with its probability.

    `rng` (a random.Random) makes it reproducible; seeded alike, it draws what timm's AutoAugment
    draws from Python's random module. `last_ops` lists (name, magnitude, sign) of the ops applied
    to the latest image.

    Notebooks: built in 01 (AutoAugment).
    """

    def __init__(self, policy=IMAGENET_POLICY, fill=CIFAR_FILL, interpolation=Image.Resampling.BICUBIC,
                 rng: random.Random | None = None):
        check_policy(policy)
        self.policy, self.fill, self.interpolation = policy, fill, interpolation
        self.rng = rng or random.Random()
        self.last_ops: list[tuple[str, float, int]] = []

    def sample_ops(self) -> list[tuple[str, float, int]]:
        """One image's draws, in timm's order: the sub-policy, then per op whether to apply it
        (skipped when a uniform draw exceeds its probability) and, for a signed op, its sign."""
        chosen = []
        for name, prob, magnitude in self.rng.choice(self.policy):
            if prob < 1.0 and self.rng.random() > prob:
                continue
            sign = -1 if name in SIGNED_OPS and self.rng.random() > 0.5 else 1
            chosen.append((name, magnitude, sign))
        return chosen

    def __call__(self, img: Image.Image) -> Image.Image:
        if not isinstance(img, Image.Image):
            raise ValueError(f"AutoAugment works on PIL images, got {type(img).__name__}. Use "
                             f"torchvision.transforms.functional.to_pil_image(x) first.")
        self.last_ops = self.sample_ops()
        for name, magnitude, sign in self.last_ops:
            img = apply_op(img, name, magnitude, sign, self.fill, self.interpolation)
        return img

    def __repr__(self) -> str:
        return f"AutoAugment({len(self.policy)} sub-policies)"


def _policy_table(policy) -> tuple[torch.Tensor, ...]:
    """(sub-policies, ops) tensors: op index into POOL, probability, magnitude, whether signed.
    Checked and built once per policy, not at every batch."""
    return _table(tuple(tuple(sub) for sub in policy))


@functools.lru_cache(maxsize=8)
def _table(policy: tuple) -> tuple[torch.Tensor, ...]:
    check_policy(policy)
    ops = torch.tensor([[POOL.index(name) for name, _, _ in sub] for sub in policy])
    probs = torch.tensor([[prob for _, prob, _ in sub] for sub in policy], dtype=torch.float64)
    magnitudes = torch.tensor([[float(m) for _, _, m in sub] for sub in policy], dtype=torch.float64)
    signed = torch.tensor([[name in SIGNED_OPS for name, _, _ in sub] for sub in policy])
    return ops, probs, magnitudes, signed


def sample_auto_augment(batch: int, policy=IMAGENET_POLICY, generator: torch.Generator | None = None) -> OpDraws:
    """Every image's choices at once, as OpDraws over POOL (slots = the ops of a sub-policy):
    a sub-policy per image, uniform; each op applied with its probability; signs for signed ops."""
    ops, probs, magnitudes, signed = _policy_table(policy)
    chosen = draw_random("randint", (batch,), generator, "cpu", high=len(policy))
    shape = (ops.shape[1], batch)
    applied = draw_random("rand", shape, generator, "cpu") < probs[chosen].T
    flip = signed[chosen].T & (draw_random("rand", shape, generator, "cpu") < 0.5)
    return OpDraws(ops[chosen].T, applied, magnitudes[chosen].T, torch.where(flip, -1.0, 1.0).double())


class BatchAutoAugment:
    """AutoAugment on uint8 (B, 3, H, W) batches, every image with its own sub-policy and coins."""

    pool = POOL

    def __init__(self, policy=IMAGENET_POLICY, fill=CIFAR_FILL, interpolation: str = "bicubic",
                 generator: torch.Generator | None = None):
        check_policy(policy)
        check_options(interpolation, fill)
        self.policy, self.fill, self.interpolation, self.generator = policy, fill, interpolation, generator

    def draws(self, images: torch.Tensor) -> OpDraws:
        """One call's random draws for these images (op_choices then apply_choices applies them)."""
        check_images(images)
        return sample_auto_augment(len(images), self.policy, self.generator)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        draws = self.draws(images)
        return apply_choices(images, *op_choices(draws, self.pool), self.pool, self.fill, self.interpolation)

    def __repr__(self) -> str:
        return f"BatchAutoAugment({len(self.policy)} sub-policies, {self.interpolation})"

