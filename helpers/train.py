"""The training loop: AdamW, warmup + cosine, clipping, evaluation, checkpoints and resume.

Defaults are DeiT's (Touvron et al., 2021, Table 9): AdamW, lr 5e-4 x batch/512, weight
decay 0.05, 5 warmup epochs, cosine, label smoothing 0.1; the cosine ends at 1e-5, the --min-lr
default of DeiT's main.py (Table 9 gives no end). Gradient clipping at 1.0
keeps the short CPU runs stable. The learning rate changes every step, and the cosine starts
after the warmup; DeiT's timm scheduler steps once per epoch and counts the warmup epochs in its
cosine (notebook 04 shows the difference).
"""
from __future__ import annotations

import functools
import gc
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from helpers.augment import normalize
from helpers.files import (remove_leftover_temporaries, save_atomically, write_csv_atomically,
                           write_json_atomically)
from helpers.constants import OPTIMIZERS
from helpers.errors import CourseError, check_choice, differences, make_folder
from helpers.losses import classification_loss
from helpers.precision import autocast_for, grad_scaler_for, loss_scale_record
from helpers.speed import sync
from helpers.weight_average import decay_key, ema_key

CHECKPOINT = "last.pt"
HISTORY = "history.json"
HISTORY_CSV = "history.csv"
RUN_FILES = (CHECKPOINT, HISTORY, HISTORY_CSV)


class CheckpointError(CourseError, RuntimeError):
    """A checkpoint could not be used; the message says what to do. The file is left in place."""


@dataclass
class TrainConfig:
    """Notebooks: used in 03, 04."""
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4  # for batch 512; scaled linearly with the batch size, as in DeiT
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    clip_grad: float | None = 1.0
    smoothing: float = 0.1  # used when targets are class indices; mixed targets carry their own
    seed: int = 0
    compile: bool = False  # torch.compile; falls back to eager where it cannot compile
    opt: str = "adamw"  # main.py's --opt: "adamw", or "sgd" (Table 8's "SGD for pre-training" row)
    momentum: float = 0.9  # SGD's (main.py's --momentum); AdamW ignores it

    def __post_init__(self):
        check_choice("opt", self.opt, OPTIMIZERS)
        if not 0 <= self.momentum < 1:  # at 1 the buffer never forgets, beyond it the steps grow
            raise ValueError(f"momentum must lie in [0, 1), not {self.momentum} (DeiT's is 0.9).")

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / 512


def pick_device() -> torch.device:
    """Notebooks: used in 04."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bars_wanted(progress: bool) -> bool:
    """Progress bars, unless tqdm's own switch TQDM_DISABLE=1 is set: its notebook bars (what
    tqdm.auto draws in Jupyter) ignore that variable, so it is read here."""
    return progress and os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("1", "true", "yes")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only: not on norms, biases, tokens or position embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("cls_token", "dist_token", "pos_embed"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float,
          warmup_lr: float = 1e-6, min_lr: float = 1e-5) -> float:
    """Linear warmup from warmup_lr to peak, then half a cosine from peak down to min_lr.

    Notebooks: used in 04.
    """
    if step < warmup_steps:
        return warmup_lr + (peak - warmup_lr) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (peak - min_lr) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def prepare_eval(images: torch.Tensor) -> torch.Tensor:
    """uint8 batches become normalized floats; float batches (from PIL transforms) pass through."""
    return images if images.is_floating_point() else normalize(images)


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) in a single process."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: list[float], device) -> list[float]:
    """Sum a few numbers over all processes (no-op in a single process)."""
    if distributed()[1] == 1:
        return values
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


EVAL_BATCH = 500  # images per evaluation batch: no gradients, so larger than a training batch
NO_EVALUATION_IMAGES = ("No images to evaluate: the batches were empty. Pass a split with images "
                        "(for example TensorBatches(load_cifar10('test'), 500, shuffle=False)).")


def check_evaluation_batches(batches) -> None:
    """Refuse empty evaluation data before any training, not after the first epoch's."""
    if hasattr(batches, "__len__") and len(batches) == 0:
        raise ValueError(NO_EVALUATION_IMAGES)


@torch.no_grad()
def evaluate(model: nn.Module, batches, device=None) -> dict:
    """Mean cross-entropy and accuracy (%) over all batches (of all processes under DDP)."""
    device = device or next(model.parameters()).device
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for images, labels in batches:
        images, labels = prepare_eval(images.to(device)), labels.to(device)
        logits = model(images)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        count += len(labels)
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], device)
    if count == 0:
        raise ValueError(NO_EVALUATION_IMAGES)
    return {"val_loss": loss_sum / count, "val_acc": 100.0 * correct / count}


COMPILE_NOTICE = "Compiling with torch.compile before the first epoch..."  # it shows no progress bar
COMPILE_FALLBACK = "torch.compile is not usable here"  # the warning's start, for callers that check


def compiled_or_eager(model: nn.Module, example: torch.Tensor, autocast=None) -> nn.Module:
    """torch.compile(model) if it compiles and trains here; otherwise the model as it is, with a warning.

    `example` should be a full training batch, run under the training step's autocast: one
    forward and backward pass then compiles the very graph training uses. (A tiny no-grad
    example would compile an inference graph, then recompile at the first step with the batch
    size as a dynamic dimension.) Shapes stay static; the trial's gradients are cleared.
    """
    return compiled_or_as_is(model, (example,), autocast, lambda: model.zero_grad(set_to_none=True))


def compiled_or_as_is(fn, example: tuple, autocast, clear_grads, fullgraph: bool = False):
    """compiled_or_eager for any function of tensors: torch.compile(fn), tried once forward and
    backward on `example` (its outputs: a tensor or a tuple of them), else fn with a warning.
    clear_grads() removes the trial's gradients, whatever happens. fullgraph=True makes a graph
    break an error (so a fallback), where torch.compile may otherwise give up on fn silently.
    Running out of GPU memory is raised, not taken for a compile failure."""
    import contextlib
    import warnings
    try:
        compiled = torch.compile(fn, dynamic=False, fullgraph=fullgraph)
        with autocast or contextlib.nullcontext():
            outputs = compiled(*example)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        sum(o.float().sum() for o in outputs).backward()
        return compiled
    except Exception as err:
        out_of_memory = _out_of_memory(err)
        if out_of_memory is not None:  # the eager fallback would need at least as much: the caller decides
            raise out_of_memory
        warnings.warn(f"{COMPILE_FALLBACK} ({type(err).__name__}: {err}); training eagerly.")
        return fn
    finally:
        clear_grads()


def _out_of_memory(err: BaseException) -> torch.OutOfMemoryError | None:
    """The out-of-memory error behind err, if any: torch.compile's backends raise errors of their
    own with what failed inside them as the cause (raise ... from err), or only as the context
    (Dynamo's BackendCompilerFailed is raised `from None`)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, torch.OutOfMemoryError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "history")  # what fit saves every epoch


RESUME_FIX = "It was left untouched: replace it, or delete it (or use another folder) to train from scratch."


def load_checkpoint(path, needs=CHECKPOINT_KEYS, fix: str = RESUME_FIX) -> dict:
    """A checkpoint written by fit, or CheckpointError ending in `fix` (the file is left as it is)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"Checkpoint {path} cannot be read ({type(err).__name__}: {err}). {fix}") from None
    missing = [key for key in needs if key not in state] if isinstance(state, dict) else None
    if missing is None or missing:
        held = f"a {type(state).__name__}" if missing is None else f"no {', '.join(missing)}"
        raise CheckpointError(f"{path} is not a training checkpoint of this course (it holds {held}). {fix}")
    return state


# How a run is executed, not what it trains: a resume may change these.
RUNTIME_OPTIONS = ("compile",)
# Metadata a resume must match where the run recorded it: its number of training images and
# their size (helpers.profile_runs) and its model's config (the CLI), so a mismatch is named, not a
# state_dict error.
RECORDED_IDENTITY = ("train_images", "img_size", "model")


def holds_checkpoint(run_dir: Path, resume: bool) -> bool:
    """Whether run_dir holds a checkpoint to resume. A run there without resume=True, or a run's
    history without its checkpoint (moved away, say), is refused: nothing is overwritten."""
    if (run_dir / CHECKPOINT).exists():
        if not resume:
            raise CheckpointError(f"{run_dir} already holds a run. Pass resume=True to continue it, "
                                  f"or choose a new run_dir (nothing was overwritten).")
        return True
    if left := [name for name in (HISTORY, HISTORY_CSV) if (run_dir / name).exists()]:
        raise CheckpointError(f"{run_dir} holds a run's {' and '.join(left)} but no {CHECKPOINT} to resume it from. "
                              f"Choose a new run folder, or move those files away to train there from scratch "
                              f"(nothing was overwritten).")
    return False


def run_identity(config: TrainConfig, metadata: dict | None) -> dict:
    """What a checkpoint must match to be resumed: the training config without runtime options,
    the settings of the recipe that change training (metadata["recipe"], None when the run has
    none) and, where recorded, RECORDED_IDENTITY's metadata."""
    from helpers.recipe import comparable_recipe

    identity = {k: v for k, v in asdict(config).items() if k not in RUNTIME_OPTIONS}
    recipe = (metadata or {}).get("recipe")
    identity["recipe"] = None if recipe is None else comparable_recipe(recipe)
    for key in RECORDED_IDENTITY:
        if key in (metadata or {}):
            identity[key] = metadata[key]
    return identity


def _restore(run_dir: Path, model, optimizer, scaler, config: TrainConfig, metadata: dict | None, averages=()):
    state = load_checkpoint(run_dir / CHECKPOINT)
    # Fields added to TrainConfig or Recipe after the checkpoint was written take their defaults.
    saved_config = TrainConfig(**state.get("config", {}))
    saved, now = run_identity(saved_config, state.get("metadata")), run_identity(config, metadata)
    for key in RECORDED_IDENTITY:
        if key not in saved:  # written before runs recorded it
            now.pop(key, None)
    if saved != now:
        raise CheckpointError(f"{run_dir / CHECKPOINT} was written by a run with another config or recipe; "
                              f"{differences(saved, now)}Use a new run_dir, or delete that folder to start over.")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(f"{run_dir / CHECKPOINT} does not fit this model ({err}). "
                              f"Use a new run_dir for a different model.") from None
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):  # fp16's loss scale; none in a bf16 or fp32 run's checkpoint
        scaler.load_state_dict(state["scaler"])
    saved_averages = state.get("averages", {})
    left_out = sorted(set(saved_averages) - {decay_key(a.decay) for a in averages})
    if left_out:  # the next checkpoint would be written without them
        raise CheckpointError(
            f"{run_dir / CHECKPOINT} also keeps weight averages with decay {', '.join(left_out)}: pass them again "
            f"to resume it, so that they are not lost (train_in_profile(..., ema_decays=...); on the command "
            f"line --model-ema-decay), or use a new run_dir.")
    for average in averages:
        key = decay_key(average.decay)
        if key not in saved_averages:  # an average started mid-run would not be the run's average
            raise CheckpointError(
                f"{run_dir / CHECKPOINT} holds no weight average with decay {key} (it holds "
                f"{', '.join(saved_averages) or 'none'}): an average cannot join a run halfway. Use a new "
                f"run_dir to train with it from the start, or leave it out to resume this run.")
        average.load_state_dict(saved_averages[key])
    return state["epoch"], state["history"]


NAN_CHECK_EVERY = {"cuda": 50}  # steps between NaN checks of the loss: one waits for the GPU
POSTFIX_EVERY = 20  # steps between updates of the progress bar's loss, at most (tqdm redraws each time)


class GPUMemoryError(CourseError, torch.OutOfMemoryError):
    """A training run ran out of GPU memory; the message names smaller settings that fit. Still an
    OutOfMemoryError, for callers that give a smaller run a try."""


def explains_out_of_memory(fit):
    """fit, with an out-of-memory error turned into one that names the fix: a laptop GPU of a few
    GiB may not hold the full profile's batches of 512 images."""
    @functools.wraps(fit)
    def fit_or_explain(model, train_batches, val_batches, config: TrainConfig, **kwargs):
        try:
            return fit(model, train_batches, val_batches, config, **kwargs)
        except GPUMemoryError:
            raise
        except torch.OutOfMemoryError as err:
            what = str(err).splitlines()[0] if str(err) else "out of memory"
        # Raised out of the except block, whose traceback holds the step's tensors: freed now.
        model.zero_grad(set_to_none=True)
        gc.collect()
        device = torch.device(kwargs.get("device") or pick_device())
        if device.type == "cuda":
            torch.cuda.empty_cache()
            gpu = torch.cuda.get_device_properties(device)
            where = f"The GPU ({gpu.name}, {gpu.total_memory / 2 ** 30:.1f} GiB)"
        else:
            where = f"The {device.type} device"
        half = max(1, config.batch_size // 2)
        raise GPUMemoryError(
            f"{where} ran out of memory in a run with batches of {config.batch_size} images ({what}). "
            f"A run with a folder keeps its finished epochs. Close other programs that use the GPU, or "
            f"train smaller: the cpu profile's smaller model and batches (restart Jupyter with "
            f"DEIT_PROFILE=cpu; on the command line, --profile cpu), or with `python -m helpers train`, "
            f"batches of {half} (--batch-size {half}; the learning rate follows the batch size).")
    return fit_or_explain


@explains_out_of_memory
def fit(model: nn.Module, train_batches, val_batches, config: TrainConfig, *,
        batch_transform=None, loss_fn=None, run_dir=None, resume: bool = True,
        progress: bool = True, log_epochs: bool | None = None, device=None,
        metadata: dict | None = None, on_epoch=None, optimizer_factory=None, lr_schedule=None,
        averages=()) -> list[dict]:
    """Train `model` and return its history: one dict per epoch.

    train_batches yields (images, labels): uint8 images go through batch_transform (default:
    normalize only), float images are used as they are. loss_fn(outputs, targets, images)
    defaults to classification_loss. With run_dir, a checkpoint and history.json are written
    every epoch and an existing checkpoint is resumed; every epoch's randomness is seeded from
    (seed, epoch, rank), so a resumed run ends with the same history as an uninterrupted one.
    Under torchrun the model is wrapped in DistributedDataParallel, metrics are summed over
    processes, and only rank 0 writes files and prints. `metadata` (e.g. the model's config)
    is stored in the checkpoint and history.json. progress shows a tqdm bar per epoch and
    log_epochs (default: as progress) prints one line per epoch. on_epoch(history) is called
    after every epoch (rank 0 only), e.g. to redraw live curves.

    The optimizer and the learning-rate schedule are DeiT's unless injected (the CNN teacher
    trains with SGD and its own schedule): optimizer_factory(model, device) -> optimizer, and
    lr_schedule(step, total_steps) -> learning rate. Each epoch's record holds `seconds` (the
    whole epoch) and `train_seconds` (before evaluation).

    `averages`: helpers.weight_average.WeightAverage objects made from the model before training,
    updated after every step, saved in the checkpoint and validated every epoch (their
    val_loss/val_acc under keys from helpers.weight_average.ema_key); the model trains as without.

    Notebooks: used in 03.
    """
    from tqdm.auto import tqdm

    check_evaluation_batches(val_batches)

    rank, world = distributed()
    device = torch.device(device) if device else pick_device()
    model.to(device)
    for average in averages:
        average.module.to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    peak_lr = config.scaled_lr * world  # DeiT scales by the global batch, all processes together
    optimizer = (optimizer_factory or (lambda m, d: make_optimizer(m, config, peak_lr, d)))(model, device)
    transform = batch_transform or (lambda images, labels: (normalize(images), labels))
    if loss_fn is None:
        def loss_fn(outputs, targets, images):
            return classification_loss(outputs, targets, config.smoothing)
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise ValueError(f"The training data gives no batch of {config.batch_size} images (full batches "
                         f"only): use a smaller batch size or more training images.")
    total_steps, warmup_steps = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch
    if lr_schedule is None:
        def lr_schedule(step, total):
            return lr_at(step, total, warmup_steps, peak_lr, config.warmup_lr, config.min_lr)
    log_epochs = (progress if log_epochs is None else log_epochs) and rank == 0
    check_every = NAN_CHECK_EVERY.get(device.type, 1)
    drawing = bars_wanted(progress and rank == 0)  # a progress bar, and its loss

    start_epoch, history, scaler = 0, [], grad_scaler_for(device)
    run_dir = Path(run_dir) if run_dir else None
    if run_dir and rank == 0:  # before any training: an epoch's work must find its checkpoint's folder
        make_folder(run_dir, "Choose another run folder (on the command line: --output-dir, or DEIT_RUNS)")
        remove_leftover_temporaries(run_dir, RUN_FILES)
    if run_dir and holds_checkpoint(run_dir, resume):
        start_epoch, history = _restore(run_dir, model, optimizer, scaler, config, metadata, averages)
        if start_epoch and log_epochs:
            print(f"Resumed from {run_dir / CHECKPOINT} after epoch {start_epoch}.")

    network = model
    if world > 1:
        network = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if start_epoch == 0:  # DDP gave every process rank 0's weights: the averages start from them too
            for average in averages:
                average.restart(model)
    autocast = autocast_for(device)
    if config.compile and start_epoch < config.epochs:
        if log_epochs:
            print(COMPILE_NOTICE, flush=True)
        network = compiled_or_eager(network, transform(*next(iter(train_batches)))[0].to(device), autocast)
    for epoch in range(start_epoch, config.epochs):
        seed_everything((config.seed * 1000 + epoch) * 1000 + rank)  # copies differ across ranks
        if hasattr(train_batches, "set_epoch"):
            train_batches.set_epoch(epoch)
        network.train()
        sync(device)  # work still queued (the compile trial, the last evaluation) is not this epoch's
        started, loss_sum = time.perf_counter(), torch.zeros((), device=device)
        bar = tqdm(train_batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not drawing)
        for i, (images, labels) in enumerate(bar):
            step = epoch * steps_per_epoch + i
            lr = lr_schedule(step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            inputs, targets = (images, labels) if images.is_floating_point() else transform(images, labels)
            loss = train_step(network, optimizer, inputs, targets, loss_fn, config.clip_grad, autocast, scaler)
            loss_sum += loss.detach()
            for average in averages:
                average.update(model)
            if i % check_every == 0 or i == steps_per_epoch - 1:
                _stop_if_not_finite(loss, f"at epoch {epoch + 1}, step {i + 1}", lr, run_dir)
            # the bar's loss only where the check above has waited for the GPU already (every 50 steps there)
            if drawing and i % max(POSTFIX_EVERY, check_every) == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        train_loss = all_reduce_sum([loss_sum.item() / steps_per_epoch], device)[0] / world
        trained = time.perf_counter() - started  # the loss's .item() waited for the GPU
        # A step's loss that was not finite, whichever step: in fp16 its update was skipped, so the
        # weights stay finite and the checks every check_every steps may not have seen it.
        _stop_if_not_finite(torch.tensor(train_loss), f"in a step of epoch {epoch + 1}", lr, run_dir, what="loss")
        record = {"epoch": epoch + 1, "train_loss": train_loss, **evaluate(model, val_batches, device),
                  "lr": lr, "seconds": time.perf_counter() - started, "train_seconds": trained,
                  **loss_scale_record(scaler), **_averages_record(averages, val_batches, device)}
        _stop_if_not_finite(torch.tensor(record["val_loss"]), f"on the validation images after epoch {epoch + 1}",
                            lr, run_dir, what="validation loss")
        history.append(record)
        if log_epochs:
            print(f"epoch {epoch + 1:3d}/{config.epochs}  train loss {record['train_loss']:.3f}  "
                  f"val loss {record['val_loss']:.3f}  val acc {record['val_acc']:5.1f}%"
                  + "".join(f"  ema {a.decay:g} {record[ema_key(a.decay, 'val_acc')]:5.1f}%" for a in averages)
                  + f"  ({record['seconds']:.0f} s)", flush=True)
        if run_dir and rank == 0:
            save_atomically({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scaler": scaler.state_dict(), "epoch": epoch + 1, "history": history,
                             "config": asdict(config), "metadata": metadata or {},
                             "averages": {decay_key(a.decay): a.state_dict() for a in averages}}, run_dir / CHECKPOINT)
            write_json_atomically({"config": asdict(config), "metadata": metadata or {}, "history": history},
                                  run_dir / HISTORY)
            write_csv_atomically(history, run_dir / HISTORY_CSV)
        if on_epoch is not None and rank == 0:
            on_epoch(history)
    return history


def _averages_record(averages, val_batches, device) -> dict:
    """Each weight average's validation loss and accuracy, under ema_key's names."""
    record = {}
    for average in averages:
        for metric, value in evaluate(average.module, val_batches, device).items():
            record[ema_key(average.decay, metric)] = value
    return record


def train_step(network, optimizer, inputs, targets, loss_fn, clip_grad, autocast, scaler) -> torch.Tensor:
    """One optimizer step; returns the loss (still on the device: reading it would wait for the GPU).
    `autocast` and `scaler` come from helpers.precision (autocast_for, grad_scaler_for); the scaler
    only acts in fp16, where it scales the loss and skips a step whose gradients overflowed.

    Notebooks: used in 04.
    """
    with autocast:
        loss = loss_fn(network(inputs), targets, inputs)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(network.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def make_optimizer(model: nn.Module, config: TrainConfig, lr: float, device: torch.device):
    """AdamW (or, with config.opt "sgd", SGD with Nesterov momentum: what timm's "sgd", and so
    DeiT's --opt sgd, builds) without decay on norms/biases/tokens; fused on CUDA (the whole
    update in a few multi-tensor kernels, where the default foreach path launches one per operation).

    Notebooks: used in 04.
    """
    groups, fused = param_groups(model, config.weight_decay), device.type == "cuda"
    if config.opt == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True, fused=fused)
    return torch.optim.AdamW(groups, lr=lr, fused=fused)


def _stop_if_not_finite(loss: torch.Tensor, when: str, lr: float, run_dir, what: str = "loss") -> None:
    """Stop a diverged run before it is saved, naming the last good checkpoint if there is one."""
    if torch.isfinite(loss):
        return
    good = run_dir is not None and (Path(run_dir) / CHECKPOINT).exists()
    where = f" The last good checkpoint is {Path(run_dir) / CHECKPOINT}; it was left as it was." if good else ""
    raise FloatingPointError(
        f"The {what} became {loss.item()} {when} (lr {lr:.2e}). "
        f"Lower the learning rate or check the inputs for NaN.{where}")
