"""Aggregate training throughput of M ViTs trained together (helpers.together), M = 1, 2, 4, 8, ...

    python benchmarks/together.py                                  # small ViT, a quick CPU look
    python benchmarks/together.py --deit-tiny --batch-size 512 --steps 10 --models 1 2 4 8 16 32 --output results/together.json

Each row trains M models (plain recipe, seeds 0..M-1) for --steps steps through fit_together,
after one untimed warm-up step, and reports the aggregate images/s (M x batch x steps / the
training time), its ratio to M = 1 in the same run, and the model-FLOPs utilisation (MFU) that
implies given the device's peak FLOP/s: --peak-tflops, else PEAK_BF16_TFLOPS's entry for the GPU
(dense bf16, what its autocast multiplies in), else "n/a". An M that runs out of GPU memory ends
the table (larger ones would too). --compiled-baseline (on with a GPU) first times one model
trained alone by fit with torch.compile, the baseline the course's targets name, and adds each
row's ratio to it ("x alone"). --compile (on with a GPU, as in the ablation there) trains the
groups with torch.compile: each row's warm-up call compiles (its wall time is the row's warm_up_s)
and the timed call reuses the graph. --full-recipe (on with a GPU) then times DeiT's full recipe at
the M for the ablation's groups (the fastest that left a quarter of the GPU's memory free) and one
model alone with it: the ablation's own work, with augmentation (one pass per stage for the
whole group, helpers.batch_augment), drop-path masks and losses per model that the plain rows lack. --time-limit-s starts no larger M that would leave too little time for it and
that pair, so a GPU window's stage ends with a table. --output writes the rows, the best M and provenance as JSON,
after every row ("complete": false until the table ends), so a run stopped early keeps its rows.
--trace writes torch.profiler's table for a few steps of the full recipe at the groups' M (if the
time limit leaves room): where a group's step spends its time, should the targets be missed.

FLOPs per training image: helpers.speed.training_flops_per_image (the formula is in its
docstring; DeiT-Tiny at 32 px: 2.19 GFLOP). Peaks: helpers.speed.PEAK_BF16_TFLOPS.
"""
from __future__ import annotations

import argparse
import gc
import time
import warnings

import torch

from helpers.cli import output_file, positive_float, positive_int
from helpers.data import TensorBatches, load_cifar10
from helpers.files import write_json_atomically, write_text_atomically
from helpers.models import DEIT_TINY_32, vit_config
from helpers.provenance import provenance
from helpers.recipe import Recipe
from helpers.speed import (PEAK_BF16_TFLOPS, operator_table, profiler_activities, profiler_failed,
                           training_flops_per_image)
from helpers.together import Member, fit_together
from helpers.train import COMPILE_FALLBACK, TrainConfig, fit, pick_device
from helpers.errors import reports_errors

SMALL = dict(embed_dim=64, depth=2, num_heads=2)  # CPU-sized
PLAIN = Recipe.plain()  # the table's recipe: the model's own work, little augmentation
MEMORY_SHARE = 0.9  # an M expected to need more of the GPU's memory is not tried (it would compile, then fail)
GROUP_MEMORY_SHARE = 0.75  # an ablation group's M used at most this here: distilled groups add the teacher and a token


class FirstSteps:
    """The first `steps` batches of each epoch (for the warm-up call)."""

    def __init__(self, batches, steps):
        self.batches, self.steps = batches, steps

    def set_epoch(self, epoch):
        self.batches.set_epoch(epoch)

    def __len__(self):
        return min(self.steps, len(self.batches))

    def __iter__(self):
        return (batch for _, batch in zip(range(len(self)), self.batches))


def group_members(m: int, sizes: dict, train, batch_size: int, steps: int, device, compile: bool,
                  recipe: Recipe = PLAIN) -> list[Member]:
    """m models trained with `recipe` (seeds 0..m-1), each on the first `steps` batches of its data order."""
    config = TrainConfig(epochs=1, batch_size=batch_size, warmup_epochs=0, seed=0, smoothing=0.0, compile=compile)
    found = []
    for k in range(m):
        torch.manual_seed(k)
        batches = TensorBatches(train, batch_size, seed=k, drop_last=True).to(device)
        found.append(Member(recipe.build_model(**sizes), FirstSteps(batches, steps), config,
                            recipe.batch_transform(), recipe.loss_fn()))
    return found


def train_seconds(m: int, sizes: dict, train, val, batch_size: int, steps: int, device, compile: bool,
                  recipe: Recipe = PLAIN) -> dict:
    """The timed call's training seconds, the warm-up call's wall time (compilation included) and
    whether torch.compile worked (False where it fell back to eager or was not asked for)."""
    def members():
        return group_members(m, sizes, train, batch_size, steps, device, compile, recipe)

    warm = members()
    for member in warm:
        member.train_batches.steps = 1
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_together(warm, val, device=device)  # first-call costs (compilation, allocator, kernels) are not timed
    warm_up_s = time.perf_counter() - started
    del warm  # its models and batches would sit beside the timed call's in GPU memory
    seconds = fit_together(members(), val, device=device)[0][0]["train_seconds"]  # reuses the compiled graph
    return {"seconds": seconds, "warm_up_s": warm_up_s, "compiled": compile and not fell_back(caught)}


class ProfilerSteps(FirstSteps):
    """FirstSteps that marks where each batch begins for a torch.profiler (its schedule counts them)."""

    def __init__(self, batches, steps, profiler):
        super().__init__(batches, steps)
        self.profiler = profiler

    def __iter__(self):
        for batch in super().__iter__():
            self.profiler.step()
            yield batch


PROFILED_STEPS = 3


def profile_group(m: int, sizes: dict, train, val, batch_size: int, device, compile: bool) -> str:
    """torch.profiler's table of the operators that take the most time over PROFILED_STEPS steps of
    m models trained together with DeiT's full recipe. Not recorded: the set-up, then two steps'
    worth of batches (with compile on, the compile trial takes the first; it reuses the graph)."""
    from torch.profiler import profile, schedule

    steps = PROFILED_STEPS + 3
    members = group_members(m, sizes, train, batch_size, steps, device, compile, Recipe())
    tables = []  # the recorded steps' table, made when they end (the profiler clears them after)
    record = schedule(wait=1, warmup=2, active=PROFILED_STEPS, repeat=1)
    try:  # a profiler that cannot run here must not cost the table
        with warnings.catch_warnings(record=True) as caught, profile(
                activities=profiler_activities(device), schedule=record,
                on_trace_ready=lambda done: tables.append(operator_table(done, device))) as prof:
            warnings.simplefilter("always")
            members[0].train_batches = ProfilerSteps(members[0].train_batches.batches, steps, prof)
            fit_together(members, val, device=device)
    except torch.OutOfMemoryError:
        return "not profiled: out of GPU memory"
    except Exception as err:
        return profiler_failed(err)
    eager = "(trained eagerly: torch.compile failed, see the log)\n" if compile and fell_back(caught) else ""
    return eager + (tables[0] if tables else "torch.profiler recorded no complete step")


def fell_back(caught) -> bool:
    """Whether the recorded warnings say torch.compile failed and training ran eagerly; if so, the
    warning (with the error that made it fail) is printed, as the run's log is all a window returns."""
    failures = [str(w.message) for w in caught if str(w.message).startswith(COMPILE_FALLBACK)]
    for failure in failures:
        print(failure, flush=True)
    return bool(failures)


def compiled_one_model(sizes: dict, train, val, batch_size: int, steps: int, device, recipe: Recipe = PLAIN) -> dict:
    """The baseline the targets name: one model trained by fit with torch.compile (fused attention,
    the same recipe and batch), after an untimed warm-up call; fit compiles before its clock."""
    torch.manual_seed(0)
    model = recipe.build_model(**sizes)
    config = TrainConfig(epochs=1, batch_size=batch_size, warmup_epochs=0, seed=0, smoothing=0.0, compile=True)
    batches = TensorBatches(train, batch_size, seed=0, drop_last=True).to(device)

    def train(n):
        return fit(model, FirstSteps(batches, n), val, config, batch_transform=recipe.batch_transform(),
                   loss_fn=recipe.loss_fn(), progress=False, device=device)[0]["train_seconds"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(1)
        seconds = train(steps)
    return {"images_per_s": batch_size * steps / seconds, "compiled": not fell_back(caught)}


def measure(m: int, sizes: dict, train, val, batch_size: int, steps: int, device, compile: bool,
            recipe: Recipe = PLAIN) -> dict | None:
    """Aggregate training images/s of m models together (with train_seconds' warm_up_s and compiled),
    or None if they do not fit in GPU memory."""
    cuda = torch.device(device).type == "cuda"
    try:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        timed = train_seconds(m, sizes, train, val, batch_size, steps, device, compile, recipe)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
        return {"images_per_s": m * batch_size * steps / timed["seconds"], "warm_up_s": timed["warm_up_s"],
                "compiled": timed["compiled"], "peak_gib": peak}
    except torch.OutOfMemoryError:
        pass
    gc.collect()  # outside the except block, whose traceback still holds the failed call's tensors
    torch.cuda.empty_cache()
    return None


@reports_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=positive_int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batch-size", type=positive_int, default=32, help="per model")
    parser.add_argument("--steps", type=positive_int, default=3)
    parser.add_argument("--deit-tiny", action="store_true", help="DeiT-Tiny at 32 px (default: a small ViT)")
    parser.add_argument("--peak-tflops", type=float,
                        help="the device's peak FLOP/s in TFLOP/s, for the MFU (default: PEAK_BF16_TFLOPS's entry)")
    parser.add_argument("--compiled-baseline", action=argparse.BooleanOptionalAction, default=None,
                        help="also time one model trained alone with torch.compile, the targets' baseline "
                             "(default: on with a GPU)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="train the groups with torch.compile, as the ablation does on a GPU (default: on with a GPU)")
    parser.add_argument("--full-recipe", action=argparse.BooleanOptionalAction, default=None,
                        help="then time DeiT's full recipe (RandAugment, erasing, MixUp/CutMix, drop path, smoothing) "
                             "at the best M and alone: the ablation's work, which the GPU plan sizes from "
                             "(default: on with a GPU)")
    parser.add_argument("--time-limit-s", type=positive_float,
                        help="start no further M whose row (expected: 1.5x the last row's time) and the full "
                             "recipe's pair after it would end past this many seconds; the GPU plan passes "
                             "its window's time left, so the stage ends with its table rather than being stopped")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (1 avoids oversubscribing a busy CPU)")
    parser.add_argument("--output", type=output_file, help="write the table as JSON here")
    parser.add_argument("--trace", type=output_file,
                        help="write torch.profiler's table of a few full-recipe steps at the groups' M here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = pick_device()
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else None
    peak, peak_source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else PEAK_BF16_TFLOPS.get(gpu, (None, None))
    sizes = {} if args.deit_tiny else SMALL
    flops = training_flops_per_image(**vit_config(**sizes))
    print(f"DeiT-Tiny at 32 px: {training_flops_per_image(**DEIT_TINY_32) / 1e9:.2f} GFLOP per training image "
          f"(helpers.speed.training_flops_per_image)")
    print(f"device {device}, model {vit_config(**sizes)}, {flops / 1e9:.3f} GFLOP per training image, "
          f"batch {args.batch_size} per model, {args.steps} timed steps, peak {peak or 'unknown'} TFLOP/s"
          + (f" ({peak_source})" if peak_source else ""))
    steps_of_data = max(args.steps, PROFILED_STEPS + 3 if args.trace else 0)  # the profile's steps too
    train = load_cifar10("train", n_per_class=-(-args.batch_size * steps_of_data // 10))
    val = TensorBatches(load_cifar10("test", n_per_class=1), 10, shuffle=False).to(device)
    compile = device.type == "cuda" if args.compile is None else args.compile
    if compile:  # every M and recipe is a graph of its own; past torch's limit (8 a function) it would train eagerly
        # cache_size_limit: the name torch < 2.7 knows; later versions keep it for recompile_limit
        dynamo = torch._dynamo.config
        dynamo.cache_size_limit = max(dynamo.cache_size_limit, 4 * len(args.models) + 4)
    alone, alone_s = None, 0.0
    with_baseline = device.type == "cuda" if args.compiled_baseline is None else args.compiled_baseline
    with_full = device.type == "cuda" if args.full_recipe is None else args.full_recipe
    if with_baseline:
        alone_s = time.perf_counter()
        alone = compiled_one_model(sizes, train, val, args.batch_size, args.steps, device)
        alone_s = time.perf_counter() - alone_s
        print(f"one model alone, {'compiled' if alone['compiled'] else 'eager (torch.compile failed)'} (fit): "
              f"{alone['images_per_s']:,.0f} images/s")
    print(f"models together trained {'with torch.compile' if compile else 'eagerly'}; warm-up: the first call, "
          f"compilation included")
    print(f"{'M':>4s} {'images/s':>10s} {'x M=1':>7s} {'x alone':>8s} {'TFLOP/s':>9s} {'MFU':>6s} {'warm-up':>8s}")
    rows, base, full, stopped_before, last_row_s = [], None, None, None, None
    memory_gib = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else None

    def save(complete: bool) -> None:  # after every row, so a stage stopped at its time limit keeps them
        if args.output:
            write_json_atomically({"benchmark": "together", "model": vit_config(**sizes), "batch_size_per_model": args.batch_size,
                                   "steps": args.steps, "training_flops_per_image": flops, "peak_tflops": peak,
                                   "peak_source": peak_source, "compile": compile, "rows": rows, "best_m": group_m(rows, None),
                                   "group_m": group_m(rows, memory_gib),
                                   "complete": complete, "compiled_one_model": alone, "full_recipe": full,
                                   "time_limit_s": args.time_limit_s, "stopped_before_m": stopped_before,
                                   "memory_gib": memory_gib,
                                   **provenance()}, args.output)

    for m in args.models:
        if rows and rows[-1].get("peak_gib") and memory_gib:  # memory grows about in proportion to M
            needed = rows[-1]["peak_gib"] * m / rows[-1]["models"]
            if needed > MEMORY_SHARE * memory_gib:
                stopped_before = m
                print(f"stopping before M = {m}: it would need about {needed:.0f} GiB of the GPU's {memory_gib:.0f}", flush=True)
                break
        if last_row_s is not None and args.time_limit_s:
            # this M may become the best, and the full recipe's pair then runs at it
            expected = 1.5 * last_row_s + (1.5 * last_row_s + alone_s if with_full else 0.0)
            if time.perf_counter() - started + expected > args.time_limit_s:
                stopped_before = m
                print(f"stopping before M = {m}: it and the full recipe's pair would take about {expected:.0f} s, "
                      f"{args.time_limit_s - (time.perf_counter() - started):.0f} s of --time-limit-s are left", flush=True)
                break
        row_started = time.perf_counter()
        measured = measure(m, sizes, train, val, args.batch_size, args.steps, device, compile)
        last_row_s = time.perf_counter() - row_started  # the row's wall time: warm-up (compile) and timed call
        if measured is None:
            rows.append({"models": m, "error": "out of GPU memory"})
            print(f"{m:4d} out of GPU memory: the table ends here", flush=True)
            break
        rate = measured["images_per_s"]
        base = base or (rate if m == 1 else None)
        achieved = rate * flops
        versus_alone = rate / alone["images_per_s"] if alone else None
        rows.append({**measured, "models": m, "row_s": last_row_s, "x_one_model": rate / base if base else None,
                     "x_compiled_alone": versus_alone,
                     "tflops": achieved / 1e12, "mfu": achieved / (peak * 1e12) if peak else None})
        mfu = f"{100 * rows[-1]['mfu']:5.1f}%" if peak else "n/a"
        ratio = f"{rate / base:7.2f}" if base else f"{'-':>7s}"
        alone_ratio = f"{versus_alone:8.2f}" if alone else f"{'-':>8s}"
        warm_up = f"{measured['warm_up_s']:6.1f} s" + ("" if measured["compiled"] == compile else " (eager: compile failed)")
        print(f"{m:4d} {rate:10.0f} {ratio} {alone_ratio} {achieved / 1e12:9.4f} {mfu:>6s} {warm_up}", flush=True)
        save(complete=False)
    groups = group_m(rows, memory_gib)
    spare = f" (the most with {100 * (1 - GROUP_MEMORY_SHARE):.0f} % of the GPU's memory to spare)" if memory_gib else ""
    print(f"best M: {group_m(rows, None)} (the most images/s); for the ablation's groups: {groups}{spare}")
    if with_full and groups:
        row_s = next(r for r in rows if r.get("models") == groups)["row_s"]
        if args.time_limit_s and time.perf_counter() - started + row_s + alone_s > args.time_limit_s:
            full = {"models": groups, "error": "not timed: too little of --time-limit-s left"}
            print(f"full recipe at M = {groups}: {full['error']}")
        else:
            full = full_recipe_rates(groups, sizes, train, val, args.batch_size, args.steps, device, compile)
    save(complete=True)
    if args.trace:
        write_text_atomically(trace_text(groups, rows, full, sizes, train, val, args, device, compile, started), args.trace)
        print(f"profile of M = {groups} written to {args.trace}", flush=True)
    return 0


def trace_text(groups, rows, full, sizes, train, val, args, device, compile: bool, started: float) -> str:
    """--trace's file: a header saying what was profiled, then the table (or why there is none)."""
    header = (f"torch.profiler summary on {provenance()['device']}: DeiT's full recipe, {groups} models together, "
              f"batch {args.batch_size} per model, {'compiled' if compile else 'eager'}, {PROFILED_STEPS} steps\n\n")
    if not groups:
        return header + "no M was measured: nothing to profile\n"
    if full is not None and "error" in full:  # without the pair's graph, it would compile from scratch
        return header + f"not profiled: the full recipe was not timed ({full['error']})\n"
    row_s = next(r for r in rows if r.get("models") == groups)["row_s"]  # a row: more steps than the profile
    if args.time_limit_s and time.perf_counter() - started + row_s > args.time_limit_s:
        return header + "not profiled: too little of --time-limit-s left\n"
    return header + profile_group(groups, sizes, train, val, args.batch_size, device, compile) + "\n"


def group_m(rows: list[dict], memory_gib: float | None) -> int | None:
    """The M for the ablation's groups: the most images/s among the rows that used at most
    GROUP_MEMORY_SHARE of the GPU's memory (any row where memory was not recorded; with
    memory_gib None, every row: the best M)."""
    roomy = [r for r in rows if "images_per_s" in r
             and (not memory_gib or not r.get("peak_gib") or r["peak_gib"] <= GROUP_MEMORY_SHARE * memory_gib)]
    return max(roomy, key=lambda r: r["images_per_s"])["models"] if roomy else None


def full_recipe_rates(m: int, sizes: dict, train, val, batch_size: int, steps: int, device, compile: bool) -> dict:
    """DeiT's full recipe, m models together and one compiled model alone: what an ablation group
    and a run on its own train at. Its augmentation, masks and losses add launches the plain rows lack."""
    together = measure(m, sizes, train, val, batch_size, steps, device, compile, Recipe())
    if together is None:
        print(f"full recipe, M = {m}: out of GPU memory")
        return {"models": m, "error": "out of GPU memory"}
    alone = compiled_one_model(sizes, train, val, batch_size, steps, device, Recipe())
    print(f"full recipe: M = {m} together {together['images_per_s']:,.0f} images/s, one model alone "
          f"{alone['images_per_s']:,.0f} images/s ({together['images_per_s'] / alone['images_per_s']:.2f}x)", flush=True)
    return {"models": m, **together, "alone_images_per_s": alone["images_per_s"], "alone_compiled": alone["compiled"]}


if __name__ == "__main__":
    raise SystemExit(main())
