"""Checkers for the exercises in notebook 01 (augmentation).

Each checker runs the student's function on a few cases, compares it with helpers.augment, and
prints whether it is right, with a hint when it is not. They never raise: a stub that still says
`raise NotImplementedError` just gets a reminder.
"""
from __future__ import annotations

import numbers
import random

import torch

from helpers import augment, losses
from helpers.checking import attempt, gradient_problem


def _report(problem: str | None, hint: str, success: str) -> None:
    if problem is None:
        print(f"Correct! {success}")
    else:
        print(f"Not right yet. {problem}\nHint: {hint}")


def check_smooth_one_hot(student_fn) -> None:
    """Exercise 1: student_fn(labels, num_classes, smoothing) -> (B, K) smoothed one-hot targets.

    Notebooks: used in 01.
    """
    hint = ("every class gets smoothing / num_classes, and the true class gets 1 - smoothing on top "
            "(so its value is 1 - smoothing + smoothing / num_classes and each row sums to 1).")
    problem = None
    for labels, k, eps in ((torch.tensor([3, 0, 9]), 10, 0.1), (torch.tensor([1, 1]), 4, 0.3),
                           (torch.tensor([2]), 5, 0.0)):
        got, problem = attempt(student_fn, labels, k, eps)
        if problem:
            break
        expected = augment.smooth_one_hot(labels, k, eps)
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            problem = f"For {len(labels)} labels and {k} classes expected shape {tuple(expected.shape)}, got {shape}."
            break
        wrong_rows = (~torch.isclose(got.float(), expected, atol=1e-6)).any(dim=1).nonzero()
        if len(wrong_rows):
            row = int(wrong_rows[0])  # the first row that differs, so that the two rows shown do
            problem = (f"For labels={labels.tolist()}, num_classes={k}, smoothing={eps}: expected row {row} = "
                       f"{[round(v, 3) for v in expected[row].tolist()]}, got "
                       f"{[round(v, 3) for v in got[row].float().tolist()]}.")
            break
    _report(problem, hint, "Smoothed targets match helpers.augment.smooth_one_hot (and timm's).")


def check_cutmix_lambda(student_fn) -> None:
    """Exercise 2: student_fn(box, height, width) -> lambda actually achieved by a clipped box.

    Notebooks: used in 01.
    """
    hint = ("lambda is the share of the image that still shows the original image: "
            "1 - (bottom - top) * (right - left) / (height * width). Use the clipped box, not the "
            "lambda you drew.")
    problem = None
    for box, h, w in (((8, 24, 8, 24), 32, 32), ((0, 8, 23, 32), 32, 32), ((0, 0, 0, 0), 32, 32),
                      ((2, 10, 0, 20), 16, 20)):
        got, problem = attempt(student_fn, box, h, w)
        if problem:
            break
        expected = augment.cutmix_lambda(box, h, w)
        try:
            ok = not isinstance(got, str) and abs(float(got) - expected) < 1e-9
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problem = f"For box (top, bottom, left, right)={box} in a {h}x{w} image expected {expected:.4f}, got {got!r}."
            break
    _report(problem, hint, "That is the area-corrected lambda that timm's Mixup uses (correct_lam=True).")


def check_soft_target_cross_entropy(student_fn) -> None:
    """Exercise 3: student_fn(logits, soft_targets) -> scalar mean soft-target cross-entropy.

    Notebooks: used in 01.
    """
    hint = ("take log_softmax of the logits over the class dimension, multiply by the targets, sum "
            "over classes, negate, then average over the batch. Do not smooth the targets again.")
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 10, generator=generator)
    problem = None
    for targets in (augment.mix_targets(torch.tensor([0, 1, 2, 3, 4]), 10, 0.7, 0.1),
                    augment.smooth_one_hot(torch.tensor([9, 8, 7, 6, 5]), 10, 0.0)):
        got, problem = attempt(student_fn, logits, targets)
        if problem:
            break
        expected = losses.soft_target_cross_entropy(logits, targets)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            problem = f"Expected a scalar tensor (the batch mean), got {type(got).__name__} " \
                      f"{tuple(got.shape) if isinstance(got, torch.Tensor) else ''}."
            break
        if not torch.allclose(got.float().reshape(()), expected, atol=1e-5):
            problem = f"Expected {expected.item():.4f}, got {got.item():.4f}."
            break
        problem = gradient_problem(student_fn, losses.soft_target_cross_entropy, (logits, targets), {0: "logits"})
        if problem:
            problem = problem[0].upper() + problem[1:]
            hint = "keep every step a tensor operation on the logits, so that backward() reaches them."
            break
    _report(problem, hint, "Same value as helpers.losses.soft_target_cross_entropy and "
                           "timm.loss.SoftTargetCrossEntropy.")


# RandAugment strings the sampler checker runs, with how many images each: DeiT's own; four ops
# at p = 1, where an image often gets the same op twice; wide noise around a small M under a low
# mmax, so the clips at 0 and at config.mmax (not 10) matter; and timm's "uniform magnitude"
# convention (mstd > 100).
SAMPLER_CASES = (("rand-m9-mstd0.5-inc1", 300), ("rand-n4-m5-p1", 100),
                 ("rand-n3-m2-mstd3-mmax5-inc1", 100), ("rand-n2-m7-mstd101", 100))


def _draws_problem(draws, config) -> str | None:
    """What is wrong with one image's draws on their own (their shape and ranges), if anything."""
    pool = augment.OPS_INCREASING if config.inc else augment.OPS_STANDARD
    if not isinstance(draws, (list, tuple)) or not all(
            isinstance(d, (list, tuple)) and len(d) == 3 for d in draws):
        return f"Expected a list of (name, magnitude, sign) tuples, got {draws!r}."
    if len(draws) > config.n:
        return f"Got {len(draws)} ops for n = {config.n}; draw exactly n, and apply each with probability p."
    for name, magnitude, sign in draws:
        if name not in pool:
            return f"{name!r} is not in the {'increasing' if config.inc else 'standard'} pool."
        if not isinstance(magnitude, numbers.Real):  # numpy's floats too
            return f"The magnitude must be a number, got {magnitude!r}."
        if not 0 <= magnitude <= config.mmax:
            return (f"Magnitude {magnitude:.3f} lies outside [0, {config.mmax:g}]: clip the noisy "
                    f"magnitude to [0, mmax].")
        if sign not in (-1, 1):
            return f"The sign must be -1 or 1, got {sign!r}."
    return None


def _has_repeat(draws) -> bool:
    names = [d[0] for d in draws]
    return len(set(names)) < len(names)


def _sampler_mismatch(spec: str, images: int, student_fn) -> str | None:
    """Run the student's sampler and helpers' RandAugment from the same seed, image by image."""
    config = augment.parse_rand_augment(spec)
    reference = augment.RandAugment.from_config(config, rng=random.Random(0))
    rng = random.Random(0)
    first_difference, ours, theirs = None, [], []
    for image in range(images):
        draws, problem = attempt(student_fn, config, rng)
        problem = problem or _draws_problem(draws, config)
        if problem:
            return f"For {spec!r}: {problem}"
        expected = reference.sample_ops()
        same = len(draws) == len(expected) and all(
            (n, s) == (en, es) and abs(m - em) < 1e-9 for (n, m, s), (en, em, es) in zip(draws, expected))
        if not same and first_difference is None:
            rounded = lambda ds: [(n, round(m, 3), s) for n, m, s in ds]  # noqa: E731
            first_difference = (f"For {spec!r}, image {image} (both from random.Random(0)): expected "
                                f"{rounded(expected)}, got {rounded(draws)}.")
        ours.append(draws)
        theirs.append(expected)
    if first_difference is None:
        return None
    # Name the likely cause before showing the first difference. No repeat says "without
    # replacement" only if some image of the student's had two ops to repeat.
    if (sum(map(_has_repeat, theirs)) > 0 and not any(map(_has_repeat, ours))
            and any(len(image) > 1 for image in ours)):
        return (f"For {spec!r} helpers' images got the same op twice {sum(map(_has_repeat, theirs))} "
                f"times in {images}, yours never did: pick each op with replacement "
                f"(rng.choice(pool) for every slot).")
    applied, expected_applied = sum(map(len, ours)), sum(map(len, theirs))
    if config.p < 1 and applied == images * config.n:
        return (f"For {spec!r} you applied all {applied} ops drawn; helpers applied "
                f"{expected_applied}: apply each op only with probability p.")
    return first_difference


def check_rand_augment_sampler(student_fn) -> None:
    """Exercise 4: student_fn(config, rng) -> [(name, magnitude, sign), ...], the ops RandAugment
    applies to one image, drawn from the random.Random `rng` in the order of
    helpers.augment.RandAugment (config: what helpers.augment.parse_rand_augment returns).

    Notebooks: used in 01.
    """
    hint = ("for each of the config.n slots, in this order: name = rng.choice(pool); skip the op "
            "unless rng.random() < config.p; magnitude = my_sample_magnitude(config.m, config.mstd, "
            "rng, config.mmax); sign = -1 if rng.random() < 0.5 else 1 (for every op, even those "
            "without a direction).")
    problem = None
    for spec, images in SAMPLER_CASES:
        problem = _sampler_mismatch(spec, images, student_fn)
        if problem:
            break
    images = sum(n for _, n in SAMPLER_CASES)
    _report(problem, hint, f"Your draws equal helpers.augment.RandAugment's, draw for draw, for "
                           f"{images} images and {len(SAMPLER_CASES)} RandAugment strings.")
