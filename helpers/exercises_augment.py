"""Checkers for the exercises in notebook 01 (augmentation).

Each checker runs the student's function on a few cases, compares it with helpers.augment, and
prints whether it is right, with a hint when it is not. They never raise: a stub that still says
`raise NotImplementedError` just gets a reminder.
"""
from __future__ import annotations

import torch

from helpers import augment, losses
from helpers.checking import attempt


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
        if not torch.allclose(got.float(), expected, atol=1e-6):
            problem = (f"For labels={labels.tolist()}, num_classes={k}, smoothing={eps}: expected row 0 = "
                       f"{[round(v, 3) for v in expected[0].tolist()]}, got "
                       f"{[round(v, 3) for v in got[0].float().tolist()]}.")
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
            ok = abs(float(got) - expected) < 1e-9
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
        got, problem = attempt(student_fn, logits.clone(), targets.clone())
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
    _report(problem, hint, "Same value as helpers.losses.soft_target_cross_entropy and "
                           "timm.loss.SoftTargetCrossEntropy.")
