"""Regularizers DeiT relies on (notebook 02): stochastic depth and label smoothing's targets.

Label smoothing's loss is in helpers.losses; repeated augmentation, DeiT's third regularizer,
changes what is loaded rather than the model or the loss, so it lives in helpers.sampler.
"""
from __future__ import annotations

import torch
from torch import nn

from helpers.augment import smooth_one_hot

__all__ = ["DropPath", "StochasticDepth", "drop_path_rates", "survival_rates", "expected_depth",
           "record_kept_paths", "smooth_targets"]


# --- Stochastic depth (Huang et al., 2016) -------------------------------------------------------

class DropPath(nn.Module):
    """Stochastic depth (Huang et al., 2016): skip a residual branch for whole samples.

    In training each sample keeps the branch with probability 1 - drop_prob; kept outputs are
    scaled by 1 / (1 - drop_prob) so the expected output is unchanged. Identity in eval.

    Notebooks: built in 02 (stochastic depth).
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        _check_rate(drop_prob, "drop_prob")
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        # One decision per sample, broadcast over every other dimension: shape (B, 1, 1, ...).
        mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype)
        return x * mask.bernoulli_(keep) / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


# Huang et al. call it stochastic depth, timm and DeiT call it drop path: the same module.
StochasticDepth = DropPath


def _check_rate(rate: float, name: str) -> None:
    # A rate of 1 would drop the branch for every sample and divide by zero when rescaling.
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), not {rate}; DeiT uses 0.1.")


def drop_path_rates(depth: int, max_rate: float) -> list[float]:
    """DeiT's linear schedule: 0 at the first block rising to max_rate at the last.

    The same values as timm's `torch.linspace(0, drop_path_rate, depth)`: early blocks compute
    features every later block needs, so they are dropped least (Huang et al., 2016, Sec. 3).

    Notebooks: built in 02 (stochastic depth).
    """
    if int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be a whole number >= 1, not {depth}.")
    _check_rate(max_rate, "max_rate")
    if depth == 1:
        return [0.0]
    return [max_rate * i / (depth - 1) for i in range(depth)]


def survival_rates(depth: int, max_rate: float) -> list[float]:
    """Probability that each block's branches survive: 1 at the first block, 1 - max_rate at the last.

    Notebooks: used in 02.
    """
    return [1.0 - rate for rate in drop_path_rates(depth, max_rate)]


def expected_depth(rates) -> float:
    """Expected number of blocks a sample passes through: the sum of survival probabilities.

    Notebooks: used in 02.
    """
    return float(sum(1.0 - rate for rate in rates))


def record_kept_paths(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Run model(images) once and report which residual branches each sample kept.

    Returns a bool tensor (B, branches): column j is the j-th drop-path call of the forward pass
    (two per transformer block: attention, then MLP). Works for helpers' and timm's models,
    since both name the module DropPath. A branch counts as dropped when its output is all zero.

    Notebooks: used in 02.
    """
    calls: list[torch.Tensor] = []

    def remember(module, inputs, output):
        calls.append(output.detach().flatten(1).ne(0).any(dim=1))

    hooks = [m.register_forward_hook(remember) for m in model.modules()
             if type(m).__name__ == "DropPath"]
    if not hooks:
        raise ValueError("The model has no DropPath modules; build it with drop_path_rate > 0.")
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(calls, dim=1)


# --- Label smoothing (Szegedy et al., 2016) ------------------------------------------------------

def smooth_targets(targets: torch.Tensor, num_classes: int, smoothing: float = 0.1) -> torch.Tensor:
    """Mix the targets with the uniform distribution: (1 - smoothing) * y + smoothing / K.

    `targets` are class indices (B,) or probabilities (B, K). For indices the result is one-hot
    with off-value smoothing/K and on-value 1 - smoothing + smoothing/K, as timm's mixup_target.

    Notebooks: built in 02 (label smoothing).
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), not {smoothing}; DeiT uses 0.1.")
    if targets.ndim == 1:
        if targets.is_floating_point():
            raise ValueError("Class-index targets must be integers; pass probabilities as (B, K).")
        return smooth_one_hot(targets, num_classes, smoothing)
    if targets.ndim != 2 or targets.shape[1] != num_classes:
        raise ValueError(f"targets must be (B,) class indices or (B, {num_classes}) probabilities, "
                         f"not shape {tuple(targets.shape)}.")
    return targets * (1.0 - smoothing) + smoothing / num_classes
