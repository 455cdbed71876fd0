"""Regularizers DeiT relies on (notebook 02): stochastic depth and label smoothing's targets,
plus the calibration measures that show what label smoothing does to confidence.

Label smoothing's loss is in helpers.losses; repeated augmentation, DeiT's third regularizer,
changes what is loaded rather than the model or the loss, so it lives in helpers.sampler.
"""
from __future__ import annotations

import torch
from torch import nn

from helpers.augment import smooth_one_hot

__all__ = ["DropPath", "StochasticDepth", "drop_path_rates", "survival_rates", "expected_depth",
           "record_kept_paths", "smooth_targets", "reliability_bins", "expected_calibration_error"]


# --- Stochastic depth (Huang et al., 2016) -------------------------------------------------------

class DropPath(nn.Module):
    """Stochastic depth with one coin per sample: skip a residual branch for whole samples.

    Huang et al. (2016) flip one coin per block per mini-batch; this is timm's DropPath
    (timm/layers/drop.py), which DeiT uses: one coin per sample, so a batch mixes many
    sub-networks. In training each sample keeps the branch with probability 1 - drop_prob;
    kept outputs are scaled by 1 / (1 - drop_prob) so the expected output is unchanged.
    Identity in eval.

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


# Huang et al. call it stochastic depth, timm and DeiT call it drop path (timm's per sample).
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


# --- Calibration (Guo et al., 2017): what label smoothing changes besides accuracy ---------------

def _confidence_and_correct(probs_or_logits: torch.Tensor, labels: torch.Tensor):
    """(confidence, correct) per sample: the top softmax probability, and whether its class is the label."""
    if not isinstance(probs_or_logits, torch.Tensor) or probs_or_logits.ndim != 2:
        what = (tuple(probs_or_logits.shape) if isinstance(probs_or_logits, torch.Tensor)
                else type(probs_or_logits).__name__)
        raise ValueError(f"probs_or_logits must be a (N, K) tensor of class scores, not {what}.")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise ValueError("labels must be a (N,) tensor of integer class indices, e.g. dataset.labels.")
    n, num_classes = probs_or_logits.shape
    if len(labels) != n:
        raise ValueError(f"{n} predictions but {len(labels)} labels; pass one label per row.")
    if n == 0:
        raise ValueError("No predictions: calibration needs at least one sample.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1} for {num_classes} classes; "
                         f"got {labels.min().item()}..{labels.max().item()}.")
    scores = probs_or_logits.detach().float()
    if not torch.isfinite(scores).all():
        raise ValueError("probs_or_logits contains NaN or inf; check the model's outputs.")
    # Rows that already are distributions are taken as probabilities; anything else as logits.
    is_probs = bool((scores >= 0).all() and (scores <= 1).all()
                    and torch.allclose(scores.sum(1), torch.ones(n, device=scores.device), atol=1e-3))
    probs = scores if is_probs else scores.softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    return confidence, (predicted == labels.to(predicted.device)).float()


def reliability_bins(probs_or_logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict:
    """Predictions grouped by confidence into equal-width bins ((m-1)/M, m/M] (Guo et al., 2017, Sec. 2).

    Returns a dict of tensors: "edges" (bins + 1), and per bin "count", "confidence" (mean top
    probability) and "accuracy" (fraction correct); the last two are NaN for empty bins.
    `probs_or_logits` is (N, K): rows that are probability distributions are used as they are,
    anything else goes through a softmax.

    Notebooks: used in 02.
    """
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a whole number >= 1, not {bins}; Guo et al. (2017) use 15.")
    bins = int(bins)
    confidence, correct = _confidence_and_correct(probs_or_logits, labels)
    edges = torch.linspace(0.0, 1.0, bins + 1)
    # right=False puts a confidence equal to an edge into the bin that edge closes: (low, high].
    index = torch.bucketize(confidence.cpu(), edges[1:-1], right=False)
    count = torch.bincount(index, minlength=bins).float()
    mean_confidence = torch.bincount(index, weights=confidence.cpu(), minlength=bins) / count
    accuracy = torch.bincount(index, weights=correct.cpu(), minlength=bins) / count
    return {"edges": edges, "count": count, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(probs_or_logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE = sum over bins of |B_b| / n * |accuracy(B_b) - confidence(B_b)| (Guo et al., 2017, Sec. 2).

    0 for a model whose confidence matches its accuracy in every bin; 0.3 for one that is 90 %
    sure and 60 % right. Takes probabilities or logits, like reliability_bins.

    Notebooks: built in 02 (calibration).
    """
    b = reliability_bins(probs_or_logits, labels, bins)
    filled = b["count"] > 0                   # empty bins carry no samples, so no weight
    weights = b["count"][filled] / b["count"].sum()
    return float((weights * (b["accuracy"][filled] - b["confidence"][filled]).abs()).sum())
