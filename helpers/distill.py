"""Distillation through attention (Touvron et al., 2021, Sec. 5): the losses and what the tokens learn.

A distilled student (helpers.models.build_vit(distilled=True)) returns (cls_logits,
dist_logits) in training. The CLS head learns from the labels, the DIST head from a teacher:

    none  CE(cls, y)                                               (no teacher)
    hard  (1 - a) CE(cls, y) + a CE(dist, argmax teacher),          a = 1/2   (the paper's choice)
    soft  (1 - a) CE(cls, y) + a tau^2 KL(softmax(t/tau) || softmax(dist/tau)), a = 0.1, tau = 3

CE(cls, y) is the soft-target cross-entropy when y is a mixed (MixUp/CutMix) probability vector.
The KL term is normalized as in DeiT's code: summed over all B x K elements and divided by
B x K ("numel"), i.e. the per-sample KL divided by the number of classes. "batchmean" (the
per-sample KL averaged over the batch, the textbook KL) is K times larger.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from helpers.augment import normalize
from helpers.data import TensorBatches
from helpers.train import classification_loss

KINDS = ("none", "hard", "soft")
PAPER_TAU = 3.0  # Touvron et al. (2021), Sec. 5.2: tau = 3, lambda = 0.1 for soft distillation
DEFAULT_ALPHA = {"none": 0.0, "hard": 0.5, "soft": 0.1}
KL_REDUCTIONS = ("numel", "batchmean")


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
    """

    def __init__(self, teacher: nn.Module | None, kind: str = "hard", *, alpha: float | None = None,
                 tau: float = PAPER_TAU, smoothing: float = 0.0, kl_reduction: str = "numel"):
        from helpers.teacher import FrozenTeacher

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
        if next(self.teacher.parameters()).device != images.device:
            self.teacher.to_device(images.device)
        return distillation_loss(self.kind, outputs, targets, self.teacher(images), **self.options)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.options.items() if v is not None)
        return f"DistillationLoss(kind={self.kind!r}, {options})"


# ----------------------------------------------------------------------------------------------
# What the two tokens learn
# ----------------------------------------------------------------------------------------------

def _check_distilled(model) -> None:
    if getattr(model, "head_dist", None) is None:
        raise ValueError("This needs a distilled student: build it with build_vit(distilled=True).")


@torch.no_grad()
def head_logits(model, images: torch.Tensor):
    """(cls_logits, dist_logits) of a distilled student on float images, in train or eval mode."""
    _check_distilled(model)
    x = model.forward_features(images)
    return model.head(x[:, 0]), model.head_dist(x[:, 1])


@torch.no_grad()
def token_similarity(model, images: torch.Tensor) -> list[float]:
    """Mean cosine similarity of the CLS and DIST vectors: at the input, after each block, after the norm.

    Returns depth + 2 numbers. The paper (Sec. 5.1) reports 0.06 at the input and 0.93 at
    the output for its ImageNet DeiT-B.
    """
    _check_distilled(model)
    was_training = model.training
    model.eval()
    x = model.tokens(images.to(next(model.parameters()).device))
    sims = [F.cosine_similarity(x[:, 0], x[:, 1], dim=-1).mean().item()]
    for block in model.blocks:
        x = block(x)
        sims.append(F.cosine_similarity(x[:, 0], x[:, 1], dim=-1).mean().item())
    x = model.norm(x)
    sims.append(F.cosine_similarity(x[:, 0], x[:, 1], dim=-1).mean().item())
    model.train(was_training)
    return sims


def eval_batches(arrays, batch_size: int = 500):
    """Normalized float (B, 3, 32, 32) batches and labels from CIFAR10Arrays, in order."""
    for images, labels in TensorBatches(arrays, batch_size, shuffle=False):
        yield normalize(images), labels


@torch.no_grad()
def collect_predictions(student, teacher, arrays, batch_size: int = 500, device=None) -> dict:
    """Logits of both student heads and of the teacher on every image: a dict of CPU tensors."""
    device = torch.device(device) if device else next(student.parameters()).device
    was_training = student.training
    student.eval()
    teacher.to(device)
    parts = {"cls": [], "dist": [], "teacher": [], "labels": []}
    for images, labels in eval_batches(arrays, batch_size):
        images = images.to(device)
        cls, dist = head_logits(student, images)
        parts["cls"].append(cls.float().cpu())
        parts["dist"].append(dist.float().cpu())
        parts["teacher"].append(teacher(images).float().cpu())
        parts["labels"].append(labels)
    student.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def head_report(preds: dict) -> dict:
    """Accuracy (%) and agreement with the teacher (%) of each head and of both ways to combine them."""
    labels, teacher = preds["labels"], preds["teacher"].argmax(-1)
    predictions = {
        "CLS head": preds["cls"].argmax(-1),
        "DIST head": preds["dist"].argmax(-1),
        "average of logits": (preds["cls"] + preds["dist"]).argmax(-1),  # DeiT's code
        "average of softmax": (preds["cls"].softmax(-1) + preds["dist"].softmax(-1)).argmax(-1),  # the paper
        "teacher": teacher,
    }
    return {name: {"accuracy": 100.0 * (p == labels).float().mean().item(),
                   "agrees_with_teacher": 100.0 * (p == teacher).float().mean().item()}
            for name, p in predictions.items()}


def on_teacher_mistakes(preds: dict) -> dict:
    """On the images the teacher gets wrong: how often each head copies the teacher, or is right."""
    labels, teacher = preds["labels"], preds["teacher"].argmax(-1)
    wrong = teacher != labels
    report = {"images": int(wrong.sum())}
    for name in ("cls", "dist"):
        p = preds[name].argmax(-1)[wrong]
        n = max(1, len(p))
        report[name] = {"copies_teacher": 100.0 * (p == teacher[wrong]).sum().item() / n,
                        "correct": 100.0 * (p == labels[wrong]).sum().item() / n}
    return report


def print_head_report(report: dict) -> None:
    print(f"{'':20s} {'accuracy':>9s} {'agrees with teacher':>20s}")
    for name, row in report.items():
        print(f"{name:20s} {row['accuracy']:8.1f}% {row['agrees_with_teacher']:19.1f}%")


def plot_token_similarity(similarities: dict):
    """Cosine(CLS, DIST) per layer for one or more students: {name: token_similarity(...)}."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for name, sims in similarities.items():
        ax.plot(range(len(sims)), sims, marker="o", ms=4, label=name)
    depth = len(next(iter(similarities.values()))) - 2
    ax.set_xticks(range(depth + 2), ["input"] + [str(i) for i in range(1, depth + 1)] + ["norm"])
    lowest = min(min(sims) for sims in similarities.values())
    ax.set(xlabel="after block", ylabel="cosine(CLS, DIST)", ylim=(min(-0.1, lowest - 0.05), 1.05),
           title="How similar are the two tokens, layer by layer?")
    ax.axhline(0.93, color="gray", ls=":", lw=1)
    ax.text(0, 0.95, "paper, output layer (ImageNet): 0.93", fontsize=7, color="gray")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_head_reports(reports: dict):
    """Grouped bars: accuracy and agreement with the teacher per head, for each student."""
    import matplotlib.pyplot as plt

    heads = ["CLS head", "DIST head", "average of logits", "average of softmax"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    width = 0.8 / len(reports)
    for k, (name, report) in enumerate(reports.items()):
        xs = [i + k * width for i in range(len(heads))]
        axes[0].bar(xs, [report[h]["accuracy"] for h in heads], width, label=name)
        axes[1].bar(xs, [report[h]["agrees_with_teacher"] for h in heads], width, label=name)
    for ax, title in zip(axes, ["test accuracy (%)", "agreement with the teacher (%)"]):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(heads))], heads, fontsize=8)
        ax.set_title(title)
    teacher_acc = next(iter(reports.values()))["teacher"]["accuracy"]
    axes[0].axhline(teacher_acc, color="gray", ls=":", lw=1, label=f"teacher {teacher_acc:.1f}%")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
