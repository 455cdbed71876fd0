"""Checkers for notebook 02's exercises: each prints right or not-yet with a hint, never raises.

Every checker returns True when the answer is right, so a notebook (or a test) can assert on it.
"""
from __future__ import annotations

import math
import numbers

import torch

from helpers.checking import attempt, check_choice, report
from helpers.regularization import drop_path_rates, expected_calibration_error, reliability_bins
from helpers.weight_average import DEIT_DECAY, DEIT_STEPS, memory_steps, scaled_decay


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
            odd = [v for v in got if not isinstance(v, numbers.Real)][:1] if isinstance(got, (list, tuple)) else []
            return report(False, f"return a list of floats, not {type(got).__name__}"
                                 + (f" holding {odd[0]!r}" if odd else "") + ".")
        if len(got) != depth:
            return report(False, f"depth={depth} needs {depth} rates, one per block; you returned {len(got)}.")
        if all(math.isclose(g, w, abs_tol=1e-6) for g, w in zip(got, want)):
            continue
        if all(math.isclose(g, 1 - w, abs_tol=1e-6) for g, w in zip(got, want)):
            return report(False, "these are survival probabilities; return drop rates (1 - survival).")
        if all(math.isclose(g, w, abs_tol=1e-6) for g, w in zip(got, reversed(want))):
            return report(False, "the schedule is reversed: the first block must be dropped least.")
        if all(math.isclose(g, max_rate * i / depth, abs_tol=1e-6) for i, g in enumerate(got)):
            return report(False, f"the last block's rate should be max_rate={max_rate}, not {got[-1]:.4g}; "
                                  "divide by depth - 1, not depth.")
        if all(math.isclose(g, max_rate * (i + 1) / depth, abs_tol=1e-6) for i, g in enumerate(got)):
            return report(False, "that is Huang et al.'s rule, p_l = l / L * max_rate, whose first block is "
                                  "already dropped; DeiT's (timm's) rates start at 0: linspace(0, max_rate, depth).")
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
                                     "the gradient is a lower-variance average over them (timm's DropPath; "
                                     "Huang et al. used one coin per mini-batch).",
                        _MASK_HINTS)


# --- Exercise 3: expected calibration error -----------------------------------------------------

def _calibration_case(n: int = 600, num_classes: int = 10, seed: int = 0):
    """Softmax outputs from sure to unsure, each prediction right half of the time, and labels.

    Right as often at every confidence, the model is over-confident in the top bins and
    under-confident in the bottom ones, so forgetting the absolute value shows.
    """
    g = torch.Generator().manual_seed(seed)
    sharpness = 4 * torch.rand(n, 1, generator=g)
    probs = (torch.randn(n, num_classes, generator=g) * sharpness).softmax(dim=1)
    predicted = probs.argmax(dim=1)
    wrong_class = (predicted + torch.randint(1, num_classes, (n,), generator=g)) % num_classes
    labels = torch.where(torch.rand(n, generator=g) < 0.5, predicted, wrong_class)
    return probs, labels


def _number_from(fn, *args):
    """(fn(*args) as a float, None), or (None, a not-yet message) when it fails or is no number."""
    value, failure = attempt(fn, *args)
    if failure:
        return None, failure
    if isinstance(value, str):  # float("0.75") would pass
        return None, f"return one number (a float), not the string {value!r}."
    try:
        return float(value), None
    except (TypeError, ValueError, RuntimeError):
        return None, f"return one number (a float), not {type(value).__name__}."


def check_expected_calibration_error(fn) -> bool:
    """fn(probs, labels, bins=15) -> ECE: sum over equal-width confidence bins of |B|/n * |acc - conf|.

    Notebooks: used in 02.
    """
    probs, labels = _calibration_case()
    for bins in (15, 5):
        got, failure = _number_from(fn, probs, labels, bins)
        if failure:
            return report(False, failure)
        if math.isnan(got):
            return report(False, "the result is NaN: skip empty bins (their mean is 0 / 0); they hold no "
                                  "samples, so they add nothing.")
        want = expected_calibration_error(probs, labels, bins)
        b = reliability_bins(probs, labels, bins)
        filled = b["count"] > 0
        gaps = b["accuracy"][filled] - b["confidence"][filled]
        weights = b["count"][filled] / len(labels)
        if math.isclose(got, want, abs_tol=1e-4):
            continue
        if bins != 15 and math.isclose(got, expected_calibration_error(probs, labels, 15), abs_tol=1e-4):
            return report(False, f"with bins={bins} you still return the 15-bin value: "
                                  "use the `bins` argument.")
        if math.isclose(got, float(gaps.abs().mean()), abs_tol=1e-4):
            return report(False, "weigh each bin by its share of the samples, |B| / n: a bin with 3 images "
                                  "must count less than one with 300.")
        if math.isclose(abs(got), abs(float((weights * gaps).sum())), abs_tol=1e-4):
            return report(False, "take the absolute gap |acc - conf| in each bin before summing, so "
                                  "over- and under-confident bins do not cancel.")
        return report(False, f"with bins={bins} expected {want:.4f}, "
                              f"got {got:.4f}; confidence is the largest probability of each row, a bin is "
                              "(low, high], and a sample is correct when that row's argmax is its label.")
    return report(True, "ECE is the sample-weighted gap between accuracy and confidence over the bins "
                        "(Guo et al., 2017).")


# --- Exercise 4: a decay for a shorter run ------------------------------------------------------

# (total_steps, decay, reference_steps): DeiT's own run, the cpu and full profiles, another
# reference, and a run so short that the memory falls under one step.
_DECAY_CASES = [(DEIT_STEPS, DEIT_DECAY, DEIT_STEPS), (1860, DEIT_DECAY, DEIT_STEPS), (8700, DEIT_DECAY, DEIT_STEPS),
                (100_000, 0.999, 10_000), (10, DEIT_DECAY, DEIT_STEPS)]


def check_scaled_decay(fn) -> bool:
    """fn(total_steps, decay, reference_steps) -> the decay whose memory, 1 / (1 - decay), is the
    same share of total_steps as decay's is of reference_steps; 0 when that is under one step.

    Notebooks: used in 02.
    """
    for total, decay, reference in _DECAY_CASES:
        got, failure = _number_from(fn, total, decay, reference)
        if failure:
            return report(False, failure)
        want = scaled_decay(total, decay, reference)
        case = f"for total_steps={total:,}, decay={decay}, reference_steps={reference:,}"
        if want == 0.0 and got != 0.0:
            return report(False, f"{case} the memory is {memory_steps(decay) * total / reference:.2f} steps, "
                                  f"under one: the average can be no shorter than the model itself, decay 0.")
        # 0.5 %: the power rule decay ** (reference / total) passes (0.4 % off at 1,860 steps), a memory
        # one step off does not (0.8 %)
        if want == 0.0 or (0 <= got < 1 and math.isclose(memory_steps(got), memory_steps(want), rel_tol=0.005)):
            continue
        if got >= 1 and math.isclose(got, memory_steps(want), rel_tol=0.01):
            return report(False, f"{case} you return the memory in steps ({got:,.1f}); return the decay, "
                                  "1 - 1 / memory.")
        if 0 <= got < 1 and math.isclose(memory_steps(got), memory_steps(decay) * reference / total, rel_tol=0.01):
            return report(False, "the ratio is upside down: a shorter run needs a shorter memory, "
                                  "memory x total_steps / reference_steps.")
        return report(False, f"{case} expected {want:.6f}, got {got:.6f}: find the memory 1 / (1 - decay), "
                              "scale it by total_steps / reference_steps, and turn it back into a decay.")
    return report(True, "a decay is a number of steps: scaled this way the average remembers the same share "
                        "of any run (raising decay to the power reference_steps / total_steps, which keeps "
                        "decay ** steps, gives nearly the same for runs much longer than the memory).")
