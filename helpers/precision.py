"""Mixed precision, chosen per device: bf16 where the GPU has it, fp16 with loss scaling where not.

bf16 keeps fp32's exponent range, so gradients need no scaling; NVIDIA GPUs compute it in
hardware from compute capability 8.0 (Ampere: A100, RTX 30xx) on. Older ones, such as the T4 and
P100 of free cloud notebooks or the V100, only emulate it, slowly, but the T4 and V100 have fp16
tensor cores. fp16's narrow range flushes small gradients to zero, so the loss is multiplied by a
large factor before backward and the gradients divided by it before clipping and the update
(torch.amp.GradScaler; a step whose gradients overflowed is skipped and the factor halved).
DeiT itself trained this way: fp16 autocast with timm's NativeScaler (facebookresearch/deit,
engine.py, train_one_epoch). CPUs and Apple's mps train in fp32. (PyTorch's CUDA 13 builds start
at the T4's sm_75; the P100 and V100 need a build that still includes theirs.)

DEIT_PRECISION=bf16|fp16|fp32 overrides the choice on any device (the GPU plan's dry run uses
bf16 on the CPU; the tests use fp16 there too).
"""
from __future__ import annotations

import os

import torch

from helpers.errors import CourseError

PRECISION = "DEIT_PRECISION"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


class PrecisionError(CourseError, ValueError):
    """DEIT_PRECISION names no precision the course knows."""


def autocast_dtype(device) -> torch.dtype | None:
    """The dtype autocast computes in on `device` (None: full precision)."""
    device = torch.device(device)
    choice = os.environ.get(PRECISION, "").strip().lower()
    if choice:
        if choice not in DTYPES:
            raise PrecisionError(f"{PRECISION}={choice!r} is not a precision: use one of "
                                 f"{', '.join(DTYPES)}, or unset it to let the device choose.")
        return DTYPES[choice]
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def precision_name(device) -> str:
    """'bf16', 'fp16' or 'fp32': what training on `device` uses, for results and messages.

    Notebooks: used in 04.
    """
    dtype = autocast_dtype(device)
    return next(name for name, d in DTYPES.items() if d == dtype)


def autocast_for(device) -> torch.autocast:
    """The autocast context for training and inference on `device` (disabled for fp32).

    Notebooks: used in 04.
    """
    device, dtype = torch.device(device), autocast_dtype(device)
    if dtype is None:  # disabled, also inside an enclosing autocast of the same device type
        return torch.autocast("cuda" if device.type == "cuda" else "cpu", enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler_for(device) -> torch.amp.GradScaler:
    """Loss scaling for fp16, a pass-through otherwise (a disabled GradScaler calls backward and
    the optimizer's step as they are). Make one per run and keep it: its factor adapts as it trains.

    Notebooks: used in 04.
    """
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)


def loss_scale_record(scaler: torch.amp.GradScaler) -> dict:
    """An epoch record's loss scale, in fp16 only (it adapts as training goes: a run that overflows
    all the time shows it shrinking); empty where the scaler is a pass-through."""
    return {"loss_scale": scaler.get_scale()} if scaler.is_enabled() else {}


def describe_precision(device) -> str:
    """One line for the top of a notebook: where training runs and in what precision."""
    device = torch.device(device)
    what = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with loss scaling", "fp32": "fp32"}[precision_name(device)]
    where = f"{device.type} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type
    return f"Training on {where} in {what}; {PRECISION}=bf16, fp16 or fp32 changes it."
