"""Run sizes: one switch, the environment variable DEIT_PROFILE.

    ci    every notebook in under 2 minutes on 2 CPU cores (what CI and the tests use)
    cpu   meaningful accuracy on a laptop CPU in about 30 minutes per training run
    full  the DeiT recipe at full scale on a GPU

Unset, the profile is `full` when a CUDA GPU is present and `cpu` otherwise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

ENV_VAR = "DEIT_PROFILE"


@dataclass(frozen=True)
class Profile:
    name: str
    train_per_class: int | None  # None: all 5,000 training images per class
    test_per_class: int | None  # None: all 1,000 test images per class
    epochs: int
    batch_size: int
    warmup_epochs: int
    model: dict = field(default_factory=dict)  # ViT size, see helpers.models.vit_config
    lr: float = 5e-4  # AdamW lr for batch 512 (scaled with the batch); short runs need more
    progress: bool = True  # tqdm bars; off in CI so stored outputs stay clean
    description: str = ""

    @property
    def train_size(self) -> int:
        return 10 * (self.train_per_class or 5000)

    @property
    def test_size(self) -> int:
        return 10 * (self.test_per_class or 1000)


PROFILES = {
    "ci": Profile(
        name="ci", train_per_class=100, test_per_class=50, epochs=3, batch_size=100,
        warmup_epochs=1, model=dict(embed_dim=48, depth=3, num_heads=3), lr=5e-3, progress=False,
        description="a smoke test: 1,000 training images, a 3-block ViT, 3 epochs",
    ),
    "cpu": Profile(
        name="cpu", train_per_class=1000, test_per_class=200, epochs=15, batch_size=128,
        warmup_epochs=2, model=dict(embed_dim=128, depth=6, num_heads=4), lr=2e-3,
        description="10,000 training images, a 6-block ViT (1.2 M parameters), 15 epochs",
    ),
    "full": Profile(
        name="full", train_per_class=None, test_per_class=None, epochs=100, batch_size=512,
        warmup_epochs=5, model=dict(embed_dim=192, depth=12, num_heads=3),
        description="all 50,000 images, DeiT-Tiny shape (5.4 M parameters), 100 epochs",
    ),
}


def profile_name() -> str:
    """The active profile's name: DEIT_PROFILE if set, else full on a GPU, cpu otherwise."""
    name = os.environ.get(ENV_VAR, "").strip().lower()
    if not name:
        return "full" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(
            f"{ENV_VAR}={name!r} is not a profile. Use one of: {', '.join(PROFILES)} "
            f"(for example `export {ENV_VAR}=cpu` before starting Jupyter)."
        )
    return name


def get_profile(name: str | None = None) -> Profile:
    """The Profile called `name`, or the active one."""
    name = name or profile_name()
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; use one of: {', '.join(PROFILES)}.")
    return PROFILES[name]


def describe(profile: Profile) -> str:
    """One paragraph for the top of every notebook: what runs and how to change it."""
    source = f"set by {ENV_VAR}" if os.environ.get(ENV_VAR) else (
        "default: a GPU was found" if profile.name == "full" else "default: no GPU found")
    return (
        f"Profile: {profile.name} ({source}) - {profile.description}.\n"
        f"To change it, restart the kernel with {ENV_VAR}=ci, cpu or full in the environment, "
        f"e.g. `{ENV_VAR}=cpu jupyter lab`."
    )
