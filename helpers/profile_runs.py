"""One call that trains a model the way the active profile says: what the notebooks use."""
from __future__ import annotations

from dataclasses import fields

import torch

from helpers.constants import RUNS
from helpers.data import TensorBatches, load_cifar10, train_validation_split
from helpers.models import build_vit
from helpers.profiles import Profile, get_profile
from helpers.resolution import at_resolution, finetune_overrides, upsample_images
from helpers.train import EVAL_BATCH, TrainConfig, evaluate, fit, pick_device
from helpers.weight_average import WeightAverage, ema_key


def profile_config(profile: Profile, **overrides) -> TrainConfig:
    """TrainConfig sized by the profile, with its learning rate (and weight decay) for the
    optimizer `opt` (default AdamW); keyword arguments override any field.

    Notebooks: used in 04.
    """
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise TypeError(f"Unknown TrainConfig fields: {sorted(unknown)}.")
    sized = dict(epochs=profile.epochs, batch_size=profile.batch_size, warmup_epochs=profile.warmup_epochs,
                 **profile.optimizer_settings(overrides.get("opt", "adamw")))
    return TrainConfig(**{**sized, **overrides})


def profile_data(profile: Profile, train_per_class: int | None = None):
    """(train, validation, test) CIFAR10Arrays of the profile's sizes.

    Validation images are held out of the training set, the same ones for every run of the
    profile: curves and every choice use them. The test set is for the final model only.

    Notebooks: used in 04.
    """
    train, val = train_validation_split(load_cifar10("train"), profile.val_per_class,
                                        train_per_class or profile.train_per_class)
    return train, val, load_cifar10("test", n_per_class=profile.test_per_class)


def steps_in_profile(profile: Profile, recipe) -> int:
    """Optimizer steps of a whole run with a helpers.recipe.Recipe in the profile: whole batches
    only, from the recipe's sampler (its repeats trim an epoch). No image is loaded.

    Notebooks: used in 02.
    """
    from helpers.sampler import RepeatedAugSampler
    return profile.epochs * (len(RepeatedAugSampler(profile.train_size, 1, 0, recipe.num_repeats)) // profile.batch_size)


def compiles_by_default(profile: Profile, device) -> bool:
    """Whether a notebook's run uses torch.compile unless told: on a CUDA GPU, where compiling
    (tens of seconds) pays for itself over a cpu- or full-profile run; not for the ci profile's
    few epochs, and not on a CPU, where compiling takes longer than it saves at these sizes."""
    return torch.device(device).type == "cuda" and profile.name != "ci"


def train_in_profile(name: str, model=None, profile: Profile | None = None, *, recipe=None,
                     teacher=None, batch_transform=None, loss_fn=None, run_dir=None, device=None,
                     train_per_class: int | None = None, num_replicas: int = 1, rank: int = 0,
                     progress: bool | None = None, log_epochs: bool | None = None,
                     resume: bool = True, metadata: dict | None = None, on_epoch=None,
                     img_size: int | None = None, ema_decays=(), **config_overrides):
    """Train on the profile's data and return the history (one dict per epoch).

    Every epoch is validated on the held-out validation split (val_loss, val_acc); the final
    model is evaluated once on the test set, added to the last epoch's record as test_loss and
    test_acc.

    With a helpers.recipe.Recipe, its model, batch sampler (repeated augmentation), batch
    augmentation and loss (distilling from `teacher`) are used; explicit arguments win.
    Without one: the profile's plain ViT, shuffled batches, normalization only. The data sits
    on the training device. Checkpoints go to runs/<profile>/<name>: running the cell again
    resumes, or returns a finished run's history at once. It compiles where compiles_by_default
    says so, unless `compile` is passed. With img_size, every split is upsampled to
    img_size x img_size pixels (helpers.resolution: fine-tuning at a higher resolution). For
    each of ema_decays, an exponential moving average of the weights is kept beside the model
    (helpers.weight_average) and validated every epoch and tested at the end like it; the model
    trains as without.

    Notebooks: used in 00, 02, 03, 04.
    """
    profile = profile or get_profile()
    device = device or pick_device()
    config_overrides.setdefault("compile", compiles_by_default(profile, device))
    if recipe is not None:
        config_overrides.setdefault("smoothing", recipe.smoothing)
        config_overrides.setdefault("opt", recipe.opt)  # and with it the profile's settings for that optimizer
        if config_overrides["opt"] != recipe.opt:
            raise ValueError(f"opt={config_overrides['opt']!r} contradicts the recipe's opt={recipe.opt!r}: "
                             f"set the optimizer in the recipe (Recipe(opt=...)) only.")
    config = profile_config(profile, **config_overrides)
    train, val, test = profile_data(profile, train_per_class=train_per_class)
    metadata = {**(metadata or {}), "train_images": len(train)}  # a resume must train on the same data
    if img_size is not None:
        train, val, test = (upsample_images(arrays, img_size) for arrays in (train, val, test))
        metadata["img_size"] = img_size
    if recipe is not None:
        model = model if model is not None else recipe.build_model(**profile.vit_sizes)
        batch_transform = batch_transform or recipe.batch_transform()
        loss_fn = loss_fn or recipe.loss_fn(teacher)
        train_batches = recipe.train_batches(train, config.batch_size, config.seed, num_replicas, rank)
        metadata = {"recipe": recipe.as_dict(), **(metadata or {})}
    else:
        model = model if model is not None else build_vit(**profile.vit_sizes)
        train_batches = TensorBatches(train, config.batch_size, seed=config.seed,
                                      num_replicas=num_replicas, rank=rank)
    def eval_batches(arrays):
        return TensorBatches(arrays, EVAL_BATCH, shuffle=False, num_replicas=num_replicas, rank=rank).to(device)

    averages = [WeightAverage(model, decay) for decay in ema_decays]
    history = fit(model, train_batches.to(device), eval_batches(val), config,
                  batch_transform=batch_transform, loss_fn=loss_fn,
                  run_dir=run_dir or RUNS / profile.name / name, resume=resume,
                  progress=profile.progress if progress is None else progress, log_epochs=log_epochs,
                  device=device, metadata=metadata, on_epoch=on_epoch, averages=averages)
    tested = evaluate(model, eval_batches(test), device)
    history[-1] = {**history[-1], "test_loss": tested["val_loss"], "test_acc": tested["val_acc"]}
    for average in averages:
        tested = evaluate(average.module, eval_batches(test), device)
        history[-1].update({ema_key(average.decay, "test_loss"): tested["val_loss"],
                            ema_key(average.decay, "test_acc"): tested["val_acc"]})
    return history


def finetune_in_profile(name: str, student, size: int, profile: Profile | None = None, **kwargs) -> list[dict]:
    """Fine-tune a trained `student` at size x size pixels on the profile's data, in DeiT's
    proportions (helpers.resolution.finetune_overrides): train_in_profile's history. A copy is
    fine-tuned, the student is left as it was; keyword arguments are train_in_profile's, and a
    TrainConfig field given here overrides the proportions.

    Notebooks: used in 04.
    """
    profile = profile or get_profile()
    return train_in_profile(name, at_resolution(student, size), profile, img_size=size,
                            **{**finetune_overrides(profile), **kwargs})


def seconds_per_image(profile: Profile, recipe=None, device=None, teacher=None, steps: int = 3,
                      img_size: int | None = None) -> float:
    """Measured training time per image of the profile's model and recipe on `device`: a few
    augmented training steps, timed after one warm-up step (nothing is saved); at img_size
    pixels if given (a fine-tuning at a higher resolution).

    Notebooks: used in 04.
    """
    from helpers.recipe import Recipe
    from helpers.train import make_optimizer

    recipe = recipe or Recipe.plain()
    device = torch.device(device) if device else pick_device()
    config = profile_config(profile)
    sized = {"img_size": img_size} if img_size else {}
    model = recipe.build_model(**profile.vit_sizes, **sized).to(device)
    loss_fn = recipe.loss_fn(teacher) if recipe.distillation_type != "none" else recipe.loss_fn()
    return time_training_steps(model, make_optimizer(model, config, config.scaled_lr, device),
                               recipe.batch_transform(), loss_fn, profile.batch_size, device,
                               clip_grad=config.clip_grad, steps=steps, img_size=img_size)


def step_seconds(model, optimizer, batch_transform, loss_fn, batch_size: int, device,
                 clip_grad=None, steps: int = 3, img_size: int | None = None) -> list[float]:
    """Wall seconds of each of the first `steps` training steps on real CIFAR-10 images (at most
    one pass over them; upsampled to img_size if given), the device synchronized after each: the
    first pays any set-up."""
    import time

    from helpers.data import FULL_PER_CLASS
    from helpers.speed import sync
    from helpers.precision import autocast_for, grad_scaler_for
    from helpers.train import train_step

    data = load_cifar10("train", n_per_class=min(FULL_PER_CLASS["train"], -(-batch_size * steps // 10)))
    if img_size:
        data = upsample_images(data, img_size)
    loader = TensorBatches(data, batch_size, drop_last=True)
    batches, seconds = iter(loader.to(device)), []
    autocast, scaler = autocast_for(device), grad_scaler_for(device)
    for _ in range(min(steps, len(loader))):
        started = time.perf_counter()
        inputs, targets = batch_transform(*next(batches))
        train_step(model, optimizer, inputs, targets, loss_fn, clip_grad, autocast, scaler)
        sync(device)
        seconds.append(time.perf_counter() - started)
    return seconds


def time_training_steps(model, optimizer, batch_transform, loss_fn, batch_size: int, device,
                        clip_grad=None, steps: int = 3, img_size: int | None = None) -> float:
    """Seconds per image of `steps` training steps on real CIFAR-10 images, after one warm-up step."""
    timed = step_seconds(model, optimizer, batch_transform, loss_fn, batch_size, device, clip_grad, steps + 1,
                         img_size=img_size)[1:]
    return sum(timed) / (len(timed) * batch_size)


def _duration(minutes: float) -> str:
    """'12.5 min'; seconds under a minute (a ci run would read '0.0 min'), hours from 2 h, days
    from 2 days (a full-profile ablation on a laptop reads '48.8 days', not '70332.2 min')."""
    if minutes < 1:
        return f"{max(1, round(minutes * 60))} s"
    if minutes < 120:
        return f"{minutes:.1f} min"
    return f"{minutes / 60:.1f} h" if minutes < 2 * 24 * 60 else f"{minutes / 60 / 24:.1f} days"


def estimated_time(profile: Profile, recipe=None, device=None, teacher=None, runs: int = 1, *,
                   rate=None, epochs=None, what: str = "training time", compiled: bool | None = None) -> str:
    """One line for the top of a training cell: how long `runs` trainings will take here in this
    profile, from a measured rate, and what the smaller profiles would cost instead. The rate is
    timed eagerly; compiled=True says so, for a run that will use torch.compile (default: as
    train_in_profile decides, compiles_by_default).
    For another model than the profile's ViT: rate(profile, device) -> seconds per image and
    epochs(profile) (helpers.teacher.estimated_teacher_time does this for the CNN teacher).

    Notebooks: used in 00, 02, 03, 04, 05.
    """
    from helpers.profiles import PROFILES

    device = torch.device(device) if device else pick_device()
    compiled = compiles_by_default(profile, device) if compiled is None else compiled

    rate = rate or (lambda p, d: seconds_per_image(p, recipe, d, teacher))
    epochs = epochs or (lambda p: p.epochs)

    def minutes(p: Profile) -> float:
        return runs * rate(p, device) * p.train_size * epochs(p) / 60

    # Measuring builds models and draws batches: the estimate must not change what training draws.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        here = minutes(profile)
        cheaper = [f"{name}: about {_duration(minutes(p))}" for name, p in PROFILES.items()
                   if p.train_size * epochs(p) < profile.train_size * epochs(profile) and name != "full"]
    return (f"Estimated {what} here ({device.type}, profile {profile.name}, {runs} run(s)): about "
            f"{_duration(here)}, measured from a few steps" + (f"; smaller profiles - {', '.join(cheaper)}" if cheaper else "")
            + (". Timed without torch.compile, which this run uses: it first compiles (tens of seconds), "
               "then trains faster" if compiled else "")
            + ". Finished runs are reused at once.")
