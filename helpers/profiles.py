"""Run sizes: one switch, the environment variable DEIT_PROFILE.

    ci    every notebook in under 2 minutes on 2 CPU cores (what CI and the tests use)
    cpu   a laptop: minutes per training run on 2 cores, the scale of the committed reference ablation
    full  the DeiT recipe at full scale on a GPU

Unset, the profile is `full` when a CUDA GPU is present and `cpu` otherwise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from helpers.errors import CourseError

ENV_VAR = "DEIT_PROFILE"


class ProfileError(CourseError, ValueError):
    """An unknown profile name; the message lists the valid ones and how to set one."""


@dataclass(frozen=True)
class Profile:
    name: str
    train_per_class: int | None  # None: all training images per class that validation leaves
    test_per_class: int | None  # None: all 1,000 test images per class
    epochs: int
    batch_size: int
    warmup_epochs: int
    vit_sizes: dict = field(default_factory=dict)  # the ViT's size, see helpers.models.vit_config
    lr: float = 5e-4  # AdamW lr for batch 512 (scaled with the batch); short runs need more
    # SGD (Recipe.opt "sgd"): lr for batch 512, and weight decay (added to the gradient, so far
    # smaller than AdamW's decoupled 0.05; 5e-4 as the course's CNN teacher). The paper gives neither:
    # the lr is the cpu profile's choice on validation (benchmarks/sgd_lr.py, results/sgd_lr/),
    # not tuned at the other sizes.
    sgd_lr: float = 0.03
    sgd_weight_decay: float = 5e-4
    progress: bool = True  # tqdm bars; off in CI so stored outputs stay clean
    description: str = ""
    val_per_class: int = 100  # held out of the training set (helpers.data.train_validation_split)

    def optimizer_settings(self, opt: str) -> dict:
        """TrainConfig fields for the optimizer `opt`: its learning rate and weight decay here."""
        if opt == "sgd":
            return dict(opt=opt, lr=self.sgd_lr, weight_decay=self.sgd_weight_decay)
        return dict(opt=opt, lr=self.lr)

    @property
    def train_size(self) -> int:
        return 10 * (self.train_per_class or 5000 - self.val_per_class)

    @property
    def val_size(self) -> int:
        return 10 * self.val_per_class

    @property
    def test_size(self) -> int:
        return 10 * (self.test_per_class or 1000)


PROFILES = {
    "ci": Profile(
        name="ci", train_per_class=100, test_per_class=50, epochs=3, batch_size=100,
        warmup_epochs=1, vit_sizes=dict(embed_dim=48, depth=3, num_heads=3), lr=5e-3, progress=False,
        val_per_class=20, description="a smoke test: 1,000 training images, a 3-block ViT, 3 epochs",
    ),
    "cpu": Profile(
        name="cpu", train_per_class=400, test_per_class=200, epochs=60, batch_size=128,
        warmup_epochs=5, vit_sizes=dict(embed_dim=128, depth=6, num_heads=4, patch_size=8), lr=2e-3,
        val_per_class=100,
        description="4,000 training images (1,000 more held out), a 6-block ViT on 8x8 patches "
                    "(1.2 M parameters), 60 epochs",
    ),
    "full": Profile(
        name="full", train_per_class=None, test_per_class=None, epochs=100, batch_size=512,
        warmup_epochs=5, vit_sizes=dict(embed_dim=192, depth=12, num_heads=3), val_per_class=500,
        description="45,000 training images (5,000 held out), DeiT-Tiny shape (5.4 M parameters), 100 epochs",
    ),
}


def profile_name() -> str:
    """The active profile's name: DEIT_PROFILE if set, else full on a GPU, cpu otherwise."""
    name = os.environ.get(ENV_VAR, "").strip().lower()
    if not name:
        return "full" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ProfileError(
            f"{ENV_VAR}={name!r} is not a profile. Use one of: {', '.join(PROFILES)} "
            f"(for example `export {ENV_VAR}=cpu`, in Windows' cmd `set {ENV_VAR}=cpu`, before starting Jupyter)."
        )
    return name


def get_profile(name: str | None = None) -> Profile:
    """The Profile called `name`, or the active one.

    Notebooks: used in 00, 02, 03, 05.
    """
    name = name or profile_name()
    if name not in PROFILES:
        raise ProfileError(f"Unknown profile {name!r}; use one of: {', '.join(PROFILES)}.")
    return PROFILES[name]


def smoke_test_label(profile: Profile) -> str:
    """What a run's numbers are worth in this profile, for the output next to them.

    Notebooks: used in 00, 02, 03, 04, 05.
    """
    if profile.name == "ci":
        return ("SMOKE TEST (ci profile: a few epochs on 1,000 images) - these numbers only show that "
                "the code runs; they are not evidence of anything.")
    return f"{profile.name}-profile run (one seed: a single draw, not a reference result)."


def figure_label(profile: Profile) -> str:
    """A few words for a figure's title: whose run it shows and what it is worth.

    Notebooks: used in 03.
    """
    worth = "a smoke test, not evidence" if profile.name == "ci" else "one seed"
    return f"this notebook's run, profile {profile.name}: {worth}"


def describe(profile: Profile) -> str:
    """One paragraph for the top of every notebook: what runs and how to change it."""
    source = f"set by {ENV_VAR}" if os.environ.get(ENV_VAR) else (
        "default: a GPU was found" if profile.name == "full" else "default: no GPU found")
    return (
        f"Profile: {profile.name} ({source}) - {profile.description}.\n"
        f"To change it, start Jupyter with {ENV_VAR}=ci, cpu or full in its environment "
        f"(`{ENV_VAR}=cpu jupyter lab`), or put `%env {ENV_VAR}=cpu` in a cell above this one "
        f"and run the notebook again from the top (restarting the kernel alone does not change it)."
    )
