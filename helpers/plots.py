"""Figures shared by the notebooks."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from helpers.constants import CLASSES


def show_images(images, labels=None, titles=None, ncols: int = 8, scale: float = 1.3):
    """A grid of images: uint8 (N, H, W, 3) or (N, 3, H, W), or floats in [0, 1].

    Notebooks: used in 00, 02, 04.
    """
    images = torch.as_tensor(images).cpu()  # matplotlib reads NumPy arrays, which live on the CPU
    if images.shape[1] == 3 and images.shape[-1] != 3:
        images = images.permute(0, 2, 3, 1)
    if images.is_floating_point():
        images = images.clamp(0, 1)
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].numpy())
            title = titles[i] if titles is not None else (CLASSES[int(labels[i])] if labels is not None else None)
            if title:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def plot_histories(histories: dict, title: str | None = None, train_loss: bool = True):
    """Loss and validation accuracy per epoch for several runs: {name: history}.

    train_loss=False leaves out the training loss, e.g. when the runs optimize different
    objectives (distillation adds a term) and only the validation loss is comparable.

    Notebooks: used in 00, 02, 03.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, history in histories.items():
        epochs = [r["epoch"] for r in history]
        line, = ax_loss.plot(epochs, [r["val_loss"] for r in history], "--", label=f"{name} val")
        if train_loss:
            ax_loss.plot(epochs, [r["train_loss"] for r in history], color=line.get_color(), label=f"{name} train")
        ax_acc.plot(epochs, [r["val_acc"] for r in history], color=line.get_color(), marker="o", ms=3, label=name)
    from matplotlib.ticker import MaxNLocator
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy",
                title="loss (solid: train, dashed: validation)" if train_loss else "validation loss")
    ax_acc.set(xlabel="epoch", ylabel="val accuracy (%)", title="validation accuracy")
    ax_acc.legend(fontsize=8)
    ax_loss.legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class LiveCurves:
    """fit(..., on_epoch=LiveCurves(...)): redraws the curves in the notebook after every epoch.

    Notebooks: used in 04.
    """

    def __init__(self, title: str | None = None, others: dict | None = None):
        from IPython.display import display
        self.title, self.others = title, dict(others or {})
        # One figure updated in place, in a slot made now: above the lines the run prints per
        # epoch, and without clearing the cell's output, which would also erase what was printed
        # before it (the time estimate, "resumed from", a compile fallback's warning).
        self._display = display(display_id=True)

    def __call__(self, history: list[dict]) -> None:
        from IPython.display import display
        fig = plot_histories({**self.others, "this run": history}, title=self.title)
        if self._display is None:  # outside Jupyter there is no slot to update
            display(fig)
        else:
            self._display.update(fig)
        plt.close(fig)


# Colours of the ViT diagram: one per kind of token, one for the layers they pass through.
_TOKEN_COLOURS = {"[CLS]": "#f4b183", "[DIST]": "#c5a3e0", "patch": "#9dc3e6", "layer": "#e7e6e6"}


def _diagram_box(ax, x0: float, x1: float, y: float, text: str, colour: str, height: float = 0.8):
    """A rounded box from x0 to x1, centred on height y, with `text` in its middle."""
    from matplotlib.patches import FancyBboxPatch
    ax.add_patch(FancyBboxPatch((x0, y - height / 2), x1 - x0, height, boxstyle="round,pad=0.05",
                                facecolor=colour, edgecolor="0.3"))
    ax.text((x0 + x1) / 2, y, text, ha="center", va="center", fontsize=9)


def _diagram_arrow(ax, x: float, y0: float, y1: float) -> None:
    """An upward arrow at x from y0 to y1."""
    ax.annotate("", xy=(x, y1), xytext=(x, y0), arrowprops=dict(arrowstyle="->", color="0.3"))


def draw_vit_diagram(distilled: bool = False, num_patches: int = 64, ax=None):
    """The ViT as boxes and arrows, bottom to top: patches -> linear projection -> tokens with
    [CLS] in front (and DeiT's [DIST] after it if `distilled`) + position embeddings ->
    L transformer blocks -> LayerNorm -> a linear head on [CLS] (and one on [DIST]).

    The token order is helpers.models.VisionTransformer's: [CLS, DIST, p1 ... pN]. Returns the axes.

    Notebooks: used in 00.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.6))
    step, half = 1.3, 0.5  # distance between token columns, half a token box's width
    names = ["[CLS]"] + (["[DIST]"] if distilled else []) + ["p1", "p2", "p3", "…", f"p{num_patches}"]
    xs = [i * step for i in range(len(names))]
    first_patch, right = xs[names.index("p1")] - half, xs[-1] + half
    y_patches, y_proj, y_tokens, y_blocks, y_norm, y_heads = 0, 1.3, 2.6, 4.3, 6.0, 7.3

    _diagram_box(ax, first_patch, right, y_patches,
                 f"the image cut into {num_patches} patches, each flattened", "white")
    _diagram_box(ax, first_patch, right, y_proj, "linear projection (one matrix, shared by all patches)",
                 _TOKEN_COLOURS["patch"])
    for x, name in zip(xs, names):
        if name == "…":
            ax.text(x, y_tokens, name, ha="center", va="center", fontsize=12)
            continue
        colour = _TOKEN_COLOURS.get(name, _TOKEN_COLOURS["patch"])
        _diagram_box(ax, x - half, x + half, y_tokens, name, colour)
        _diagram_arrow(ax, x, y_tokens + 0.45, y_blocks - 0.65)
        if name.startswith("p"):
            _diagram_arrow(ax, x, y_patches + 0.45, y_proj - 0.45)
            _diagram_arrow(ax, x, y_proj + 0.45, y_tokens - 0.45)
        else:
            ax.text(x, y_proj, "learned", ha="center", va="center", fontsize=8, style="italic")
    ax.text(right + 0.2, y_tokens, "+ position\nembedding\n(one per token)", va="center", fontsize=8)
    _diagram_box(ax, xs[0] - half, right, y_blocks,
                 "L × transformer block:  x + Attn(LN(x)),  then  x + MLP(LN(x))\n"
                 "(every token attends to every token)", _TOKEN_COLOURS["layer"], height=1.2)
    _diagram_box(ax, xs[0] - half, right, y_norm, "LayerNorm", _TOKEN_COLOURS["layer"], height=0.6)

    heads = [("head", "[CLS]", "class logits: cross-entropy with the true label")]
    if distilled:
        heads.append(("head_dist", "[DIST]", "distillation logits: cross-entropy with the teacher's class"))
    # Each head reads only its own token's output; the outputs are stacked so their labels do not overlap.
    for i, (head, token, output) in enumerate(heads):
        x, y_out = xs[names.index(token)], y_heads + 1.3 * (len(heads) - i)
        _diagram_arrow(ax, x, y_norm + 0.35, y_heads - 0.4)
        _diagram_box(ax, x - half, x + half, y_heads, head, _TOKEN_COLOURS[token], height=0.7)
        _diagram_arrow(ax, x, y_heads + 0.4, y_out - 0.3)
        ax.text(x - half, y_out, output, va="center", fontsize=9)
    title = ("DeiT, distilled: [CLS] and [DIST] tokens, two heads; at test time their outputs are averaged"
             if distilled else "ViT: one [CLS] token, one head")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(xs[0] - half - 0.2, right + 1.8)
    ax.set_ylim(y_patches - 0.6, y_heads + 1.3 * len(heads) + 0.5)
    ax.axis("off")
    ax.figure.tight_layout()
    return ax
