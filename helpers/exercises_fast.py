"""Checkers for notebook 04's exercises (DeiT's learning-rate schedule; position embeddings for a
larger image): each prints right or not-yet with a hint, never raises, and returns True when the
answer is right.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from helpers.checking import attempt, report
from helpers.resolution import resample_pos_embed
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


def _cosine_slips(total: int, warmup: int, peak: float, warmup_lr: float, min_lr: float):
    """(schedule over steps 0..total, hint) for slips that are right at the first steps after the
    warmup, so that only the whole run tells them apart."""
    steps = range(total + 1)
    return [([lr_at(s, total, warmup, peak, warmup_lr, 0.0) for s in steps],
             "the cosine decays towards 0; it should end at min_lr: "
             "min_lr + (peak - min_lr) * (1 + cos(pi * progress)) / 2."),
            ([lr_at(s, total - 1, warmup, peak, warmup_lr, min_lr) for s in steps],
             "progress reaches 1 one step early: divide by total_steps - warmup_steps, so that it is 1 at "
             "step total_steps."),
            ([lr_at(s, total, warmup if s < warmup else 0, peak, warmup_lr, min_lr) for s in steps],
             "progress counts from step 0; it should count from warmup_steps: "
             "(step - warmup_steps) / (total_steps - warmup_steps).")]


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
        values = []
        for step in range(total + 1):
            got, failure = attempt(fn, step, total, warmup, peak, warmup_lr, min_lr)
            if failure:
                return report(False, f"with {run}, step {step}: {failure}")
            try:
                values.append(float(got))
            except (TypeError, ValueError):
                return report(False, f"return the learning rate as a number, not {type(got).__name__}.")

        def same(a, b):  # float32 arithmetic (torch.cos of a tensor) is right to about 1e-7 of the peak
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6 * peak)
        for step, got in enumerate(values):
            want = lr_at(step, total, warmup, peak, warmup_lr, min_lr)
            if not same(got, want):
                hint = next((h for slip, h in _cosine_slips(total, warmup, peak, warmup_lr, min_lr)
                             if all(map(same, values, slip))),
                            _schedule_hint(step, got, total, warmup, peak, warmup_lr, min_lr))
                return report(False, f"with {run}, step {step} should have lr {want:.8g}, not {got:.8g}; {hint}")
    return report(True, f"equal to helpers.train.lr_at (the schedule helpers.train.fit uses) at every "
                        f"step of {len(_SCHEDULE_CASES)} runs.")


# --- Exercise 2: position embeddings for a larger image -------------------------------------------

# (num_prefix_tokens, side, new side, dim): a ViT's 4x4 grid to 6x6, a distilled ViT's 8x8 to 12x12,
# a shrink, and an odd grid; random values, so a transposed or scrambled grid cannot pass.
_RESAMPLE_CASES = [(1, 4, 6, 5), (2, 8, 12, 7), (2, 6, 4, 3), (1, 3, 7, 4)]


def _resampled(pos: torch.Tensor, grid: int, prefix: int, scramble=False, transpose=False, **options):
    """The right answer, or with one of the usual slips."""
    patches, dim = pos[:, prefix:], pos.shape[-1]
    side = math.isqrt(patches.shape[1])
    image = patches.reshape(1, dim, side, side) if scramble else patches.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    out = F.interpolate(image, size=(grid, grid), **{"mode": "bicubic", "align_corners": False, **options})
    out = out.reshape(1, dim, grid * grid).transpose(1, 2) if scramble else \
        out.permute(0, 3, 2, 1) if transpose else out.permute(0, 2, 3, 1)
    return torch.cat([pos[:, :prefix], out.reshape(1, grid * grid, dim)], dim=1)


_SLIPS = [
    (dict(scramble=True), "reshaping the tokens straight to (1, D, side, side) mixes up tokens and dimensions: "
                          "reshape to (1, side, side, D), then move D to the channels with permute(0, 3, 1, 2), "
                          "and undo both after interpolating."),
    (dict(transpose=True), "your grid comes back transposed: flatten it in the order it was read, row by row "
                           "(permute(0, 2, 3, 1) before the reshape)."),
    (dict(mode="bilinear"), "that is bilinear interpolation; DeiT uses mode='bicubic' (bilinear shortens the vectors)."),
    (dict(align_corners=True), "align_corners=True pins the grids' corner tokens to each other; DeiT's main.py "
                               "uses align_corners=False."),
    (dict(antialias=True), "that is bicubic with antialias=True, timm's default; DeiT's main.py does not antialias."),
]


def check_resample_pos_embed(fn) -> bool:
    """fn(pos_embed, grid, num_prefix_tokens) -> position embeddings (1, prefix + grid*grid, D) for
    a grid x grid patch grid, compared with helpers.resolution.resample_pos_embed on four cases.

    Notebooks: used in 04.
    """
    generator = torch.Generator().manual_seed(0)
    for prefix, side, grid, dim in _RESAMPLE_CASES:
        pos = torch.randn(1, prefix + side * side, dim, generator=generator)
        case = f"a {side}x{side} grid to {grid}x{grid} with {prefix} prefix token(s), D={dim}"
        got, failure = attempt(fn, pos, grid, prefix)
        if failure and "shape" in failure and "is invalid for input of size" in failure:
            return report(False, f"with {case}: {failure}. Only the {side * side} patches' rows make a square "
                                 f"grid: set the first num_prefix_tokens rows aside before the reshape.")
        if failure:
            return report(False, f"with {case}: {failure}")
        want = resample_pos_embed(pos, grid, prefix)
        if not isinstance(got, torch.Tensor):
            return report(False, f"return a tensor, not {type(got).__name__}.")
        if got.shape != want.shape:
            return report(False, f"with {case} the result should have shape {tuple(want.shape)} "
                                 f"(1, prefix + grid*grid, D), not {tuple(got.shape)}.")
        # any float dtype, compared to its own precision: half's rounding alone is ~5e-4
        tol = max(1e-5, 4 * torch.finfo(got.dtype).eps) if got.is_floating_point() else 1e-5
        got = got.detach().cpu().float()
        if not torch.allclose(got[:, :prefix], pos[:, :prefix], rtol=tol, atol=tol):
            return report(False, "keep the first num_prefix_tokens rows ([CLS], and [DIST] in a distilled "
                                 "ViT) as they are: only the patches' grid is resampled.")
        if not torch.allclose(got, want, rtol=tol, atol=tol):
            hint = next((h for slip, h in _SLIPS if torch.allclose(got, _resampled(pos, grid, prefix, **slip),
                                                                    rtol=tol, atol=tol)),
                        "the patches' embeddings differ: reshape them to a (1, D, side, side) image as in the "
                        "cell above, F.interpolate it to (grid, grid), and put the tokens back in row order.")
            return report(False, f"with {case}: {hint}")
    return report(True, f"equal to helpers.resolution.resample_pos_embed (and so to DeiT's main.py) on "
                        f"{len(_RESAMPLE_CASES)} cases, prefix tokens kept.")
