"""Distillation through attention (Touvron et al., 2021, Sec. 4): what the two tokens learn.

The losses are in helpers.losses.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from helpers.augment import normalize
from helpers.data import TensorBatches


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


@contextmanager
def _in_eval_mode(model):
    """The model in eval mode inside the block, in the mode it had after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _block_inputs(model, images: torch.Tensor):
    """Yield (block, the tokens it reads) through the model, then (None, the last block's output)."""
    x = model.tokens(images.to(next(model.parameters()).device))
    for block in model.blocks:
        yield block, x
        x = block(x)
    yield None, x


@torch.no_grad()
def token_similarity(model, images: torch.Tensor) -> list[float]:
    """Mean cosine similarity of the CLS and DIST vectors: at the input, after each block, after the norm.

    Returns depth + 2 numbers; the first is for the tokens with their position embeddings added,
    the vectors the first block reads. The paper (Sec. 4) reports 0.06 between the learned
    tokens themselves and 0.93 at the output, for its ImageNet model.

    Notebooks: used in 03.
    """
    _check_distilled(model)
    with _in_eval_mode(model):
        states = [x for _, x in _block_inputs(model, images)]
        states.append(model.norm(states[-1]))
    return [F.cosine_similarity(x[:, 0], x[:, 1], dim=-1).mean().item() for x in states]


@torch.no_grad()
def attention_maps(model, images: torch.Tensor) -> list[torch.Tensor]:
    """Every block's attention weights on float images, in eval mode: depth CPU tensors
    (B, heads, N, N); row i says how much token i takes from each token (rows sum to 1). Tokens
    are ordered [CLS, DIST, p1 ... pN] in a distilled student, [CLS, p1 ... pN] in a plain ViT.

    Notebooks: used in 03.
    """
    with _in_eval_mode(model):
        return [block.attn.attention_weights(block.norm1(x)).cpu()
                for block, x in _block_inputs(model, images) if block is not None]


def attention_overlap(maps: list[torch.Tensor]) -> list[float]:
    """Per block, how much of their attention [CLS] and [DIST] give to the same tokens:
    sum over tokens j of min(a_CLS,j, a_DIST,j), averaged over heads and images. 1 means the two
    rows are equal, 0 that they read disjoint tokens (it is 1 minus their total-variation distance).

    Notebooks: used in 03.
    """
    if maps[0].shape[-1] < 3:
        raise ValueError("These maps have no [DIST] row: they come from a plain ViT, not a distilled student.")
    return [torch.minimum(a[:, :, 0], a[:, :, 1]).sum(-1).mean().item() for a in maps]


def patch_attention(maps: list[torch.Tensor], block: int = -1) -> dict[str, torch.Tensor]:
    """What [CLS] and [DIST] take from the patches in one block, averaged over the heads:
    {"[CLS]": (B, grid, grid), "[DIST]": ...}. The weights they give the two prefix tokens are
    left out, so a map sums to the share of attention that went to patches (plot_patch_attention).
    """
    weights = maps[block].mean(dim=1)  # (B, N, N), the heads' average
    patches = weights[:, :2, 2:]
    grid = math.isqrt(patches.shape[-1])
    if grid * grid != patches.shape[-1]:
        raise ValueError(f"{patches.shape[-1]} patch tokens do not make a square grid: are these a "
                         f"distilled student's maps ([CLS, DIST, patches])?")
    return {name: patches[:, row].reshape(-1, grid, grid) for row, name in enumerate(("[CLS]", "[DIST]"))}


def eval_batches(arrays, batch_size: int = 500):
    """Normalized float (B, 3, 32, 32) batches and labels from CIFAR10Arrays, in order.

    Notebooks: used in 03.
    """
    for images, labels in TensorBatches(arrays, batch_size, shuffle=False):
        yield normalize(images), labels


@torch.no_grad()
def collect_predictions(student, teacher, arrays, batch_size: int = 500, device=None) -> dict:
    """Logits of both student heads and of the teacher on every image: a dict of CPU tensors.

    Notebooks: used in 03.
    """
    device = torch.device(device) if device else next(student.parameters()).device
    parts = {"cls": [], "dist": [], "teacher": [], "labels": []}
    with _in_eval_mode(student):  # the teacher (a FrozenTeacher) moves to the images' device by itself
        for images, labels in eval_batches(arrays, batch_size):
            images = images.to(device)
            cls, dist = head_logits(student, images)
            parts["cls"].append(cls.float().cpu())
            parts["dist"].append(dist.float().cpu())
            parts["teacher"].append(teacher(images).float().cpu())
            parts["labels"].append(labels)
    return {k: torch.cat(v) for k, v in parts.items()}


def head_report(preds: dict) -> dict:
    """Accuracy (%) and agreement with the teacher (%) of each head and of both ways to combine them.

    Notebooks: used in 03.
    """
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
    """On the images the teacher gets wrong: how often each head copies the teacher, or is right.

    Notebooks: used in 03.
    """
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
    """Notebooks: used in 03."""
    print(f"{'':20s} {'accuracy':>9s} {'agrees with teacher':>20s}")
    for name, row in report.items():
        print(f"{name:20s} {row['accuracy']:8.1f}% {row['agrees_with_teacher']:19.1f}%")


def reference_teacher(results: list[dict]) -> dict | None:
    """The teacher that the distilled runs of a reference ablation learned from: the `teacher`
    field of their result files (helpers.ablate.load_results), or None if no run distilled.

    Notebooks: used in 03.
    """
    teachers = [r["teacher"] for r in results if r.get("teacher")]
    if not teachers:
        return None
    first = teachers[0]
    if any((t.get("test_acc"), t.get("config")) != (first.get("test_acc"), first.get("config")) for t in teachers):
        raise ValueError("The distilled runs of these results learned from different teachers; "
                         "compare them one teacher at a time.")
    return first


def plot_token_similarity(similarities: dict, source: str = ""):
    """Cosine(CLS, DIST) per layer for one or more students: {name: token_similarity(...)};
    `source` says in the title which students these are (e.g. helpers.profiles.figure_label).

    Notebooks: used in 03.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for name, sims in similarities.items():
        ax.plot(range(len(sims)), sims, marker="o", ms=4, label=name)
    depth = len(next(iter(similarities.values()))) - 2
    ax.set_xticks(range(depth + 2), ["input+pos"] + [str(i) for i in range(1, depth + 1)] + ["norm"])
    lowest = min(min(sims) for sims in similarities.values())
    ax.set(xlabel="after block", ylabel="cosine(CLS, DIST)", ylim=(min(-0.1, lowest - 0.05), 1.05),
           title="How similar are the two tokens, layer by layer?" + (f"\n{source}" if source else ""))
    ax.axhline(0.93, color="gray", ls=":", lw=1)
    ax.text(0, 0.95, "paper, output layer (ImageNet): 0.93", fontsize=7, color="gray")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_attention_overlap(overlaps: dict, source: str = ""):
    """attention_overlap per block for one or more students: {name: [overlap per block]}; the
    entry named "untrained" is drawn grey and dashed, as the reference.

    Notebooks: used in 03.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for name, values in overlaps.items():
        style = dict(color="gray", ls="--") if name == "untrained" else {}  # the reference, not a student
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=4, label=name, **style)
    ax.set_xticks(range(1, len(next(iter(overlaps.values()))) + 1))
    ax.set(xlabel="block", ylabel="shared attention", ylim=(0, 1.05),
           title="Do [CLS] and [DIST] read the same tokens?" + (f"\n{source}" if source else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_patch_attention(image: torch.Tensor, maps: dict, index: int, block: int = -1, source: str = ""):
    """One image (H, W, 3) uint8 and, for each student in maps ({name: attention_maps(...)}), what
    its [CLS] and [DIST] take from each patch in `block` (heads averaged) over the image. The two
    maps of a student share one colour scale, so their brightness compares.

    Notebooks: used in 03.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(maps), 3, figsize=(6.6, 2.3 * len(maps)), squeeze=False)
    size = image.shape[0]
    for row, (name, student_maps) in zip(axes, maps.items()):
        patches = {token: m[index] for token, m in patch_attention(student_maps, block).items()}
        top = max(m.max().item() for m in patches.values())
        row[0].imshow(image.numpy())
        row[0].set_title(name, fontsize=9)
        for ax, (token, weights) in zip(row[1:], patches.items()):
            ax.imshow(image.numpy())
            ax.imshow(weights.numpy(), cmap="inferno", alpha=0.75, vmin=0, vmax=top,
                      extent=(0, size, size, 0), interpolation="nearest")
            ax.set_title(f"{token}: {weights.sum().item():.0%} to patches", fontsize=9)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    depth = len(next(iter(maps.values())))
    shown = block % depth + 1
    fig.suptitle(f"attention to the patches in block {shown} of {depth}, heads averaged"
                 + (f"\n{source}" if source else ""), fontsize=10)
    fig.tight_layout()
    return fig


def plot_head_reports(reports: dict, source: str = ""):
    """Grouped bars: accuracy and agreement with the teacher per head, for each student;
    `source` as in plot_token_similarity, above both panels.

    Notebooks: used in 03.
    """
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
    if source:
        fig.suptitle(source, fontsize=10)
    fig.tight_layout()
    return fig
