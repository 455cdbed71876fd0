"""Checkers for notebook 02's exercises: each prints right or not-yet with a hint, never raises.

Every checker returns True when the answer is right, so a notebook (or a test) can assert on it.
"""
from __future__ import annotations

import math

import torch

from helpers.checking import attempt, check_choice, report
from helpers.regularization import drop_path_rates, smooth_targets


# --- Exercise 1: the linear drop-path schedule ---------------------------------------------------

_SCHEDULE_CASES = [(12, 0.1), (6, 0.2), (2, 0.5), (1, 0.1)]


def check_drop_path_schedule(fn) -> bool:
    """fn(depth, max_rate) -> `depth` drop rates from 0 at the first block to max_rate at the last.

    Notebooks: used in 02.
    """
    for depth, max_rate in _SCHEDULE_CASES:
        got, failure = attempt(fn, depth, max_rate)
        if failure:
            return report(False, failure)
        want = drop_path_rates(depth, max_rate)
        try:
            got = [float(v) for v in got]
        except (TypeError, ValueError):
            return report(False, f"return a list of floats, not {type(got).__name__}.")
        if len(got) != depth:
            return report(False, f"depth={depth} needs {depth} rates, one per block; you returned {len(got)}.")
        if all(math.isclose(g, w, abs_tol=1e-6) for g, w in zip(got, want)):
            continue
        if all(math.isclose(g, 1 - w, abs_tol=1e-6) for g, w in zip(got, want)):
            return report(False, "these are survival probabilities; return drop rates (1 - survival).")
        if all(math.isclose(g, w, abs_tol=1e-6) for g, w in zip(got, reversed(want))):
            return report(False, "the schedule is reversed: the first block must be dropped least.")
        if depth > 1 and not math.isclose(got[-1], max_rate, abs_tol=1e-6):
            return report(False, f"the last block's rate should be max_rate={max_rate}, not {got[-1]:.4g}; "
                                  "divide by depth - 1, not depth.")
        return report(False, f"for depth={depth}, max_rate={max_rate} expected "
                              f"{[round(w, 4) for w in want]}, got {[round(g, 4) for g in got]}.")
    return report(True, "rates rise linearly from 0 (first block) to max_rate (last block).")


# --- Exercise 2: why one decision per sample? ----------------------------------------------------

MASK_QUESTION = """Why does stochastic depth draw one keep/drop decision per sample (mask shape (B, 1, 1))
rather than one per batch (a single coin for the whole batch)?
  a) A per-batch mask would not be differentiable.
  b) Per sample, each step trains many different sub-networks at once and the gradient averages
     over them; per batch, a whole step would skip a block, so updates jump between networks.
  c) A per-batch mask would change the expected output, even with the 1/keep rescaling.
  d) There is no difference: both give the same gradients in expectation and in every step."""

_MASK_HINTS = {
    "a": "neither mask is differentiated: it is a constant that multiplies the branch.",
    "c": "the 1/keep rescaling keeps the expectation unchanged either way; think about one step's gradient.",
    "d": "they agree in expectation, but within one step a per-batch coin drops the block for everyone.",
}


def check_mask_question(answer) -> bool:
    """Multiple choice: pass "a", "b", "c" or "d" (see MASK_QUESTION).

    Notebooks: used in 02.
    """
    return check_choice(answer, "b", "per-sample masks make every batch an ensemble of sub-networks, and "
                                     "the gradient is a lower-variance average over them (Huang et al., 2016).",
                        _MASK_HINTS)


# --- Exercise 3: smoothed targets ---------------------------------------------------------------

def check_smooth_targets(fn) -> bool:
    """fn(labels, num_classes, smoothing) -> (B, K) targets: 1 - eps + eps/K on the label, eps/K elsewhere.

    Notebooks: used in 02.
    """
    labels = torch.tensor([0, 3, 9, 3])
    for num_classes, eps in [(10, 0.1), (4, 0.3)]:
        case = labels % num_classes
        got, failure = attempt(fn, case, num_classes, eps)
        if failure:
            return report(False, failure)
        if not isinstance(got, torch.Tensor) or got.shape != (len(case), num_classes):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return report(False, f"return a ({len(case)}, {num_classes}) tensor, not {shape}.")
        got = got.float()
        want = smooth_targets(case, num_classes, eps)
        if torch.allclose(got, want, atol=1e-6):
            continue
        on = got[torch.arange(len(case)), case]
        if torch.allclose(on, torch.full_like(on, 1 - eps), atol=1e-6):
            return report(False, f"the true class gets 1 - eps + eps/K = {1 - eps + eps / num_classes:.3g}: "
                                  "the uniform part eps/K goes to every class, the true one included.")
        if not torch.allclose(got.sum(1), torch.ones(len(case)), atol=1e-5):
            return report(False, "each row must be a probability distribution that sums to 1.")
        return report(False, f"with K={num_classes}, eps={eps} the off-value is eps/K = {eps / num_classes:.3g} "
                              f"and the on-value 1 - eps + eps/K = {1 - eps + eps / num_classes:.3g}.")
    return report(True, "(1 - eps) * one_hot + eps / K, the same targets as timm's mixup_target.")
