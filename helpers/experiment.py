"""One call that trains a model the way the active profile says: what the notebooks use."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from helpers.data import TensorBatches, load_cifar10
from helpers.models import build_vit
from helpers.profiles import Profile, get_profile
from helpers.train import TrainConfig, fit

RUNS = Path(__file__).resolve().parents[1] / "runs"
EVAL_BATCH = 500


def profile_config(profile: Profile, **overrides) -> TrainConfig:
    """TrainConfig sized by the profile; keyword arguments override any field."""
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise TypeError(f"Unknown TrainConfig fields: {sorted(unknown)}.")
    sized = dict(epochs=profile.epochs, batch_size=profile.batch_size,
                 warmup_epochs=profile.warmup_epochs, lr=profile.lr)
    return TrainConfig(**{**sized, **overrides})


def profile_data(profile: Profile, seed: int = 0):
    """(train, test) CIFAR10Arrays of the profile's sizes."""
    return (load_cifar10("train", n_per_class=profile.train_per_class, seed=seed),
            load_cifar10("test", n_per_class=profile.test_per_class, seed=seed))


def train_in_profile(name: str, model=None, profile: Profile | None = None, *,
                     batch_transform=None, loss_fn=None, run_dir=None, on_epoch=None, **config_overrides):
    """Train `model` (default: the profile's ViT) on the profile's data; return the history.

    Checkpoints go to runs/<profile>/<name>: running the cell again resumes or, when the
    run had finished, returns its history at once.
    """
    profile = profile or get_profile()
    config = profile_config(profile, **config_overrides)
    model = model if model is not None else build_vit(**profile.model)
    train, test = profile_data(profile)
    return fit(model, TensorBatches(train, config.batch_size, seed=config.seed),
               TensorBatches(test, EVAL_BATCH, shuffle=False), config,
               batch_transform=batch_transform, loss_fn=loss_fn,
               run_dir=run_dir or RUNS / profile.name / name, progress=profile.progress,
               on_epoch=on_epoch)
