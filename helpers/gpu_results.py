"""The committed GPU measurements in results/, read and shown the same way by every notebook.

Each file is written by a stage of the GPU plan (`python -m benchmarks.gpu_plan`); a missing
file is reported as missing, never replaced by a guess.
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from helpers.constants import RESULTS

# The targets on one H100, checked against every measurement that is shown.
THROUGHPUT_TARGETS = {"c/a": 6.0, "c/b": 0.9}
TEACHER_TARGET = (94.0, 60.0)  # test accuracy %, training seconds
TOGETHER_TARGETS = (3.0, 0.30)  # best M's images/s over one compiled model alone (row b); its MFU


def load(name: str, results: Path = RESULTS) -> dict | None:
    """results/<name>.json, or None if it has not been measured yet.

    Notebooks: used in 03, 04.
    """
    path = results / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def source(record: dict) -> str:
    """Where a measurement comes from, in one line.

    Notebooks: used in 02, 04.
    """
    return f"{record['device']}, torch {record['torch']}, commit {record['commit']}, {record['date'][:10]}"


def missing(name: str, suffix: str = ".json") -> str:
    """Notebooks: used in 03, 04."""
    return (f"results/{name}{suffix} has not been measured yet: it is made on a GPU by "
            f"`bash benchmarks/gpu_window.sh` (the GPU plan), and this cell shows it once committed.")


def headline(name: str, results: Path = RESULTS) -> str:
    """The first line of a text result, results/<name>.txt (a profile says there what it timed).

    Notebooks: used in 03.
    """
    path = results / f"{name}.txt"
    return path.read_text(encoding="utf-8").splitlines()[0] if path.exists() else missing(name, ".txt")


def print_throughput(record: dict) -> None:
    """The throughput table with each row against the seed pipeline (a) and the model alone (b).

    Notebooks: used in 04.
    """
    speed = record["images_per_second"]
    a, b = speed["a seed pipeline"], speed["b model alone"]
    print(f"Measured on {source(record)}; batch {record['batch_size']}, "
          f"{'compiled' if record['compile'] else 'eager'}, the seed's pipeline with "
          f"{record.get('seed_workers', '?')} DataLoader workers.")
    print(f"{'pipeline':24s} {'img/s':>9s} {'vs a':>6s} {'vs b':>6s}")
    for name, value in speed.items():
        print(f"{name:24s} {value:9,.0f} {value / a:5.2f}x {value / b:5.2f}x")
    for ratio, target in THROUGHPUT_TARGETS.items():
        value = record["ratios"][ratio]
        print(f"{ratio} = {value:.2f}: target >= {target:g} {'met' if value >= target else 'missed'}")


def epoch_split(epoch_seconds: list[float]) -> str:
    """The first epoch's seconds apart from the mean of the others: on a GPU the first one also
    sets up the kernels (cuDNN's autotuning, lazy loading), a cost paid once per run."""
    first, rest = epoch_seconds[0], epoch_seconds[1:]
    if not rest:
        return f"one epoch, {first:.1f} s"
    return f"first epoch {first:.1f} s, then {sum(rest) / len(rest):.2f} s per epoch"


def print_teacher(records: list[dict]) -> None:
    """Every measured teacher run, with the target verdict (and, where recorded, its epoch times).

    Notebooks: used in 03.
    """
    accuracy, seconds = TEACHER_TARGET
    print(f"{'epochs':>6s} {'seconds':>8s} {'test acc %':>10s}  verdict (target >= {accuracy:g} % in <= {seconds:g} s)")
    for record in records:
        for row in record["rows"]:
            met = row["test_acc"] >= accuracy and row["seconds"] <= seconds
            split = f"; {epoch_split(row['epoch_seconds'])}" if "epoch_seconds" in row else ""
            print(f"{row['epochs']:6d} {row['seconds']:8.1f} {row['test_acc']:10.2f}  "
                  f"{'met' if met else 'missed'}  ({source(record)}{split})")
    groups = {}  # runs comparable in time: same GPU, same number of training images
    for row in (row for record in records for row in record["rows"]):
        groups.setdefault((row["device"], row["train_size"]), []).append(row)
    for (device, images), rows in groups.items():
        if len({row["epochs"] for row in rows}) > 1:
            per_epoch, once = statistics.linear_regression([r["epochs"] for r in rows], [r["seconds"] for r in rows])
            print(f"a straight line through the {len(rows)} runs on {device} ({images:,} training images): "
                  f"{once:.1f} s once + {per_epoch:.2f} s per epoch")


def plot_time_to_accuracy(records: dict[str, dict], ax=None):
    """Test accuracy against seconds on the clock (teacher included), one line per run.

    Notebooks: used in 04.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.4))
    for label, record in records.items():
        points = [p for p in record["timeline"] if p["test_acc"] is not None]
        ax.plot([p["seconds"] for p in points], [p["test_acc"] for p in points], marker="o", ms=2.5,
                label=f"{label}: {record['epochs']} epochs")
        ax.axvline(record["teacher_seconds"], color="grey", lw=0.8)
    for accuracy, budget in ((90, 180), (94, 600)):
        ax.plot([0, budget], [accuracy, accuracy], color="tab:red", ls=":", lw=1)
        ax.plot([budget, budget], [0, accuracy], color="tab:red", ls=":", lw=1)
    ax.set(xlabel="seconds on the clock (teacher's training included; grey: teacher done)",
           ylabel="test accuracy (%)", ylim=(0, 100))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # off the curves and targets
    return ax


def utilisation(images_per_s: float, flops_per_image: float, gpu: str) -> float | None:
    """Model-FLOPs utilisation: the FLOP/s the training images imply over the GPU's dense bf16
    peak (helpers.speed.PEAK_BF16_TFLOPS), or None for a GPU not listed there.

    Notebooks: used in 04.
    """
    from helpers.speed import PEAK_BF16_TFLOPS
    peak = PEAK_BF16_TFLOPS.get(gpu)
    return images_per_s * flops_per_image / (peak[0] * 1e12) if peak else None


def print_together(record: dict, throughput: dict | None) -> None:
    """The together stage's table (aggregate images/s of M models trained together, against M = 1
    and against one compiled model alone) and the targets. The baseline is the one timed in the
    same run where the record has it, else row b of the throughput stage (another run).

    Notebooks: used in 04.
    """
    same_run = record.get("compiled_one_model")
    if same_run:
        alone, where = same_run["images_per_s"], "timed in the same run, trained by fit" + (
            "" if same_run["compiled"] else "; torch.compile failed there, so it ran eagerly")
    else:
        alone = throughput["images_per_second"]["b model alone"] if throughput else None
        where = "row b of results/throughput.json, another run"
    print(f"Measured on {source(record)}; batch {record['batch_size_per_model']} per model, "
          f"{record['training_flops_per_image'] / 1e9:.2f} GFLOP per training image, "
          f"peak {record['peak_tflops']} TFLOP/s")
    if "compile" in record:  # recorded since the groups may compile
        fell_back = [row["models"] for row in record["rows"] if record["compile"] and row.get("compiled") is False]
        print("models together trained " + ("with torch.compile" if record["compile"] else "eagerly")
              + (f"; torch.compile failed for M = {fell_back}, which ran eagerly" if fell_back else ""))
    if alone:
        print(f"one compiled model alone: {alone:,.0f} images/s ({where})")
    print(f"{'M':>4s} {'images/s':>10s} {'x M=1':>7s} {'x alone':>8s} {'MFU':>6s}")
    for row in record["rows"]:
        if "images_per_s" not in row:
            print(f"{row['models']:4d} {row.get('error', 'no result')}")
            continue
        versus_alone = f"{row['images_per_s'] / alone:8.2f}" if alone else f"{'-':>8s}"
        mfu = f"{100 * row['mfu']:5.1f}%" if row.get("mfu") is not None else "  n/a"
        print(f"{row['models']:4d} {row['images_per_s']:10,.0f} {row['x_one_model'] or 1.0:7.2f} {versus_alone} {mfu}")
    full = record.get("full_recipe")
    if full and full.get("images_per_s"):
        print(f"DeiT's full recipe (the ablation's work, augmentation per model): M = {full['models']} together "
              f"{full['images_per_s']:,.0f} images/s, one compiled model alone {full['alone_images_per_s']:,.0f} "
              f"images/s ({full['images_per_s'] / full['alone_images_per_s']:.2f}x)")
    elif full:
        print(f"DeiT's full recipe at M = {full['models']}: {full.get('error', 'no result')}")
    best = next(row for row in record["rows"] if row["models"] == record["best_m"])
    speedup_target, mfu_target = TOGETHER_TARGETS
    if alone:
        speedup = best["images_per_s"] / alone
        print(f"best M = {record['best_m']}: {speedup:.2f}x one compiled model alone, target >= {speedup_target:g} "
              f"{'met' if speedup >= speedup_target else 'missed'}")
    if best.get("mfu") is not None:
        print(f"MFU {100 * best['mfu']:.1f}%, target >= {100 * mfu_target:.0f}% "
              f"{'met' if best['mfu'] >= mfu_target else 'missed'}")


def gpu_time_shares(section: str, path: Path = RESULTS / "throughput_profile.txt") -> dict[str, float] | None:
    """From the committed torch.profiler summary of the throughput stage: the share (%) of a row's
    GPU time spent in matrix products (aten::mm, addmm, bmm), in attention (aten::*attention*,
    forward and backward) and in everything else (operators below the summary's row limit
    included). Only aten:: operators are added up: the table lists their kernels again under the
    kernels' own names. None if there is no such summary.

    Notebooks: used in 04.
    """
    table = _profile_section(section, path)
    if table is None:
        return None
    header, shares = None, {"matrix products": 0.0, "attention": 0.0}
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"\s{2,}", line.strip())]
        if "Self CUDA %" in cells:
            header = cells.index("Self CUDA %")
        elif header is not None and len(cells) > header and cells[0].startswith("aten::"):
            percent = float(cells[header].rstrip("%"))
            if cells[0] in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
                shares["matrix products"] += percent
            elif "attention" in cells[0] and percent > 0:
                shares["attention"] += percent
    shares["everything else"] = 100.0 - shares["matrix products"] - shares["attention"]
    return shares


def _profile_section(section: str, path: Path) -> str | None:
    """One row's table in the profiler summary, with its totals; None if there is none."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if f"== {section} ==" not in text:
        return None
    return text.split(f"== {section} ==", 1)[1].split("\n\n", 1)[0]


def _milliseconds(value: str) -> float:
    """A profiler duration ("100.672ms", "898.206us", "1.2s") in milliseconds."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if value.endswith(unit):
            return float(value[:-len(unit)]) * scale
    raise ValueError(f"not a profiler duration: {value!r}")


def gpu_ms_per_step(section: str, path: Path = RESULTS / "throughput_profile.txt") -> float | None:
    """From the committed torch.profiler summary: the GPU's kernel time per training step of a
    row, in milliseconds: the summary's "Self CUDA time total" over the number of steps it
    recorded (the calls of an operator that runs once per step: the optimizer's step, or the
    compiled graph's backward when the optimizer fell below the table's row limit). Kernel time,
    not wall time: a step that takes longer on the clock left the GPU idle for the rest. None
    if there is no such summary.

    Notebooks: used in 04.
    """
    table = _profile_section(section, path)
    if table is None:
        return None
    total = re.search(r"Self CUDA time total:\s*(\S+)", table)
    steps = None
    for once_per_step in (r"Optimizer\.step#\S+", r"CompiledFunctionBackward"):
        steps = steps or re.search(rf"^\s*{once_per_step}\s.*?(\d+)\s*$", table, re.M)
    if not total or not steps:
        return None
    return _milliseconds(total.group(1)) / int(steps.group(1))
