"""DeiT's CNN teacher, trained on CIFAR-10 inside the course (nothing is downloaded).

DeiT's teacher is a RegNetY-16GF pre-trained on ImageNet (Touvron et al., 2021, Sec. 5.2).
Here the teacher is timm's ResNet built from scratch and adapted to 32x32 images the usual
way for CIFAR (He et al., 2016, Sec. 4.2): a 3x3 stride-1 stem and no max-pool, so the
first stage still sees all 32x32 pixels instead of 8x8. The full profile uses exactly
ResNet-18's stages (11.2 M parameters); ci and cpu use thinner, shallower versions.

    python -m helpers teacher [--profile cpu] [--retrain]    # train or load, print accuracy

The checkpoint (weights, config, test accuracy) lives in runs/<profile>/teacher/teacher.pt;
later notebooks reuse it through load_or_train_teacher().
"""
from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from helpers.augment import normalize, random_crop_flip
from helpers.constants import RUNS
from helpers.data import TensorBatches
from helpers.profile_runs import estimated_time, profile_data, step_seconds, time_training_steps
from helpers.errors import CourseError, make_folder, reports_errors
from helpers.files import save_atomically
from helpers.losses import FrozenTeacher
from helpers.profiles import Profile, get_profile
from helpers.precision import autocast_for
from helpers.train import TrainConfig, fit, pick_device

CHECKPOINT_FORMAT = 1


class TeacherError(CourseError, RuntimeError):
    """A teacher checkpoint is missing or unusable; the message says how to get a good one."""


@dataclass(frozen=True)
class TeacherConfig:
    """Architecture and recipe: SGD + Nesterov, linear warmup then linear decay to zero."""
    layers: tuple = (2, 2, 2, 2)  # BasicBlocks per stage; (2, 2, 2, 2) is ResNet-18
    channels: tuple = (64, 128, 256, 512)
    epochs: int = 20
    batch_size: int = 512
    lr: float = 0.1  # per 128 images, scaled linearly with the batch size
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.2  # of all steps
    # No label smoothing: smoothed teachers distill worse (Mueller et al., 2019).
    label_smoothing: float = 0.0
    seed: int = 0

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / 128


# The teacher per profile. The full one is meant to reach >= 94 % in <= 60 s on one modern GPU
# (check with benchmarks/teacher.py); the small ones only need to beat the profile's ViT.
TEACHERS = {
    "ci": TeacherConfig(layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), epochs=6, batch_size=100),
    "cpu": TeacherConfig(layers=(1, 1, 1, 1), channels=(32, 64, 128, 256), epochs=15, batch_size=128),
    "full": TeacherConfig(),
}


def _profile(profile) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def teacher_config(profile=None, **overrides) -> TeacherConfig:
    """The profile's TeacherConfig, with any field overridden."""
    base = asdict(TEACHERS[_profile(profile).name])
    unknown = set(overrides) - set(base)
    if unknown:
        raise TypeError(f"Unknown TeacherConfig fields: {sorted(unknown)}.")
    return TeacherConfig(**{**base, **overrides})


def build_teacher(config: TeacherConfig | None = None, num_classes: int = 10) -> nn.Module:
    """timm's ResNet with BasicBlocks, with a 3x3 stride-1 stem and no max-pool for 32 px.

    Notebooks: used in 03.
    """
    from timm.models.resnet import BasicBlock, ResNet

    config = config or TEACHERS["full"]
    if len(config.layers) != len(config.channels):
        raise ValueError(f"layers {config.layers} and channels {config.channels} need one entry per stage.")
    # stem_type='deep' only so that timm sizes the stem's output (and stage 1's input) to
    # channels[0]; the deep stem itself is replaced by one 3x3 convolution just below.
    model = ResNet(BasicBlock, list(config.layers), num_classes=num_classes, channels=tuple(config.channels),
                   stem_type="deep", stem_width=config.channels[0] // 2)
    model.conv1 = nn.Conv2d(3, config.channels[0], kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy (%) of `model` on uint8 (N, 3, H, W) images already on the model's device."""
    model.eval()
    correct = 0
    for i in range(0, len(labels), batch_size):
        x = normalize(images[i:i + batch_size])
        if x.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(x.device):
            correct += (model(x).argmax(-1) == labels[i:i + batch_size]).sum().item()
    return 100.0 * correct / len(labels)


def sgd_nesterov(config: TeacherConfig):
    """optimizer_factory for fit: SGD with Nesterov momentum, no weight decay on BatchNorm and biases."""
    def make(model: nn.Module, device) -> torch.optim.Optimizer:
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        return torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                {"params": no_decay, "weight_decay": 0.0}],
                               lr=config.scaled_lr, momentum=config.momentum, nesterov=True)
    return make


def linear_warmup_then_decay(config: TeacherConfig):
    """lr_schedule for fit: linear up to the peak over warmup_fraction of the steps, then linearly to 0."""
    def lr(step: int, total: int) -> float:
        warmup = max(1, int(config.warmup_fraction * total))
        if step < warmup:
            return config.scaled_lr * (step + 1) / warmup
        return config.scaled_lr * (total - step) / max(1, total - warmup)
    return lr


def _crop_flip_normalize(images: torch.Tensor, labels: torch.Tensor):
    x = normalize(random_crop_flip(images, padding=4))
    # cuDNN's fastest convolutions want NHWC (channels-last) tensors
    return (x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x), labels


def _on_device(config: TeacherConfig, device: torch.device) -> nn.Module:
    """A new teacher on `device`: on a GPU channels-last, with cuDNN choosing its fastest kernels
    for these fixed shapes (it times the candidates at each shape's first step)."""
    model = build_teacher(config).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return model


def _cross_entropy(logits, labels, _images):
    return nn.functional.cross_entropy(logits, labels)


def teacher_seconds_per_image(profile=None, device=None) -> float:
    """Measured training time per image of the profile's teacher (a few steps, nothing saved)."""
    profile = _profile(profile)
    config = TEACHERS[profile.name]
    device = torch.device(device) if device else pick_device()
    model = _on_device(config, device)
    return time_training_steps(model, sgd_nesterov(config)(model, device), _crop_flip_normalize, _cross_entropy,
                               config.batch_size, device)


def estimated_teacher_time(profile=None, device=None) -> str:
    """estimated_time's line for training the profile's teacher here, from a measured rate.

    Notebooks: used in 03.
    """
    return estimated_time(_profile(profile), device=device, rate=teacher_seconds_per_image,
                          epochs=lambda p: TEACHERS[p.name].epochs, what="the teacher's training time",
                          compiled=False)  # the teacher trains eagerly


def first_steps_profile(profile=None, steps: int = 20, device=None, rows: int = 30) -> str:
    """torch.profiler over a new teacher's first `steps` training steps, its set-up included, in a
    process that has not trained one yet: where a run's first epoch spends its extra seconds
    (cuDNN timing its kernel candidates, CUDA loading its kernels, memory being reserved). The
    table is sorted by CPU time, where set-up shows; per-step wall times head it."""
    from torch.profiler import profile as profiling

    from helpers.speed import profiler_activities, profiler_failed

    profile = _profile(profile)
    config = TEACHERS[profile.name]
    device = torch.device(device) if device else pick_device()
    model = _on_device(config, device)
    try:  # a profiler that cannot run here gives its reason instead of a table
        with profiling(activities=profiler_activities(device)) as profiled:
            seconds = step_seconds(model, sgd_nesterov(config)(model, device), _crop_flip_normalize, _cross_entropy,
                                   config.batch_size, device, steps=steps)
    except Exception as err:
        return profiler_failed(err)
    later = seconds[1:] or seconds
    return (f"The first {len(seconds)} training steps of a new {profile.name}-profile teacher (batch {config.batch_size}) "
            f"on {_device_name(device)}, profiled (so slower than unprofiled): step 1 {seconds[0]:.2f} s, "
            f"steps 2-{len(seconds)} {sum(later) / len(later):.3f} s each.\n"
            + profiled.key_averages().table(sort_by="cpu_time_total", row_limit=rows))


def train_teacher(profile=None, config: TeacherConfig | None = None, *, device=None,
                  progress: bool = True, data=None, run_dir=None) -> tuple[nn.Module, dict]:
    """Train a teacher on the profile's CIFAR-10 subset; return (model, record).

    It trains through the course's one training loop (helpers.train.fit) with its own optimizer
    (SGD + Nesterov) and schedule; images sit on the device as uint8 and are cropped, flipped
    and normalized there; on a GPU the model runs channels-last under autocast
    (helpers.precision). `data` is (train, val, test). record holds val_acc (the held-out
    validation images, final epoch) and test_acc, seconds (training only: evaluation excluded),
    the per-epoch history and the device. With run_dir, every epoch is checkpointed there and an
    interrupted training resumes, as any run of fit does; its config is part of what must match.
    """
    profile = _profile(profile)
    config = config or TEACHERS[profile.name]
    device = torch.device(device) if device else pick_device()
    train, val, test = data or profile_data(profile)
    torch.manual_seed(config.seed)
    model = _on_device(config, device)
    loop = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, clip_grad=None,
                       smoothing=config.label_smoothing, seed=config.seed, warmup_epochs=0)
    history = fit(model, TensorBatches(train, config.batch_size, seed=config.seed).to(device),
                  TensorBatches(val, 1000, shuffle=False).to(device), loop,
                  batch_transform=_crop_flip_normalize, progress=False, log_epochs=progress, device=device,
                  optimizer_factory=sgd_nesterov(config), lr_schedule=linear_warmup_then_decay(config),
                  run_dir=run_dir, metadata={"model": asdict(config), "train_images": len(train)})
    seconds = sum(r["train_seconds"] for r in history)
    test_acc = accuracy(model, test.images.permute(0, 3, 1, 2).contiguous().to(device), test.labels.to(device))
    record = {"val_acc": history[-1]["val_acc"], "test_acc": test_acc, "seconds": seconds,
              "epochs": config.epochs, "history": history, "device": _device_name(device),
              "train_size": len(train), "val_size": len(val), "test_size": len(test),
              "config": asdict(config), "profile": profile.name}
    if progress:
        print(f"teacher: {test_acc:.1f}% test accuracy after {config.epochs} epochs ({seconds:.0f} s of "
              f"training on {record['device']})", flush=True)
    return model.to(memory_format=torch.contiguous_format).cpu(), record


def teacher_path(profile=None) -> Path:
    """Where the profile's teacher checkpoint lives.

    Notebooks: used in 03.
    """
    return RUNS / _profile(profile).name / "teacher" / "teacher.pt"


def save_teacher(model: nn.Module, record: dict, path) -> None:
    """Save a trained teacher at path; a teacher already there is kept as <name>.prev, not lost."""
    import timm

    path = Path(path)
    new = path.with_name(path.name + ".new")  # written whole before the old one moves: a failed save loses neither
    save_atomically({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), **record,
                     "versions": {"torch": str(torch.__version__), "timm": str(timm.__version__)}}, new)
    if path.exists():
        os.replace(path, path.with_name(path.name + ".prev"))
        print(f"The teacher that was at {path} is kept as {path.name}.prev.", flush=True)
    os.replace(new, path)


def _how_to_train(name: str) -> str:
    return (f"Train it with `python -m helpers teacher --profile {name} --retrain` or "
            f"load_or_train_teacher('{name}', retrain=True) (notebook 03 does this)")


def _unusable(path: Path, advice: str, reason: str, err: Exception):
    raise TeacherError(f"The teacher checkpoint {path} cannot be used ({reason}). It was left untouched. "
                       f"{advice}.") from None


def load_teacher(profile=None, *, path=None, config: TeacherConfig | None = None) -> FrozenTeacher:
    """The saved teacher of the profile, frozen. TeacherError when missing, unreadable or stale."""
    profile = _profile(profile)
    config = config or TEACHERS[profile.name]
    own = teacher_path(profile)
    path = Path(path) if path else own
    if path != own:  # a path of the user's: `python -m helpers teacher` would write the profile's own file
        use_own = f"Check the path, or leave out --teacher-path to use the profile's teacher at {own}, trained if missing"
        missing = f"{use_own} (from Python, train_if_missing=True trains one at this path)"
        unusable = f"{use_own} (from Python, retrain=True trains a new one here and keeps this file as {path.name}.bad)"
    else:
        missing = f"{_how_to_train(profile.name)}, or pass train_if_missing=True"
        unusable = f"{_how_to_train(profile.name)}; the unusable file is then kept as {path.name}.bad"
    if not path.exists():
        raise TeacherError(f"No teacher checkpoint at {path}. {missing}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or pickled objects we never save
        _unusable(path, unusable, f"truncated or not a teacher checkpoint: {type(err).__name__}", err)
    try:
        saved_config = TeacherConfig(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in state["config"].items()})
        model = build_teacher(saved_config)
        model.load_state_dict(state["model"])
    except Exception as err:  # a torch file, but not one of our teachers
        _unusable(path, unusable, f"it does not hold a teacher: {type(err).__name__}: "
                                      f"{str(err).splitlines()[0][:160]}", err)
    if saved_config != config:
        fix = (f"A teacher of another profile is used with that --profile. {use_own}" if path != own
               else _how_to_train(profile.name))
        raise TeacherError(f"{path} holds a teacher trained with another config:\n  saved: {saved_config}\n"
                           f"  now:   {config}\n{fix}.")
    info = {k: v for k, v in state.items() if k != "model"}
    return FrozenTeacher(model, info)


def load_or_train_teacher(profile=None, retrain: bool = False, *, train_if_missing: bool = False,
                          path=None, config: TeacherConfig | None = None, device=None,
                          progress: bool | None = None) -> FrozenTeacher:
    """The profile's teacher, frozen (eval mode, no gradients), on the CPU.

    Loads runs/<profile>/teacher/teacher.pt. A missing checkpoint is trained only with
    train_if_missing=True; an unreadable or outdated one raises TeacherError and is
    replaced only with retrain=True (an unreadable file is first moved to teacher.pt.bad, a
    good one to teacher.pt.prev).

    Notebooks: used in 03, 04.
    """
    profile = _profile(profile)
    config = config or TEACHERS[profile.name]
    path = Path(path) if path else teacher_path(profile)
    progress = profile.progress if progress is None else progress
    if not retrain:
        if path.exists() or not train_if_missing:
            return load_teacher(profile, path=path, config=config)
        print(f"No teacher at {path} yet: training one ({config.epochs} epochs).", flush=True)
    elif path.exists():
        try:
            load_teacher(profile, path=path, config=config)
            print(f"Retraining: replacing the teacher at {path}.", flush=True)
        except TeacherError:
            os.replace(path, path.with_name(path.name + ".bad"))
            print(f"Retraining: the unusable checkpoint was moved to {path.name}.bad.", flush=True)
    make_folder(path.parent, "Set DEIT_RUNS to a folder that can be written, or move that file away")  # before training
    training = training_folder(path)
    model, record = train_teacher(profile, config, device=device, progress=progress, run_dir=training)
    save_teacher(model, record, path)
    shutil.rmtree(training)  # its epochs' checkpoint only served an interrupted training
    return load_teacher(profile, path=path, config=config)


def training_folder(path: Path) -> Path:
    """Where the teacher saved at `path` is checkpointed while it trains: teacher-training/ beside
    teacher.pt, removed once the teacher is saved."""
    return path.with_name(f"{path.stem}-training")


@reports_errors
def main(argv=None) -> int:
    """`python -m helpers teacher [--profile P] [--retrain]`: train or load, print the accuracy."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers teacher",
                                     description="Train (or load) the CNN teacher of a profile.")
    parser.add_argument("--profile", default=None, help="ci, cpu or full (default: DEIT_PROFILE)")
    parser.add_argument("--retrain", action="store_true", help="train a new teacher over the saved one")
    args = parser.parse_args(argv)
    teacher = load_or_train_teacher(args.profile, retrain=args.retrain, train_if_missing=True, progress=True)
    print(f"teacher: {teacher.test_acc:.2f}% test accuracy, {teacher.info['seconds']:.0f} s on "
          f"{teacher.info['device']}, saved at {teacher_path(args.profile)}")
    return 0
