"""Training throughput (images/s) of four pipelines, measured in one run on one device.

  a  the seed's pipeline: PIL images through timm's create_transform (RandAugment, erasing)
     in DataLoader workers, timm's Mixup on the batch, then the training step
  b  the model alone: a batch already on the device, no augmentation (the ceiling)
  c  ours: uint8 data on the device, per-image augmentation on the device (helpers.recipe)
  c+ ours with the CNN teacher's forward pass in the same step (hard distillation)

    python benchmarks/throughput.py                      # DeiT-Tiny at 32 px, batch 1024 on a GPU
    python benchmarks/throughput.py --steps 3 --batch-size 64 --workers 2   # a quick CPU look
    python benchmarks/throughput.py --output results/throughput.json --trace results/throughput_profile.txt

All rows use the same model (c+ its distilled version: one more token and head), batch size,
optimizer and precision (helpers.precision: bf16 autocast on recent GPUs); torch.compile
applies to b, c and c+ when --compile is on (default: on with a GPU). Compilation is timed on
its own (`compile_s`) and never counts in a row's images/s. --trace saves a torch.profiler
summary of rows c and c+: where a step's time goes, operator by operator.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from helpers.cli import non_negative_int, positive_int, output_file
from helpers.data import load_cifar10
from helpers.errors import reports_errors
from helpers.files import write_json_atomically
from helpers.files import write_text_atomically
from helpers.models import count_parameters
from helpers.profiles import PROFILES, get_profile
from helpers.provenance import provenance
from helpers.recipe import Recipe
from helpers.speed import (count_host_syncs, endless, operator_table, profiler_activities, profiler_failed,
                           starter_loader, sync, time_pipeline)
from helpers.precision import autocast_for, grad_scaler_for, precision_name
from helpers.train import TrainConfig, compiled_or_eager, make_optimizer, pick_device, train_step


def profiler_summary(batches, prepare, step, device, steps: int = 5) -> str:
    """torch.profiler's table of the operators that take the most time over `steps` steps."""
    from torch.profiler import profile

    iterator = iter(batches)
    try:  # a profiler that cannot run here must not cost the measured rows
        with profile(activities=profiler_activities(device)) as prof:
            for _ in range(steps):
                step(*prepare(*next(iterator)))
            sync(device)
    except Exception as err:
        return profiler_failed(err)
    return operator_table(prof, device)


@reports_errors
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=list(PROFILES), default="full",
                        help="whose model, teacher and training data (default: full, DeiT-Tiny)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: 1024 on a GPU, 64 on CPU")
    parser.add_argument("--steps", type=positive_int, default=None, help="timed steps per row (default 30 GPU / 3 CPU)")
    parser.add_argument("--warmup", type=non_negative_int, default=None)
    parser.add_argument("--workers", type=non_negative_int, default=None,
                        help="DataLoader workers for the seed's pipeline (default: 10, DeiT main.py's, or fewer cores)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--teacher-path", default=None, help="teacher checkpoint (default: an untrained one)")
    parser.add_argument("--output", type=output_file, help="write the table as JSON here")
    parser.add_argument("--trace", type=output_file, help="write a torch.profiler summary of rows c and c+ here")
    args = parser.parse_args(argv)
    device = pick_device()
    gpu = device.type == "cuda"
    batch = args.batch_size or (1024 if gpu else 64)
    steps, warmup = args.steps or (30 if gpu else 3), args.warmup or (10 if gpu else 1)
    use_compile = gpu if args.compile is None else args.compile
    workers = args.workers if args.workers is not None else min(10, len(os.sched_getaffinity(0)))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    profile = get_profile(args.profile)
    train = load_cifar10("train", n_per_class=profile.train_per_class)

    recipe = Recipe()
    config = TrainConfig(batch_size=batch)
    autocast = autocast_for(device)

    compile_seconds = {}

    def trainer(loss_fn, compile_it, recipe=recipe, row=None):
        torch.manual_seed(0)
        model = recipe.build_model(**profile.vit_sizes).to(device)
        optimizer, scaler = make_optimizer(model, config, config.scaled_lr, device), grad_scaler_for(device)
        network = model
        if compile_it:
            started = time.perf_counter()
            network = compiled_or_eager(model, torch.randn(batch, 3, 32, 32, device=device), autocast)
            sync(device)
            compile_seconds[row] = time.perf_counter() - started

        def step(inputs, targets):
            train_step(network, optimizer, inputs, targets, loss_fn, config.clip_grad, autocast, scaler)
        return model, step

    rows = {}
    plain_loss = recipe.loss_fn()

    # a: the seed's pipeline (eager, as the seed ran it).
    loader, mixup = starter_loader(train, batch, workers)
    _, step = trainer(plain_loss, compile_it=False)
    rows["a seed pipeline"] = time_pipeline(
        endless(loader), lambda x, y: mixup(x.to(device, non_blocking=True), y.to(device, non_blocking=True)),
        step, device, warmup, steps)
    del loader

    # b: the model alone on a fixed batch already on the device.
    fixed = torch.randn(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device)
    _, step = trainer(plain_loss, use_compile, row="b model alone")
    rows["b model alone"] = time_pipeline(iter(lambda: fixed, None), lambda x, y: (x, y), step, device, warmup, steps)

    # c and c+: our pipeline, without and with the teacher.
    batches = recipe.train_batches(train, batch).to(device)
    augment = recipe.batch_transform()
    _, step = trainer(plain_loss, use_compile, row="c ours")
    rows["c ours"] = time_pipeline(endless(batches), augment, step, device, warmup, steps)
    host_syncs = {"c ours": count_host_syncs(endless(batches), augment, step, device)}
    traces = [profiler_summary(endless(batches), augment, step, device)] if args.trace else []

    from helpers.teacher import FrozenTeacher, build_teacher, load_teacher, teacher_config
    # Speed does not depend on the weights: an untrained full-size teacher unless one is given.
    teacher = load_teacher(profile, path=args.teacher_path) if args.teacher_path else FrozenTeacher(
        build_teacher(teacher_config(profile)))
    teacher.to_device(device)
    distilled = recipe.but(distillation_type="hard")
    _, step = trainer(distilled.loss_fn(teacher), use_compile, distilled, row="c+ ours with teacher")
    rows["c+ ours with teacher"] = time_pipeline(endless(batches), augment, step, device, warmup, steps)
    host_syncs["c+ ours with teacher"] = count_host_syncs(endless(batches), augment, step, device)
    if args.trace:
        traces.append(profiler_summary(endless(batches), augment, step, device))
        write_text_atomically(f"torch.profiler summaries on {provenance()['device']}, batch {batch}, "
                              f"{'compiled' if use_compile else 'eager'}\n\n== c ours ==\n{traces[0]}\n\n"
                              f"== c+ ours with teacher ==\n{traces[1]}\n", args.trace)

    speed = {name: row["images_per_s"] for name, row in rows.items()}
    a, b, c = speed["a seed pipeline"], speed["b model alone"], speed["c ours"]
    print(f"\nViT of profile {profile.name} at 32 px ({count_parameters(recipe.build_model(**profile.vit_sizes)):,} "
          f"parameters), batch {batch}, "
          f"{precision_name(device)}, {'compiled' if use_compile else 'eager'}, on {provenance()['device']}\n")
    print(f"{'pipeline':24s} {'img/s':>10s} {'vs a':>7s} {'vs b':>7s} {'model share':>11s}")
    for name, value in speed.items():
        print(f"{name:24s} {value:10,.0f} {value / a:6.2f}x {value / b:6.2f}x {rows[name]['gpu_busy']:10.0%}")
    print(f"\nc/a = {c / a:.2f} (target >= 6 on an H100), c/b = {c / b:.2f} (target >= 0.9)")
    print(f"host syncs in 3 steps (CUDA's sync debug mode): {host_syncs}")
    for name, seconds in compile_seconds.items():
        print(f"compiling for {name}: {seconds:.1f} s (not counted above)")
    if args.output:
        write_json_atomically({"benchmark": "throughput", "profile": profile.name, "batch_size": batch,
                               "steps": steps, "warmup_steps": warmup, "seed_workers": workers,
                               "compile": use_compile, "compile_seconds": compile_seconds,
                               "host_syncs_in_3_steps": host_syncs,
                               "images_per_second": speed, "timings": rows,
                               "ratios": {"c/a": c / a, "c/b": c / b, "c+/b": speed["c+ ours with teacher"] / b},
                               **provenance()}, args.output)


if __name__ == "__main__":
    sys.exit(main())
