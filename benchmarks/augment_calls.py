"""Operator calls and CPU time of the batch augmentation, stage by stage.

    python -m benchmarks.augment_calls                       # batch 8 and 512, one thread
    python -m benchmarks.augment_calls --batch-sizes 1024

On a GPU machine every operator call costs the CPU a few microseconds to dispatch, and one that
makes a tensor on the GPU launches a kernel or a copy; a small model's step is short enough for
those calls to decide its speed (README, "What has been measured": row c is slower than row b).
They are counted here on the CPU, where they are the same: aten operators per call
(helpers.speed.operator_calls), and how many of them make a tensor on the device, views apart
("on GPU": kernel launches and copies, counted with the inputs on the `meta` device, which has
shapes but no data; the rest work out small per-image choices on the CPU there too). CPU
milliseconds per call (real tensors) at a small batch are mostly dispatch; at a large one mostly
arithmetic, which a GPU does instead. Ratios are against the plain recipe's transform (crop and
flip), measured in the same run. The last rows augment a group's batches at once, as models trained
together do (helpers.batch_augment): each model draws its own choices, then every stage runs once
for all of them; their numbers are per model.
"""
from __future__ import annotations

import argparse
import time

import torch

from helpers.augment import OPS_INCREASING, mix_batch, normalize, random_crop_flip, random_erase
from helpers.batch_augment import apply_drawn
from helpers.batch_randaugment import BatchRandAugment, _arguments, _slots, sample_ops
from helpers.cli import positive_int
from helpers.recipe import Recipe
from helpers.speed import operator_calls
from helpers.errors import reports_errors


def rand_augment_choices(batch: int, num_ops: int, device="cpu"):
    """A function that works out the per-image choices of one RandAugment call (DeiT's settings,
    num_ops slots) and sends them to `device`, from draws made once: the CPU's share of
    RandAugment before any pixel pass."""
    config = BatchRandAugment.from_string(Recipe().aa).config
    draws = sample_ops(batch, num_ops, config.m, config.mstd, config.mmax, config.p)
    ops = torch.where(draws.applied, draws.ops, -1)
    return lambda: _slots(ops, _arguments(ops, draws.magnitudes, draws.signs, OPS_INCREASING), OPS_INCREASING,
                          32, 32, torch.device(device))


def ms_per_call(fn, repeats: int) -> float:
    for _ in range(min(3, repeats)):  # warm-up
        fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - started) / repeats


def group(batch: int, models: int, device: str):
    """A function that augments `models` batches with DeiT's recipe at once (each model its own
    transform and draws)."""
    images = torch.randint(0, 256, (models, batch, 3, 32, 32), dtype=torch.uint8).to(device)
    labels = torch.randint(0, 10, (models, batch)).to(device)
    transforms = [Recipe().batch_transform() for _ in range(models)]
    return lambda: apply_drawn([t.draw(x, y) for t, x, y in zip(transforms, images, labels)], images)


GROUPS = (8, 32)  # models augmented at once in the last rows


def stages(batch: int, device: str) -> dict:
    """Each stage of DeiT's batch transform on one batch on `device`, both recipes' transforms,
    and the full recipe for groups of models: {row: (function, models it augments)}."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8).to(device)
    labels = torch.randint(0, 10, (batch,)).to(device)
    floats = normalize(images)
    rand_augment = BatchRandAugment.from_string(Recipe().aa)
    plain, full = Recipe.plain().batch_transform(), Recipe().batch_transform()
    rows = {"plain recipe (crop + flip)": lambda: plain(images, labels),
            "crop + flip": lambda: random_crop_flip(images),
            "RandAugment: per-image choices": rand_augment_choices(batch, rand_augment.config.n, device),
            "RandAugment: whole call": lambda: rand_augment(images),
            "normalize": lambda: normalize(images),
            "random erasing": lambda: random_erase(floats),
            "MixUp or CutMix (one per call) + targets": lambda: mix_batch(floats, labels, 10),
            "full recipe (all of the above)": lambda: full(images, labels)}
    return {**{name: (fn, 1) for name, fn in rows.items()},
            **{f"full recipe, {m} models at once, per model": (group(batch, m, device), m) for m in GROUPS}}


@reports_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.augment_calls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[8, 512])
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default 1: steadier times)")
    parser.add_argument("--repeats", type=positive_int, default=20, help="timed calls per row")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for batch in args.batch_sizes:
        timed, counted = stages(batch, "cpu"), stages(batch, "meta")  # meta: shapes only, for counting
        print(f"\nbatch {batch}, {args.threads} thread(s), torch {torch.__version__}")
        print(f"{'stage':45s} {'calls':>6s} {'on GPU':>7s} {'CPU ms':>8s} {'x plain':>8s}")
        baseline = None
        for name, (fn, models) in timed.items():
            calls, on_device = operator_calls(counted[name][0], on="meta")
            ms = ms_per_call(fn, max(1, args.repeats // models)) / models  # a group's call does `models` batches
            baseline = baseline or ms
            print(f"{name:45s} {calls / models:6.0f} {on_device / models:7.1f} {ms:8.2f} {ms / baseline:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
