"""Train M ViTs of the same shape in the same steps: `fit_together`, M calls of `fit` in one.

A DeiT-Tiny at 32 px multiplies 192-wide matrices: far too small to fill a GPU. Stacking M
models' parameters (torch.func.stack_module_state) and running the course's own
VisionTransformer under torch.vmap(functional_call) turns every matrix product into one
batched product over the M models, so the chip does M models' work per kernel launch.

Each model keeps everything `fit` would give it: its recipe (augmentation, mixing, stochastic
depth, label smoothing, distillation), its seed, data order, learning-rate schedule, weight
decay and gradient clipping, and its own history in fit's format. Only the parameter shapes
must match (a distilled student, with its DIST token and head, trains in a group of its own).

Why the result equals M separate `fit` runs (tests/test_together.py checks it):
  * randomness: fit seeds the global RNGs per epoch from (seed, epoch) and then draws, from
    them, the batch augmentation and, in the forward pass, one drop-path mask per DropPath
    call with drop_prob > 0. Here each model owns a copy of those RNG states (_RandomStream),
    swapped in around its augmentation's draws and its masks, drawn with DropPath's own call in
    the forward's order; the masks then enter the stacked forward as inputs (_GivenDropPath).
    Applying the drawn augmentation runs once for the whole group (helpers.batch_augment; on a
    CPU in chunks of at most CPU_IMAGES_AT_ONCE images), image by image, so each model still gets
    exactly what its own transform would give.
    On the CPU the draws are identical to fit's. (On a GPU too in eager mode, up to the mask's
    dtype under bf16; torch.compile in fit replaces the masks' RNG, so there, as between any
    two compiled runs, they agree in distribution only.)
  * the loss is the sum of the M models' losses: model k's gradient is its own loss's gradient.
  * StackedAdamW is torch's AdamW (single-tensor path, the CPU default) written on stacked
    tensors, with each model's lr and weight decay; clipping is by each model's global norm.
  * what is not bit-identical: a batched matrix product may sum in another order than M single
    ones, so results agree to float rounding (the tests state the tolerance), not bit for bit.

Runs in one process (no DDP). With config.compile the stacked training forward (and so its
backward) is compiled with torch.compile, falling back to eager with a warning where it cannot;
the masks stay inputs drawn eagerly, so compiled and eager training draw the same numbers.
"""
from __future__ import annotations

import copy
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from helpers.batch_augment import (CPU_IMAGES_AT_ONCE, BatchAugment, apply_drawn, draws_ahead, per_model_view,
                                   sharing_groups)
from helpers.errors import differences, make_folder
from helpers.files import remove_leftover_temporaries, save_atomically, write_csv_atomically, write_json_atomically
from helpers.losses import classification_loss, split_outputs
from helpers.models import set_fused_attention
from helpers.precision import autocast_for, grad_scaler_for, loss_scale_record
from helpers.regularization import DropPath
from helpers.speed import sync
from helpers.train import (CHECKPOINT, COMPILE_NOTICE, HISTORY, HISTORY_CSV, NAN_CHECK_EVERY, NO_EVALUATION_IMAGES, CheckpointError,
                           TrainConfig, check_evaluation_batches, distributed, load_checkpoint, lr_at, param_groups,
                           holds_checkpoint, pick_device, prepare_eval, run_identity, seed_everything, compiled_or_as_is,
                           _stop_if_not_finite)

BETAS, EPS = (0.9, 0.999), 1e-8  # torch's AdamW defaults, which make_optimizer uses


@dataclass
class Member:
    """One model of a group, with what `fit` would be given for it (same meaning, same defaults)."""
    model: nn.Module
    train_batches: object  # TensorBatches or the like: len(), iteration, set_epoch(epoch)
    config: TrainConfig
    batch_transform: Callable | None = None
    loss_fn: Callable | None = None
    metadata: dict | None = None
    name: str | None = None  # its history goes to run_dir/<name>/ (default model-<k>)


# --- the same shape -------------------------------------------------------------------------

def check_same_shape(models) -> None:
    """Raise a ValueError naming the first difference if the models' parameters differ in name or shape."""
    reference = {n: tuple(p.shape) for n, p in models[0].named_parameters()}
    for k, model in enumerate(models[1:], start=1):
        shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
        differ = sorted(n for n in reference.keys() | shapes.keys() if reference.get(n) != shapes.get(n))
        if differ:
            first = differ[0]
            raise ValueError(
                f"Models trained together must have the same parameter shapes, but model {k} differs from "
                f"model 0 in {len(differ)} parameter(s), e.g. {first}: {shapes.get(first, 'missing')} vs "
                f"{reference.get(first, 'missing')}. Train each shape in its own group (one fit_together "
                f"call per shape); a distilled student (dist_token, head_dist) also needs its own group.")


# --- each model's own random numbers ---------------------------------------------------------

def _rng_state(cuda: bool):
    return torch.get_rng_state(), random.getstate(), torch.cuda.get_rng_state() if cuda else None


def _set_rng_state(state, cuda: bool) -> None:
    torch.set_rng_state(state[0])
    random.setstate(state[1])
    if cuda:
        torch.cuda.set_rng_state(state[2])


class _RandomStream:
    """One model's copy of the global RNG states that fit draws from (torch's CPU generator,
    Python's random, the CUDA generator when training there). `with stream:` swaps it in, and
    the caller's state back afterwards: M models' draws interleave without touching each other."""

    def __init__(self, seed: int, cuda: bool):
        self.cuda = cuda
        outer = _rng_state(cuda)
        seed_everything(seed)  # what fit does at the start of every epoch
        self.state = _rng_state(cuda)
        _set_rng_state(outer, cuda)

    def __enter__(self):
        self.outer = _rng_state(self.cuda)
        _set_rng_state(self.state, self.cuda)

    def __exit__(self, *exc):
        self.state = _rng_state(self.cuda)
        _set_rng_state(self.outer, self.cuda)


# --- drop-path masks as inputs -----------------------------------------------------------------

class _GivenDropPath(nn.Module):
    """DropPath with its masks given: `masks` (2, B, 1, 1), the attention branch's then the MLP's
    (Block calls its drop_path twice), and `keep` = 1 - drop_prob. Under vmap both are per model.
    It computes what DropPath does, x * mask / keep rounded once (see forward for CUDA); mask 1
    and keep 1 leave x as it is."""

    def __init__(self):
        super().__init__()
        self.register_buffer("masks", torch.ones(2, 1, 1, 1), persistent=False)
        self.register_buffer("keep", torch.ones(()), persistent=False)
        self.calls = 0

    def forward(self, x):
        if not self.training:
            return x
        mask, self.calls = self.masks[self.calls % 2], self.calls + 1
        # keep stays float32, as DropPath's Python float does: a bf16 tensor would round 0.9364 to
        # 0.9375, and dividing bf16 by a float32 tensor of another shape rounds it to bf16 too.
        # Bit for bit DropPath's on the CPU; on CUDA, which divides by a Python number as a multiply
        # by its reciprocal, within the last bit before the one rounding to bf16.
        return ((x * mask).float() / self.keep).to(x.dtype)


def _template(model: nn.Module) -> nn.Module:
    """A weightless copy of the model (on the meta device) whose DropPaths take given masks."""
    template = copy.deepcopy(model).to("meta")
    for block in template.blocks:
        block.drop_path = _GivenDropPath()
    # Under vmap on CUDA the fused attention kernels fail in backward (torch 2.11 on an H200, a GPU
    # window's log, told in README.md: "LSE is not correctly aligned (strideH)", and a dtype mismatch
    # in the math kernel under autocast), so the models trained together spell attention out, on
    # every device alike.
    return set_fused_attention(template, False)


def _linear_parameters(template: nn.Module) -> set[str]:
    """The names of the Linear layers' weights and biases. Under vmap, autocast sees a stacked Linear
    as a bf16 matmul and then an fp32 bias add, so its output would stay fp32 where one model's is
    bf16 (and the attention and MLP after it with it): fit_together casts these to autocast's dtype
    itself, a cast that gradients pass back through to the fp32 weights."""
    return {f"{name}.{kind}" for name, module in template.named_modules() if isinstance(module, nn.Linear)
            for kind in ("weight", "bias") if getattr(module, kind, None) is not None}


def _drop_probs(model: nn.Module) -> list[float]:
    """Each block's drop-path probability, in forward order."""
    if not all(isinstance(getattr(block, "drop_path", None), DropPath) for block in getattr(model, "blocks", [None])):
        raise TypeError("fit_together trains the course's VisionTransformer (helpers.models.build_vit), whose "
                        "blocks each hold one DropPath.")
    if any(isinstance(module, nn.Dropout) for module in model.modules()):
        raise ValueError("fit_together trains no model with dropout (Recipe.drop > 0): it would have to draw each "
                         "model's dropout masks as fit does, and does not. Train it alone with helpers.train.fit "
                         "(`python -m helpers ablate --together` does so by itself).")
    return [block.drop_path.drop_prob for block in model.blocks]


def _keeps(drop_probs: list[list[float]], device) -> torch.Tensor:
    """(M, depth) keep probabilities 1 - drop_prob, what DropPath divides by (made once, not every step)."""
    return torch.tensor([[1.0 - p for p in probs] for probs in drop_probs], dtype=torch.float32).to(device)


class _DropPathMasks:
    """The group's drop-path masks: one (M, depth, 2, B, 1, 1) buffer per batch size B, made once,
    that each model redraws in place at every step, as its DropPath calls would draw them and in
    the same order: DropPath's very call, bernoulli_ on a (B, 1, 1) tensor, once for attention and
    once for the MLP. Blocks with drop_prob 0 draw nothing (DropPath returns x untouched there)
    and keep masks of ones. The forward's inputs are views of the buffer: a step copies nothing
    and launches one kernel per mask drawn."""

    def __init__(self, drop_probs: list[list[float]], device, dtype):
        self.drop_probs, self.device, self.dtype = drop_probs, device, dtype
        self.keeps, self.buffers = _keeps(drop_probs, device), {}

    def _buffer(self, batch: int) -> tuple[dict, list]:
        if batch not in self.buffers:
            depth = len(self.drop_probs[0])
            masks = torch.ones(len(self.drop_probs), depth, 2, batch, 1, 1, device=self.device, dtype=self.dtype)
            draws = [[(masks[k, i, j], 1.0 - p) for i, p in enumerate(probs) if p > 0.0 for j in range(2)]
                     for k, probs in enumerate(self.drop_probs)]
            inputs = {}  # {name: (M, ...)} for functional_call
            for i in range(depth):
                inputs[f"blocks.{i}.drop_path.masks"] = masks[:, i]
                inputs[f"blocks.{i}.drop_path.keep"] = self.keeps[:, i]
            self.buffers[batch] = inputs, draws
        return self.buffers[batch]

    def draw(self, k: int, batch: int) -> None:
        """Model k's masks for this step, from the random state in place (its stream)."""
        for mask, keep in self._buffer(batch)[1][k]:
            mask.bernoulli_(keep)

    def inputs(self, batch: int) -> dict:
        return self._buffer(batch)[0]


def stacked_forward(template: nn.Module, params: dict, buffers: dict, images: torch.Tensor, per_model_images: bool):
    """All M models at once: outputs with a leading M dimension ((M, B, K), or a tuple of them
    for distilled students in training). images are (M, B, ...) if per_model_images, else (B, ...).

    Notebooks: built in 04 (vmap over stacked weights)."""
    with warnings.catch_warnings():
        # On the CPU, vmap has no batching rule for the fused attention kernel and loops over the
        # models inside it instead: correct, and only the CPU's speed suffers, so not worth a warning.
        warnings.filterwarnings("ignore", message=".*not yet implemented the batching rule.*")
        return _vmapped_forward(template, params, buffers, images, per_model_images)


def _vmapped_forward(template: nn.Module, params: dict, buffers: dict, images: torch.Tensor, per_model_images: bool):
    """stacked_forward without its warnings filter, which torch.compile cannot trace (a graph break
    that makes it give up on the whole function): what fit_together compiles."""
    for module in template.modules():
        if isinstance(module, _GivenDropPath):
            module.calls = 0

    def one_model(p, b, x):
        return functional_call(template, (p, b), (x,))

    return torch.vmap(one_model, in_dims=(0, 0, 0 if per_model_images else None))(params, buffers, images)


# --- one optimizer for all ---------------------------------------------------------------------

def _per_model(values, dtype, device) -> torch.Tensor:
    """(M,) Python floats -> an (M,) tensor on device, computed in double and rounded once, as torch
    rounds a Python scalar into a float32 op. On a GPU it is copied from pinned memory without
    waiting: a copy from ordinary (pageable) memory would wait for every kernel queued before it."""
    values = torch.tensor(values, dtype=torch.float64).to(dtype)
    return values.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else values


def _broadcast(per_model: torch.Tensor, tensors: list) -> list:
    """(M,) -> an (M, 1, ...) view per tensor, to multiply each stacked tensor by its model's factor
    (one view per number of dimensions, shared)."""
    views = {}
    return [views.setdefault(t.ndim, per_model_view(per_model, t.ndim)) for t in tensors]


class StackedAdamW:
    """AdamW on stacked parameters (M, ...), each model with its own lr and weight decay.

    AdamW is elementwise, so on stacked tensors it is M independent AdamWs. The arithmetic is
    torch's single-tensor AdamW (torch/optim/adam.py, _single_tensor_adam, decoupled decay),
    operation for operation; only lr-dependent factors become per-model tensors. Every step is a
    foreach call over all tensors, a dozen calls whatever the number of models or tensors: the
    moments', the same for every model, in a few kernels on a GPU; the lr-dependent ones multiply
    by (M, 1, ...) factors, which foreach handles tensor by tensor inside one call.
    `decay` names the parameters with weight decay (fit's param_groups: not norms, biases, tokens).
    """

    def __init__(self, params: dict, decay: set[str]):
        self.params, self.decay, self.step_count = params, decay, 0
        self.param_groups = [{"params": list(params.values())}]  # what torch.amp.GradScaler unscales
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}

    @torch.no_grad()
    def step(self, lrs: list[float], weight_decays: list[float]) -> None:
        self.step_count += 1
        beta1, beta2 = BETAS
        bias_correction1 = 1 - beta1 ** self.step_count
        bias_correction2_sqrt = (1 - beta2 ** self.step_count) ** 0.5
        some = next(iter(self.params.values()))  # the course's parameters share one dtype and device
        decay_factor = _per_model([1 - lr * wd for lr, wd in zip(lrs, weight_decays)], some.dtype, some.device)
        step_size = _per_model([-lr / bias_correction1 for lr in lrs], some.dtype, some.device)
        names = list(self.params)
        params, grads = [self.params[n] for n in names], [self.params[n].grad for n in names]
        exp_avgs, exp_avg_sqs = [self.exp_avg[n] for n in names], [self.exp_avg_sq[n] for n in names]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, bias_correction2_sqrt)
        torch._foreach_add_(denoms, EPS)
        decayed = [p for n, p in zip(names, params) if n in self.decay]
        if decayed:  # decoupled decay first, as torch's AdamW (the moments never read param)
            torch._foreach_mul_(decayed, _broadcast(decay_factor, decayed))
        # addcdiv_(exp_avg, denom, value=-step_size) computes param + (value * exp_avg) / denom
        updates = torch._foreach_mul(exp_avgs, _broadcast(step_size, exp_avgs))
        torch._foreach_div_(updates, denoms)
        torch._foreach_add_(params, updates)

    def zero_grad(self) -> None:
        for param in self.params.values():
            param.grad = None

    def state_dict(self) -> dict:
        return {"step": self.step_count, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step"]
        for name in self.params:
            self.exp_avg[name].copy_(state["exp_avg"][name])
            self.exp_avg_sq[name].copy_(state["exp_avg_sq"][name])


@torch.no_grad()
def clip_per_model(params: dict, max_norms: list[float | None]) -> None:
    """clip_grad_norm_ for each model on its own: the norm over all of model k's gradients."""
    grads = [p.grad for p in params.values()]
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])  # (P, M)
    total = torch.linalg.vector_norm(norms, dim=0)  # (M,): each model's global norm
    limits = _per_model([m or float("inf") for m in max_norms], total.dtype, total.device)  # None or 0: as fit, none
    coef = torch.clamp(limits / (total + 1e-6), max=1.0).to(grads[0].dtype)  # clip_grad_norm_'s formula
    torch._foreach_mul_(grads, _broadcast(coef, grads))


# --- the loop ---------------------------------------------------------------------------------

def _checked_members(members: list[Member]) -> list[Member]:
    if not members:
        raise ValueError("fit_together needs at least one Member.")
    if distributed()[1] > 1:
        raise RuntimeError("fit_together runs in one process; use fit for training under torchrun.")
    check_same_shape([m.model for m in members])
    if any(m.config.opt != "adamw" for m in members):
        raise ValueError("fit_together trains with AdamW only (its StackedAdamW): train a run with opt='sgd' alone "
                         "with helpers.train.fit (`python -m helpers ablate --together` does so by itself).")
    lengths = {len(m.train_batches) for m in members}
    for what in ("epochs", "batch_size", "compile"):
        values = {getattr(m.config, what) for m in members}
        if len(values) > 1:
            raise ValueError(f"Models trained together take the same steps, but their configs differ in "
                             f"{what}: {sorted(values)}. Group the runs by {what}.")
    if len(lengths) > 1 or 0 in lengths:
        raise ValueError(f"Every model needs the same number of (full) batches per epoch, not {sorted(lengths)}: "
                         f"give them training sets of the same size and the same batch size.")
    return members


def _lr_schedule(config: TrainConfig, steps_per_epoch: int):
    total, warmup = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch
    return lambda step: lr_at(step, total, warmup, config.scaled_lr, config.warmup_lr, config.min_lr)


@torch.no_grad()
def evaluate_together(template, params, buffers, batches, device, m: int) -> list[dict]:
    """helpers.train.evaluate for each model: mean cross-entropy and accuracy (%), summed alike."""
    template.eval()
    loss_sums, corrects, count = [0.0] * m, [0] * m, 0
    for images, labels in batches:
        images, labels = prepare_eval(images.to(device)), labels.to(device)
        logits = stacked_forward(template, params, buffers, images, per_model_images=False)
        for k in range(m):
            loss_sums[k] += F.cross_entropy(logits[k].float(), labels, reduction="sum").item()
            corrects[k] += (logits[k].argmax(-1) == labels).sum().item()
        count += len(labels)
    if count == 0:
        raise ValueError(NO_EVALUATION_IMAGES)
    return [{"val_loss": loss_sums[k] / count, "val_acc": 100.0 * corrects[k] / count} for k in range(m)]


def fit_together(members: list[Member], val_batches, *, run_dir=None, resume: bool = True, device=None,
                 log_epochs: bool = False) -> list[list[dict]]:
    """Train every member's model as `fit` would, all in the same steps; return their histories.

    Each history is fit's (epoch, train_loss, val_loss, val_acc, lr, seconds, train_seconds),
    plus `together`: how many models shared the steps (seconds are the group's). The trained
    weights are copied back into each member's model after every epoch. With run_dir, the group's
    checkpoint (run_dir/last.pt) is written every epoch and resumed like fit's, and each model's
    history.json/csv goes to run_dir/<name>/. The validation batches are shared.
    """
    members = _checked_members(members)
    check_evaluation_batches(val_batches)
    device = torch.device(device) if device else pick_device()
    m, cuda = len(members), device.type == "cuda"
    if cuda:  # as fit does: TF32 for what runs outside bf16 autocast (evaluation)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    models = [member.model.to(device) for member in members]
    template = _template(models[0])
    params, _ = stack_module_state(models)  # the course's ViT has no buffers
    decay_ids = {id(p) for p in param_groups(models[0], 1.0)[0]["params"]}
    optimizer = StackedAdamW(params, {n for n, p in models[0].named_parameters() if id(p) in decay_ids})
    transforms = [member.batch_transform or NORMALIZE_ONLY for member in members]
    losses = [member.loss_fn or _default_loss(member.config.smoothing) for member in members]
    configs = [member.config for member in members]
    # whose batches are augmented in one pass (helpers.batch_augment)
    groups = sharing_groups(transforms, max(1, CPU_IMAGES_AT_ONCE // configs[0].batch_size) if device.type == "cpu" else None)
    ahead = {k for k, transform in enumerate(transforms) if draws_ahead(transform)}  # decided once, not every step
    names = [member.name or f"model-{k}" for k, member in enumerate(members)]
    steps_per_epoch = len(members[0].train_batches)
    schedules = [_lr_schedule(c, steps_per_epoch) for c in configs]
    drop_probs = [_drop_probs(model) for model in models]
    # fp16's loss scale is one for the group: an overflow in any model skips the step for all
    autocast, scaler = autocast_for(device), grad_scaler_for(device)
    check_every = NAN_CHECK_EVERY.get(device.type, 1)
    with autocast:  # DropPath's masks have the activations' dtype: bf16 under autocast
        mask_dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else torch.float32
    masks = _DropPathMasks(drop_probs, device, mask_dtype)

    run_dir = make_folder(run_dir, "Choose another run folder (DEIT_RUNS)") if run_dir else None
    if run_dir:
        remove_leftover_temporaries(run_dir, [CHECKPOINT])
        for name in names:
            remove_leftover_temporaries(run_dir / name, [HISTORY, HISTORY_CSV])
    start_epoch, histories = 0, [[] for _ in members]
    if run_dir and holds_checkpoint(run_dir, resume):
        start_epoch, histories = _restore(run_dir, members, names, params, optimizer, scaler)

    linear = _linear_parameters(template) if mask_dtype != torch.float32 else set()  # under autocast only

    def train_forward(params, buffers, images):  # the template spells attention out: no warning to filter
        if linear:
            params = {name: p.to(mask_dtype) if name in linear else p for name, p in params.items()}
        return _vmapped_forward(template, params, buffers, images, per_model_images=True)
    if configs[0].compile and start_epoch < configs[0].epochs:
        if log_epochs:
            print(COMPILE_NOTICE, flush=True)
        example = _example_inputs(members[0], transforms[0], params, masks, device)
        train_forward = compiled_or_as_is(train_forward, example, autocast, optimizer.zero_grad, fullgraph=True)

    for epoch in range(start_epoch, configs[0].epochs):
        streams = [_RandomStream((c.seed * 1000 + epoch) * 1000, cuda) for c in configs]  # fit's seed, rank 0
        for member in members:
            if hasattr(member.train_batches, "set_epoch"):
                member.train_batches.set_epoch(epoch)
        template.train()
        sync(device)  # work still queued (the compile trial, the last evaluation) is not this epoch's
        started, loss_sum = time.perf_counter(), torch.zeros(m, device=device)
        for i, batches in enumerate(zip(*[member.train_batches for member in members])):
            step = epoch * steps_per_epoch + i
            lrs = [schedule(step) for schedule in schedules]
            inputs, targets = _augmented(batches, transforms, ahead, groups, streams, masks, device)
            with autocast:
                outputs = train_forward(params, masks.inputs(len(inputs[0])), inputs)
                loss = torch.stack([losses[k](_model_outputs(outputs, k), targets[k], inputs[k]) for k in range(m)])
            optimizer.zero_grad()
            scaler.scale(loss.sum()).backward()  # model k's parameters only see model k's loss
            scaler.unscale_(optimizer)  # fp16 only: clip the true gradients
            clip_per_model(params, [c.clip_grad for c in configs])
            scaler.step(optimizer, lrs, [c.weight_decay for c in configs])
            scaler.update()
            loss_sum += loss.detach().float()
            if i % check_every == 0 or i == steps_per_epoch - 1:
                for k in range(m):
                    _stop_if_not_finite(loss[k], f"for {names[k]} at epoch {epoch + 1}, step {i + 1}", lrs[k], run_dir)
        trained = time.perf_counter() - started
        evaluated = evaluate_together(template, params, {}, val_batches, device, m)
        scale = loss_scale_record(scaler)  # one for the group
        for k in range(m):
            record = {"epoch": epoch + 1, "train_loss": loss_sum[k].item() / steps_per_epoch, **evaluated[k],
                      "lr": lrs[k], "seconds": time.perf_counter() - started, "train_seconds": trained, "together": m,
                      **scale}
            # fp16 skips a step whose loss was not finite: the epoch's sum is what shows it (as in fit)
            _stop_if_not_finite(torch.tensor(record["train_loss"]), f"for {names[k]} in a step of epoch {epoch + 1}",
                                lrs[k], run_dir)
            _stop_if_not_finite(torch.tensor(record["val_loss"]), f"for {names[k]} after epoch {epoch + 1}",
                                lrs[k], run_dir, what="validation loss")
            histories[k].append(record)
        _copy_back(params, models)
        if log_epochs:
            print(f"epoch {epoch + 1}/{configs[0].epochs}: {m} models, val acc "
                  + " ".join(f"{h[-1]['val_acc']:.1f}" for h in histories) + f" ({trained:.0f} s)", flush=True)
        if run_dir:
            _save(run_dir, members, names, params, optimizer, scaler, epoch + 1, histories)
    _copy_back(params, models)
    return histories


# What fit does to a uint8 batch without a batch_transform
NORMALIZE_ONLY = BatchAugment(crop_flip=False, mixup=0.0, cutmix=0.0, smoothing=0.0, reprob=0.0)


def _augmented(batches, transforms, ahead: set, groups, streams, masks: _DropPathMasks, device):
    """Every model's augmented batch, stacked (M, B, ...), and its targets; draws its drop-path masks.

    Each model draws in its own stream, in fit's order: augmentation, then the masks. A transform
    that can draw ahead (helpers.batch_augment) only draws there; then each group of those is
    applied to its models' batches at once. Others run whole, one model at a time."""
    done, drawn, uint8 = {}, {}, {}
    for k, (images, labels) in enumerate(batches):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with streams[k]:
            if images.is_floating_point():  # augmented already, as fit takes them
                done[k] = images, labels
            elif k in ahead:
                drawn[k], uint8[k] = transforms[k].draw(images, labels), images
            else:
                done[k] = transforms[k](images, labels)
            masks.draw(k, len(done[k][0]) if k in done else len(images))  # a transform may change the batch size
    for group in groups:
        ready = [k for k in group if k in drawn]
        if ready:
            x, ys = apply_drawn([drawn[k] for k in ready], torch.stack([uint8[k] for k in ready]))
            done.update({k: (x[j], ys[j]) for j, k in enumerate(ready)})
    inputs = [done[k][0] for k in range(len(done))]
    return torch.stack(inputs), [done[k][1] for k in range(len(done))]


def _example_inputs(member: Member, transform, params, masks: _DropPathMasks, device) -> tuple:
    """Arguments like a training step's, for compiling it: member's first batch as every model's."""
    images, labels = next(iter(member.train_batches))
    images, labels = images.to(device), labels.to(device)
    x = images if images.is_floating_point() else transform(images, labels)[0]
    m = len(masks.drop_probs)
    for k in range(m):
        masks.draw(k, len(x))
    return params, masks.inputs(len(x)), x.expand(m, *x.shape).contiguous()


def _default_loss(smoothing: float):
    def loss_fn(outputs, targets, images):  # fit's default
        return classification_loss(outputs, targets, smoothing)
    return loss_fn


def _model_outputs(outputs, k: int):
    """Model k's outputs: logits, or (cls_logits, dist_logits) for a distilled student in training."""
    cls_logits, dist_logits = split_outputs(outputs)
    return cls_logits[k] if dist_logits is None else (cls_logits[k], dist_logits[k])


@torch.no_grad()
def _copy_back(params: dict, models: list[nn.Module]) -> None:
    for k, model in enumerate(models):
        for name, p in model.named_parameters():
            p.copy_(params[name][k])


def _save(run_dir: Path, members, names, params, optimizer, scaler, epoch: int, histories) -> None:
    identities = [run_identity(mb.config, mb.metadata) for mb in members]
    save_atomically({"params": params, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                     "epoch": epoch, "names": names, "histories": histories, "identities": identities},
                    run_dir / CHECKPOINT)
    for member, name, history in zip(members, names, histories):
        write_json_atomically({"config": asdict(member.config), "metadata": member.metadata or {},
                               "history": history}, run_dir / name / HISTORY)
        write_csv_atomically(history, run_dir / name / HISTORY_CSV)


def _restore(run_dir: Path, members, names, params, optimizer, scaler):
    state = load_checkpoint(run_dir / CHECKPOINT, needs=("params", "optimizer", "epoch", "histories"))
    now = [run_identity(mb.config, mb.metadata) for mb in members]
    saved = state.get("identities")
    if saved != now:
        if state.get("names") != names or saved is None:
            how = f"its runs are {state.get('names')}, these are {names}"
        else:
            how = "; ".join(f"run {name}: {differences(before, after)}".rstrip()
                            for name, before, after in zip(names, saved, now) if before != after)
        raise CheckpointError(f"{run_dir / CHECKPOINT} was written by another group of runs ({how}). "
                              f"Use a new run_dir, or delete that folder to start over.")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state["params"][name])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):  # fp16's loss scale
        scaler.load_state_dict(state["scaler"])
    return state["epoch"], state["histories"]
