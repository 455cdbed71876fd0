"""Checkers for notebook 04's exercise (DeiT's learning-rate schedule): each prints right or
not-yet with a hint, never raises, and returns True when the answer is right.
"""
from __future__ import annotations

import math

from helpers.checking import attempt, report
from helpers.train import lr_at

# (total_steps, warmup_steps, peak, warmup_lr, min_lr): a course-like run, a warmup that starts
# well above 0, one without a floor, and one without warmup.
_SCHEDULE_CASES = [(100, 10, 1e-3, 1e-6, 1e-5), (80, 20, 1e-3, 1e-4, 5e-5),
                   (37, 5, 2e-3, 0.0, 0.0), (60, 0, 5e-4, 1e-6, 1e-5)]


def _schedule_hint(step: int, got: float, total: int, warmup: int, peak: float, warmup_lr: float,
                   min_lr: float) -> str:
    """What the first wrong step says about the mistake."""
    if step == 0 and warmup and math.isclose(got, peak, rel_tol=1e-6):
        return "the run starts at the peak: there is no warmup. Rise linearly from warmup_lr at step 0."
    if step == 0 and warmup and got == 0 and warmup_lr:
        return "the warmup starts at warmup_lr, not at 0."
    if step < warmup:
        return "during the warmup the lr rises linearly: warmup_lr + (peak - warmup_lr) * step / warmup_steps."
    if step == warmup:
        return "the cosine starts at the peak exactly at step warmup_steps."
    if step == total:
        return ("the cosine must end at min_lr at step total_steps: measure its progress from "
                "warmup_steps to total_steps, and decay towards min_lr, not 0.")
    return ("after the warmup: min_lr + (peak - min_lr) * (1 + cos(pi * progress)) / 2, with progress "
            "going from 0 at warmup_steps to 1 at total_steps.")


def check_warmup_cosine(fn) -> bool:
    """fn(step, total_steps, warmup_steps, peak, warmup_lr, min_lr) -> the learning rate at `step`:
    linear warmup, then half a cosine, compared with helpers.train.lr_at at every step 0..total_steps.

    Notebooks: used in 04.
    """
    _, failure = attempt(fn, 0, *_SCHEDULE_CASES[0])
    if failure:  # e.g. the stub: say so plainly, without the details of a case
        return report(False, failure)
    for total, warmup, peak, warmup_lr, min_lr in _SCHEDULE_CASES:
        run = (f"total_steps={total}, warmup_steps={warmup}, peak={peak:g}, "
               f"warmup_lr={warmup_lr:g}, min_lr={min_lr:g}")
        for step in range(total + 1):
            got, failure = attempt(fn, step, total, warmup, peak, warmup_lr, min_lr)
            if failure:
                return report(False, f"with {run}, step {step}: {failure}")
            try:
                got = float(got)
            except (TypeError, ValueError):
                return report(False, f"return the learning rate as a number, not {type(got).__name__}.")
            want = lr_at(step, total, warmup, peak, warmup_lr, min_lr)
            # float32 arithmetic (torch.cos of a tensor) is right to about 1e-7 of the peak; every
            # mistake in _schedule_hint is off by far more somewhere in the run
            if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6 * peak):
                return report(False, f"with {run}, step {step} should have lr {want:.8g}, not {got:.8g}; "
                              + _schedule_hint(step, got, total, warmup, peak, warmup_lr, min_lr))
    return report(True, f"equal to helpers.train.lr_at (the schedule helpers.train.fit uses) at every "
                        f"step of {len(_SCHEDULE_CASES)} runs.")
