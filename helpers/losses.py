"""Every loss of the course, in one place (notebooks 01-03 build them; fit and the recipe use them).

  soft_target_cross_entropy   CE against a probability vector (MixUp/CutMix/smoothed targets)
  classification_loss         CE for class indices (with label smoothing) or soft targets
  label_smoothing_cross_entropy, LabelSmoothingCrossEntropy   Szegedy et al. (2016)
  distillation_loss, DistillationLoss   DeiT's losses with a teacher (Touvron et al., 2021, Sec. 4)

A distilled student (helpers.models.build_vit(distilled=True)) returns (cls_logits,
dist_logits) in training. The CLS head learns from the labels, the DIST head from a teacher:

    none  CE(cls, y)                                               (no teacher)
    hard  (1 - a) CE(cls, y) + a CE(dist, argmax teacher),          a = 1/2   (the paper's choice)
    soft  (1 - a) CE(cls, y) + a tau^2 KL(softmax(t/tau) || softmax(dist/tau)), a = 0.1, tau = 3

The soft loss is Hinton et al.'s (2015); a = 0.1 and tau = 3 are the paper's values (Sec. 6,
following Cho et al., 2019).

CE(cls, y) is the soft-target cross-entropy when y is a mixed (MixUp/CutMix) probability vector.
The KL term is normalized as in DeiT's code: summed over all B x K elements and divided by
B x K ("numel"), i.e. the per-sample KL divided by the number of classes. "batchmean" (the
per-sample KL averaged over the batch, the textbook KL) is K times larger.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from helpers.paper import SOFT_DISTILLATION_LAMBDA, SOFT_DISTILLATION_TAU
from helpers.regularization import smooth_targets

KINDS = ("none", "hard", "soft")
PAPER_TAU = SOFT_DISTILLATION_TAU  # the paper's tau for soft distillation (Section 6)
DEFAULT_ALPHA = {"none": 0.0, "hard": 0.5, "soft": SOFT_DISTILLATION_LAMBDA}
KL_REDUCTIONS = ("numel", "batchmean")


def soft_target_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k t_k log softmax(z)_k: cross-entropy against a distribution.

    The right loss for MixUp/CutMix/smoothed targets; unlike nn.CrossEntropyLoss(label_smoothing=eps)
    it does not smooth the targets a second time.

    Notebooks: built in 01 (soft-target cross-entropy).
    """
    if logits.dim() != 2 or logits.shape != soft_targets.shape:
        raise ValueError(f"logits and soft_targets must both be (B, K); got {tuple(logits.shape)} and "
                         f"{tuple(soft_targets.shape)}. For integer labels use F.cross_entropy, or "
                         f"make soft targets with smooth_one_hot(labels, K).")
    return torch.sum(-soft_targets * torch.log_softmax(logits, dim=-1), dim=-1).mean()


def classification_loss(outputs, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """CE for class indices (with label smoothing), soft-target CE for probability targets."""
    if targets.is_floating_point():
        return soft_target_cross_entropy(outputs, targets)
    return F.cross_entropy(outputs, targets, label_smoothing=smoothing)


def label_smoothing_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                                  smoothing: float = 0.1) -> torch.Tensor:
    """Mean cross-entropy against smoothed targets; equals nn.CrossEntropyLoss(label_smoothing=...).

    Notebooks: built in 02 (label smoothing).
    """
    return soft_target_cross_entropy(logits, smooth_targets(targets, logits.shape[-1], smoothing).to(logits.dtype))


class LabelSmoothingCrossEntropy(nn.Module):
    """label_smoothing_cross_entropy as a loss module, for training loops that take one."""

    def __init__(self, smoothing: float = 0.1):
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), not {smoothing}; DeiT uses 0.1.")
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return label_smoothing_cross_entropy(logits, targets, self.smoothing)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}"


def split_outputs(outputs):
    """(cls_logits, dist_logits) from a distilled student, (logits, None) from a plain one."""
    if isinstance(outputs, (tuple, list)):
        if len(outputs) != 2:
            raise ValueError(f"Expected (cls_logits, dist_logits), got a {type(outputs).__name__} of {len(outputs)}.")
        return outputs[0], outputs[1]
    return outputs, None


def hard_distillation_term(dist_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """CE(dist, y_t) with y_t = argmax of the teacher: the teacher's decision as a hard label."""
    return F.cross_entropy(dist_logits, teacher_logits.argmax(dim=-1))


def soft_distillation_term(dist_logits: torch.Tensor, teacher_logits: torch.Tensor,
                           tau: float = PAPER_TAU, reduction: str = "numel") -> torch.Tensor:
    """tau^2 KL(softmax(teacher/tau) || softmax(dist/tau)).

    tau^2 keeps the gradient's scale independent of tau (Hinton et al., 2015). reduction
    "numel" divides the summed KL by B*K like DeiT's code; "batchmean" divides by B only.

    Notebooks: built in 03 (soft distillation).
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, not {tau}; the paper uses tau = {PAPER_TAU}.")
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"reduction must be one of {KL_REDUCTIONS}, not {reduction!r}.")
    log_p_student = F.log_softmax(dist_logits.float() / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    kl_sum = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum()
    divisor = dist_logits.numel() if reduction == "numel" else dist_logits.shape[0]
    return kl_sum * tau ** 2 / divisor


def distillation_loss(kind: str, outputs, targets: torch.Tensor, teacher_logits: torch.Tensor | None = None,
                      *, alpha: float | None = None, tau: float = PAPER_TAU, smoothing: float = 0.0,
                      kl_reduction: str = "numel") -> torch.Tensor:
    """The student's loss: `kind` is "none", "hard" or "soft" (see the module docstring).

    outputs: the student's (cls_logits, dist_logits), or logits alone for "none".
    targets: class indices (with optional label smoothing) or (B, K) mixed probabilities.
    alpha: the weight of the teacher's term (default 1/2 for hard, 0.1 for soft).

    Notebooks: built in 03 (hard distillation).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}.")
    cls_logits, dist_logits = split_outputs(outputs)
    base = classification_loss(cls_logits, targets, smoothing)
    if kind == "none":
        return base
    alpha = DEFAULT_ALPHA[kind] if alpha is None else alpha
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], not {alpha}.")
    if dist_logits is None:
        raise ValueError(f"{kind!r} distillation needs (cls_logits, dist_logits): build the student with "
                         f"build_vit(distilled=True) and call it in train mode (model.train()).")
    if teacher_logits is None:
        raise ValueError(f"{kind!r} distillation needs the teacher's logits on the same images.")
    if teacher_logits.shape != dist_logits.shape:
        raise ValueError(f"The teacher's logits {tuple(teacher_logits.shape)} do not match the student's "
                         f"{tuple(dist_logits.shape)}: both must see the same batch and have the same classes.")
    if kind == "hard":
        teach = hard_distillation_term(dist_logits, teacher_logits)
    else:
        teach = soft_distillation_term(dist_logits, teacher_logits, tau, kl_reduction)
    return (1 - alpha) * base + alpha * teach


class DistillationLoss:
    """fit's loss_fn(outputs, targets, images): runs the teacher on the very images the student saw.

    The teacher is wrapped in FrozenTeacher if it is not one yet (eval mode, no gradients),
    and moved to the images' device on first use.

    Notebooks: used in 03.
    """

    def __init__(self, teacher: nn.Module | None, kind: str = "hard", *, alpha: float | None = None,
                 tau: float = PAPER_TAU, smoothing: float = 0.0, kl_reduction: str = "numel"):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}.")
        if kind != "none" and teacher is None:
            raise ValueError(f"{kind!r} distillation needs a teacher: pass load_or_train_teacher(profile).")
        if teacher is not None and not isinstance(teacher, FrozenTeacher):
            teacher = FrozenTeacher(teacher)
        self.teacher, self.kind = teacher, kind
        self.options = dict(alpha=alpha, tau=tau, smoothing=smoothing, kl_reduction=kl_reduction)

    def __call__(self, outputs, targets: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return distillation_loss("none", outputs, targets, **self.options)
        return distillation_loss(self.kind, outputs, targets, self.teacher(images), **self.options)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.options.items() if v is not None)
        return f"DistillationLoss(kind={self.kind!r}, {options})"


class FrozenTeacher(nn.Module):
    """A teacher that cannot learn: eval mode and no gradients, whatever the caller does.

    Eval mode matters for BatchNorm: in train mode every forward pass would normalize with the
    batch's own statistics and pull the running statistics toward the student's batches, even
    under no_grad.
    """

    def __init__(self, model: nn.Module, info: dict | None = None):
        super().__init__()
        self.model = model
        self.info = info or {}
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)  # student.train() or teacher.train() must not wake it

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()  # also if someone called .train() on the inner model directly
        if next(self.parameters()).device != images.device:  # it follows its inputs, once per move
            self.to_device(images.device)
        if images.is_cuda:  # cuDNN's fastest convolutions want NHWC (channels-last) tensors
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return self.model(images).float()

    def to_device(self, device) -> "FrozenTeacher":
        """Move to `device`; channels-last on CUDA to match the inputs forward gives it."""
        device = torch.device(device)
        return self.to(device, memory_format=torch.channels_last) if device.type == "cuda" else self.to(device)

    @property
    def test_acc(self) -> float | None:
        return self.info.get("test_acc")
