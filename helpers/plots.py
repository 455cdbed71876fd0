"""Figures shared by the notebooks."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from helpers.constants import CLASSES


def show_images(images, labels=None, titles=None, ncols: int = 8, scale: float = 1.3):
    """A grid of images: uint8 (N, H, W, 3) or (N, 3, H, W), or floats in [0, 1].

    Notebooks: used in 00, 02, 04.
    """
    images = torch.as_tensor(images)
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
        self.title, self.others = title, dict(others or {})

    def __call__(self, history: list[dict]) -> None:
        from IPython.display import clear_output, display
        clear_output(wait=True)
        fig = plot_histories({**self.others, "this run": history}, title=self.title)
        display(fig)
        plt.close(fig)
