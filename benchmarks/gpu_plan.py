"""Every GPU measurement of the course, in stages, inside the time a GPU window allows.

    python -m benchmarks.gpu_plan --budget-s 480 --archive results.tar.gz   # a GPU window
    python -m benchmarks.gpu_plan --list                                    # stages and their state
    python -m benchmarks.gpu_plan --dry-run                                 # all stages, tiny, on the CPU

Stages run in priority order, each in its own process, and write their JSON (with provenance)
into results/. A stage whose results exist is skipped, so a plan spread over several windows
goes on where the last one stopped. With --budget-s, a stage not expected to fit in the time
left is skipped and later ones that fit still run, so a window's end is not left idle; a stage
waits, though, until the stages it `needs` are done (the ablation's groups are sized by the
together stage; the 10-minute run comes after the ablation). The expected time is a first
guess until the stage has run on a GPU, then the seconds it took there (kept in
results/gpu_plan.json), except for the ablation, which stops itself before a run that would not
fit, and the 10-minute run, which needs MIN_LONG_RUN_S left and is sized to the time left. --archive packs the files this
run made into one .tar.gz, paths relative to results/: `tar -xzf results.tar.gz -C results`.

--dry-run runs the same stages at the CI profile's size (one to three epochs or steps, small
batches) into a scratch folder, so that a GPU window meets only what differs on CUDA: the 3-minute
run and the together stage compile and use bf16 autocast on the CPU, the fp16 stage uses fp16
autocast with loss scaling, the others stay eager in fp32 (see FP32 below).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.cli import output_file
from helpers.files import read_result
from helpers.constants import NOTEBOOKS, REPO, RESULTS
from helpers.profiles import PROFILES

TIMINGS = "gpu_plan.json"
# The ablation: every variant, 3 seeds, in at most 3 windows one model at a time, at most 2
# when the together stage measured that groups of models train faster.
ABLATION_SEEDS, ABLATION_WINDOWS, ABLATION_WINDOWS_TOGETHER, WINDOW_S = 3, 3, 2, 480
MIN_LONG_RUN_S = 420  # the 10-minute run starts only with most of a window left: it is done once, for good
STARTUP_S = 20  # a stage's process start, imports and data loading
FULL_TRAIN_IMAGES = PROFILES["full"].train_size  # validation images are held out of it
SIZING_MARGIN = 1.1  # epochs are sized 10 % longer than measured: a window's GPU may be slower
GRACE_S = 30  # a stage may overrun the budget by this much before it is stopped
# The ablation trains its runs in groups (helpers.ablate --together): as many per group as gave
# the most images/s in the together stage (results/together.json's group_m), which it waits for;
# one compiled model at a time if even that M is slower than one compiled model alone, measured in
# the same run.
TOGETHER_MODELS = ["1", "2", "4", "8", "16", "32"]  # it stops at the first M that does not fit
TOGETHER_BATCH = PROFILES["full"].batch_size  # per model: the ablation's batch, so its rates apply there
COMPILE_GUESS_S = 60  # one graph's compilation until a stage has measured it
TEACHER_GUESS_S = 60  # the full teacher's training until the teacher stage has measured it
# Each M compiles its own graph (fit compiled DeiT-Tiny in about 28 s on the H100,
# results/time_to_accuracy_3min.json), then times 10 steps; plus the compiled baseline and the
# full recipe's two (at the best M, and alone).
TOGETHER_GUESS_S = 40 * (len(TOGETHER_MODELS) + 3) + 60


@dataclass
class Stage:
    name: str
    what: str
    entry: list[str]  # the script, or ["-m", module]
    outputs: list[str]  # files under results/ that mark the stage done
    guess_s: float  # first guess of its duration on one H100
    gpu_args: callable = field(repr=False)  # (plan) -> arguments for a GPU window
    dry_args: list[str] = field(default_factory=list)  # arguments for the dry run
    dry_env: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # stages that must be done before this one starts
    gpu_env: dict = field(default_factory=dict)  # environment for a GPU window (the dry run's is dry_env)


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _timings(path: Path) -> dict:
    """gpu_plan.json, or a new record if there is none. A damaged one stops the plan: it holds the
    measured stage times and the ablation's fixed epoch budget, which a new record would lose."""
    if not path.exists():
        return {"stages": {}}
    timings = read_result(path)
    stages = timings.get("stages")
    if not isinstance(stages, dict) or not all(isinstance(t, dict) and {"status", "seconds"} <= set(t)
                                               for t in stages.values()):
        raise SystemExit(f"error: {path} is damaged: every entry of its \"stages\" needs a status and seconds. "
                         f"Restore it (git checkout {path.name}) or fix the entry by hand.")
    return timings


class Plan:
    """The stages, what is done, and how long each is expected to take."""

    def __init__(self, results: Path, budget_s: float | None, dry_run: bool):
        self.results, self.budget_s, self.dry_run = results, budget_s, dry_run
        self.runs: str | None = None  # DEIT_RUNS for the stages, if not the default
        self.started = time.perf_counter()
        self.timings = _timings(results / TIMINGS)

    # --- what earlier stages measured, used to size the later ones ---
    def measured(self, file: str, *keys, default=None):
        # read afresh each time: earlier stages of this same run write these files
        value = _json(self.results / file)
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return default if value is None else value

    def left_s(self) -> float:
        return math.inf if self.budget_s is None else self.budget_s - (time.perf_counter() - self.started)

    def student_epochs(self, seconds: float) -> int:
        """Epochs of the full profile's distilled student that fit in `seconds` after the
        teacher, from the throughput stage's c+ row (with 20 % for batch 512 and evaluation)."""
        images_per_s = self.measured("throughput.json", "images_per_second", "c+ ours with teacher", default=8000)
        compile_s = self.measured("throughput.json", "compile_seconds", "c+ ours with teacher", default=60)
        teacher_s = self.teacher_s()
        epoch_s = 1.2 * FULL_TRAIN_IMAGES / images_per_s
        # A time-to-accuracy run already made is better evidence: its steady epochs, and its first
        # epoch's extra (compilation). The estimate alone sized a run 10 % short of its real length
        # (results/gpu_plan.json: the 10-minute run timed out on an H200).
        timeline = self.measured("time_to_accuracy_3min.json", "timeline", default=[])
        if len(timeline) >= 3:
            epoch_s = max(epoch_s, (timeline[-1]["seconds"] - timeline[1]["seconds"]) / (len(timeline) - 2))
            compile_s = max(compile_s, timeline[1]["seconds"] - timeline[0]["seconds"] - epoch_s)
        return max(1, int((seconds - teacher_s - compile_s - STARTUP_S) / (SIZING_MARGIN * epoch_s)))

    def ablation_epochs(self) -> int:
        """One epoch budget for every ablation run, fixed the first time it is chosen: the whole
        ablation (every variant x ABLATION_SEEDS) in ablation_windows() windows at ablation_rate()."""
        if "ablation_epochs" not in self.timings:
            from helpers.ablate import distilled, variants
            cost = self.distilled_cost()
            runs = ABLATION_SEEDS * sum(cost if distilled(r) else 1.0 for r in variants().values())
            # every window compiles both shapes' graphs and trains the teacher again (a window's
            # machine keeps nothing); 5 s a run for evaluation and writing
            per_window = WINDOW_S - STARTUP_S - 2 * self.ablation_compile_s() - self.teacher_s()
            seconds = self.ablation_windows() * per_window - 5 * ABLATION_SEEDS * len(variants())
            self.timings["ablation_epochs"] = max(1, int(seconds * self.ablation_rate() / (runs * FULL_TRAIN_IMAGES)))
            self.timings["ablation_sizing"] = {"windows": self.ablation_windows(), "window_s": WINDOW_S,
                                               "images_per_s": self.ablation_rate(), "models_together": self.together_models()}
        return self.timings["ablation_epochs"]

    def teacher_s(self) -> float:
        return self.measured("teacher_full.json", "rows", default=[{"seconds": TEACHER_GUESS_S}])[-1]["seconds"]

    def distilled_cost(self) -> float:
        """A distilled run's time over a plain one's, c / c+: the teacher's forward in every step."""
        plain_rate = self.measured("throughput.json", "images_per_second", "c ours", default=8000)
        return plain_rate / self.measured("throughput.json", "images_per_second", "c+ ours with teacher",
                                          default=plain_rate / 2)

    def ablation_compile_s(self) -> float:
        """One graph's compilation in the ablation: the together stage's warm-up at the chosen M
        (compilation and one step; the full recipe's, if longer), or the throughput stage's
        longest compile time (its row c reuses row b's graph, so its own is near zero)."""
        models = self.together_models()
        warm_up = self.together_rows("warm_up_s")
        if models > 1 and warm_up.get(models):  # the full recipe's warm-up reuses this graph: no compile in it
            return max(warm_up[models], (self.full_recipe() or {}).get("warm_up_s") or 0.0)
        return max(self.measured("throughput.json", "compile_seconds", default={}).values(), default=COMPILE_GUESS_S)

    def ablation_costs(self) -> list[str]:
        """helpers.ablate's --time-limit-s inputs, from the measurements: a plain run's share of
        training (sized 10 % longer, plus 5 s of evaluation), c / c+, compile and teacher times."""
        run_s = SIZING_MARGIN * self.ablation_epochs() * FULL_TRAIN_IMAGES / self.ablation_rate() + 5
        return ["--expected-run-s", f"{run_s:.1f}", "--distilled-cost", f"{self.distilled_cost():.3f}",
                "--compile-s", f"{self.ablation_compile_s():.0f}", "--teacher-s", f"{self.teacher_s():.0f}"]

    def ablation_rate(self) -> float:
        """Training images/s of the ablation's full recipe: measured by the together stage where it
        timed that recipe (together at the groups' M, and one model alone; same GPU and batch). Else,
        in groups, its plain rate at the chosen M times the throughput stage's c/b, the share of
        speed the recipe's input pipeline leaves; one at a time, row c itself."""
        full, models = self.full_recipe(), self.together_models()
        if full and models == 1:
            return full["alone_images_per_s"]
        if full and full.get("models") == models:
            return full["images_per_s"]
        plain_rate = self.measured("throughput.json", "images_per_second", "c ours", default=8000)
        rates = self.together_rows("images_per_s")
        if models == 1 or not rates.get(models):
            return plain_rate
        return rates[models] * min(1.0, plain_rate / self.model_alone_rate())

    def model_alone_rate(self) -> float:
        """One compiled model's training images/s, without an input pipeline: the together stage's
        own baseline (same GPU, same batch), else the throughput stage's row b."""
        together = self.measured("together.json", "compiled_one_model", "images_per_s")
        return together or self.measured("throughput.json", "images_per_second", "b model alone", default=8000)

    def ablation_windows(self) -> int:
        """Windows the whole ablation may take: 2 when it trains in measured groups (issue 15), else 3."""
        return ABLATION_WINDOWS_TOGETHER if self.together_models() > 1 else ABLATION_WINDOWS

    def full_recipe(self) -> dict | None:
        """The together stage's full-recipe rates (at the groups' M, and one model alone), if measured."""
        full = self.measured("together.json", "full_recipe")
        return full if isinstance(full, dict) and full.get("images_per_s") and full.get("alone_images_per_s") else None

    def together_models(self) -> int:
        """Models per ablation group (1: one at a time, compiled), as TOGETHER_MODELS's comment says:
        with the full recipe's rates where measured (the ablation's work), else the plain rows'."""
        # group_m: the fastest M that left memory to spare (older files: best_m)
        best = self.measured("together.json", "group_m") or self.measured("together.json", "best_m")
        if best is None:
            return 1
        full = self.full_recipe()
        if full and full.get("models") == best:
            return best if full["images_per_s"] > full["alone_images_per_s"] else 1
        return best if (self.together_rows("images_per_s").get(best) or 0.0) > self.model_alone_rate() else 1

    def together_rows(self, key: str) -> dict:
        """{M: the together stage's `key` for that M} (None where a row has none, e.g. out of memory)."""
        return {row["models"]: row.get(key) for row in self.measured("together.json", "rows", default=[])}

    def long_run_s(self) -> float:
        return min(600.0, self.left_s() - STARTUP_S)

    def expected_s(self, stage: Stage) -> float:
        if stage.name == "time_to_accuracy_10min":
            return MIN_LONG_RUN_S  # sized to the time left, at least this
        if stage.name == "ablation":
            return 60.0  # one chunk: it stops by itself before a run that would not fit
        last = self.timings["stages"].get(stage.name, {})
        return last["seconds"] if last.get("status") == "done" and last.get("gpu") else stage.guess_s

    def done(self, stage: Stage) -> bool:
        if stage.name in ("together", "notebooks_gpu"):  # a record cut short by a timeout is made again
            return bool(self.measured(stage.outputs[0], "complete"))
        if stage.name == "ablation":
            from helpers.ablate import variants
            folder = self.results / "ablation" / ("ci" if self.dry_run else "full")
            wanted = DRY_ABLATION if self.dry_run else list(variants())
            seeds = 1 if self.dry_run else ABLATION_SEEDS
            return all((folder / f"{v}-seed{k}.json").exists() for v in wanted for k in range(seeds))
        return all((self.results / out).exists() for out in stage.outputs)


def _tta_args(minutes: int):
    def args(plan: Plan) -> list[str]:
        seconds = 180.0 if minutes == 3 else plan.long_run_s()
        # The time limit ends the run cleanly, with its timeline, should the epochs still be too many.
        return ["--cached-teacher", "--epochs", str(plan.student_epochs(seconds)), "--time-limit-s", f"{seconds:.0f}",
                "--output", str(plan.results / f"time_to_accuracy_{minutes}min.json")]
    return args


def _ablation_args(plan: Plan) -> list[str]:
    return ["--profile", "full", "--seeds", str(ABLATION_SEEDS), "--no-progress", "--epochs", str(plan.ablation_epochs()), "--results-dir", str(plan.results / "ablation"),
            "--time-limit-s", str(plan.left_s() - STARTUP_S), *plan.ablation_costs(),
            *(["--together", str(plan.together_models()), "--no-group-checkpoints"] if plan.together_models() > 1 else [])]


def _together_args(plan: Plan) -> list[str]:
    return ["--deit-tiny", "--batch-size", str(TOGETHER_BATCH), "--steps", "10", "--models", *TOGETHER_MODELS,
            "--compile", "--compiled-baseline", "--full-recipe", "--time-limit-s", f"{plan.left_s() - STARTUP_S:.0f}",
            "--output", str(plan.results / "together.json"), "--trace", str(plan.results / "together_profile.txt")]


# With --together 2 these are two groups of one (one shape each): the runner's group path, cheaply;
# tests/test_together.py checks a group of two against single runs.
DRY_ABLATION = ["plain", "full+hard-distillation"]
DRY_TTA = ["--profile", "ci", "--cached-teacher", "--epochs"]
# The dry run exercises bf16 autocast and torch.compile in the 3-minute run (fit's path, which
# all GPU training takes) and bf16 autocast under vmap in the together stage (its tiny ViT is
# cheap in bf16); the other stages stay eager in fp32: compiling costs tens of seconds per graph
# on a CPU, and bf16 convolutions crawl on most CPUs.
FP32 = {"DEIT_PRECISION": "fp32"}
STAGES = [
    Stage("throughput", "a: images/s of the seed pipeline, the model alone, ours, ours with the teacher",
          ["benchmarks/throughput.py"], ["throughput.json", "throughput_profile.txt"], 150,
          lambda plan: ["--output", str(plan.results / "throughput.json"),
                        "--trace", str(plan.results / "throughput_profile.txt")],
          ["--profile", "ci", "--batch-size", "100", "--steps", "2", "--warmup", "1", "--workers", "0"], FP32),
    Stage("teacher", "b: the full-size CNN teacher, test accuracy and training seconds",
          ["benchmarks/teacher.py"], ["teacher_full.json"], 80,
          lambda plan: ["--save", "--output", str(plan.results / "teacher_full.json")],
          ["--profile", "ci", "--save"], FP32),
    Stage("teacher_epochs", "b: how the teacher's accuracy grows with epochs (what would reach 94 %)",
          ["benchmarks/teacher.py"], ["teacher_epochs.json"], 160,
          lambda plan: ["--epochs", "30", "45", "--output", str(plan.results / "teacher_epochs.json")],
          ["--profile", "ci", "--epochs", "1", "2"], FP32),
    Stage("time_to_accuracy_3min", "c: teacher + distilled DeiT-Tiny, sized to end at 3 minutes",
          ["benchmarks/time_to_accuracy.py"], ["time_to_accuracy_3min.json"], 200, _tta_args(3),
          DRY_TTA + ["1", "--compile"]),
    Stage("together", "d: images/s of M DeiT-Tiny trained together (M = 1 .. 32) and the MFU; sizes the ablation's groups",
          ["benchmarks/together.py"], ["together.json"], TOGETHER_GUESS_S, _together_args,
          ["--batch-size", "8", "--steps", "1", "--models", "1", "2", "--compiled-baseline", "--compile", "--full-recipe"]),  # bf16 vmap, compiled
    # b was missed at 88-90 %, and 30 -> 45 epochs gained 0.2 points: is this JPEG copy of CIFAR-10
    # the ceiling, or the short schedule? ResNet-18 with crop and flip reaches 93.02 % on the
    # original data (350-epoch step schedule; kuangliu/pytorch-cifar, README.md, accuracy table), so a
    # long run far below that points at the copy; its per-epoch times show the first epoch's
    # set-up cost apart (the three runs of b fit about 26 s once plus 0.4 s per epoch).
    Stage("teacher_long", "b: the teacher trained 150 epochs: this data's ceiling, or the schedule?",
          ["benchmarks/teacher.py"], ["teacher_long.json"], 150,
          lambda plan: ["--epochs", "150", "--output", str(plan.results / "teacher_long.json")],
          ["--profile", "ci", "--epochs", "2"], FP32),
    # b's missed target needs a profile of where the time goes: about 26 s of each run are paid
    # once. A fresh process profiles a new teacher's first steps, set-up included.
    Stage("teacher_profile", "b: torch.profiler over a new teacher's first 20 steps: the set-up cost",
          ["benchmarks/teacher.py"], ["teacher_profile.txt"], 60,
          lambda plan: ["--trace", str(plan.results / "teacher_profile.txt")],
          ["--profile", "ci", "--trace-steps", "3"], FP32),
    # Not one of issue 10's measurements, but every notebook must run on a student's GPU too, and
    # no GPU has ever run them: a few minutes, before the ablation's many windows.
    Stage("notebooks_gpu", "every notebook top to bottom on the GPU (ci profile), checked by nbval as CI checks",
          ["-m", "benchmarks.notebook_check"], ["notebooks_gpu.json"], 300,
          lambda plan: ["--output", str(plan.results / "notebooks_gpu.json")],
          [str(NOTEBOOKS / "00_the_problem.ipynb")], FP32),  # one notebook: the record's path, cheaply
    Stage("ablation", "d: every variant x 3 seeds at full data, as many runs as fit, trained in groups",
          ["-m", "helpers", "ablate"], [], 60, _ablation_args,
          ["--profile", "ci", "--epochs", "1", "--seeds", "1", "--no-progress", "--together", "2", "--no-group-checkpoints",
           "--only", *DRY_ABLATION], FP32, needs=("together",)),  # its epoch budget is fixed from together's speed
    # Last, after the ablation: inside a window's budget (about 460 s) this run can only report
    # "94 % in 600 s" as met; else it ends undecided. With the teacher at 88-90 % (teacher_full.json,
    # teacher_epochs.json) and a hard-distilled student near its teacher, met is not expected, so a
    # window is better spent on the stages that decide the course's questions first.
    Stage("time_to_accuracy_10min", "c: the same, sized to 10 minutes (or the time left)",
          ["benchmarks/time_to_accuracy.py"], ["time_to_accuracy_10min.json"], 620, _tta_args(10),
          DRY_TTA + ["2", "--time-limit-s", "0.001"], FP32, needs=("ablation",)),  # dry: stops after epoch 1
    # GPUs without bf16 (a student's T4 or V100) train in fp16 with loss scaling (helpers.precision).
    # The throughput benchmark in fp16 runs that path on CUDA (GradScaler with fused AdamW and
    # torch.compile) and measures its speed. Last: no target depends on it, and it fits the
    # seconds a window has left.
    Stage("throughput_fp16", "a in fp16 with loss scaling, the path of GPUs without bf16 (T4, V100)",
          ["benchmarks/throughput.py"], ["throughput_fp16.json"], 120,
          lambda plan: ["--output", str(plan.results / "throughput_fp16.json")],
          ["--profile", "ci", "--batch-size", "100", "--steps", "2", "--warmup", "1", "--workers", "0"],
          {"DEIT_PRECISION": "fp16"}, gpu_env={"DEIT_PRECISION": "fp16"}),
]


def stage_command(plan: Plan, stage: Stage) -> tuple[list[str], dict]:
    """The stage's command line and environment, for a GPU window or the dry run."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           **({"DEIT_RUNS": plan.runs} if plan.runs else {})}
    if not plan.dry_run:
        return [sys.executable, *stage.entry, *stage.gpu_args(plan)], {**env, "DEIT_PROFILE": "full", **stage.gpu_env}
    # The dry run keeps the GPU run's output arguments and swaps its sizes for tiny ones.
    outputs = [a for a in stage.gpu_args(plan) if a.startswith(str(plan.results))]
    flags = [a for a in stage.gpu_args(plan) if a in ("--output", "--trace", "--results-dir")]
    return ([sys.executable, *stage.entry, *stage.dry_args, *[x for pair in zip(flags, outputs) for x in pair]],
            {**env, "DEIT_PROFILE": "ci", "DEIT_PRECISION": "bf16", **stage.dry_env})


def gpu_name() -> str | None:
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def run_in_own_group(command: list[str], env: dict, timeout: float | None) -> int:
    """A stage's exit status. Past `timeout` s (or on Ctrl-C) it is stopped with every process it
    started, such as a notebook's kernel, which subprocess.run's timeout would leave on the GPU."""
    process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)
    try:
        return process.wait(timeout=timeout)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise


def run_plan(plan: Plan, only: list[str] | None = None, stages: list[Stage] = STAGES,
             after_each=None) -> list[Path]:
    """Run every stage not done yet that fits; return the result files written. after_each(files)
    is called with the files written so far after every stage that ran (an archive kept up to
    date, so that a window cut short still returns what it finished)."""
    from helpers.files import write_json_atomically
    from helpers.provenance import provenance

    made, gpu, by_name = [], gpu_name(), {s.name: s for s in stages}
    for stage in stages:
        if only and stage.name not in only:
            continue
        if plan.done(stage):
            print(f"[{stage.name}] done already", flush=True)
            continue
        waiting = [name for name in stage.needs if not plan.done(by_name[name])]
        if waiting:
            print(f"[{stage.name}] waits until {', '.join(waiting)} is done", flush=True)
            continue
        expected = plan.expected_s(stage)
        if expected > plan.left_s():  # a later, shorter stage may still use the time left
            print(f"[{stage.name}] skipped: expected {expected:.0f} s, {plan.left_s():.0f} s left", flush=True)
            continue
        command, env = stage_command(plan, stage)
        print(f"[{stage.name}] {stage.what}\n  $ {' '.join(command[1:])}  (expected {expected:.0f} s)", flush=True)
        before = {p: p.stat().st_mtime for p in plan.results.rglob("*") if p.is_file()}
        started = time.perf_counter()
        try:  # a stage that overruns is stopped, so that the window still ends with an archive
            limit = None if plan.left_s() == math.inf else max(plan.left_s(), expected) + GRACE_S
            code = run_in_own_group(command, env, limit)
            # The ablation stops by itself before a run that would not fit: partial, not failed.
            status = "done" if code == 0 and plan.done(stage) else "partial" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            status = "timed out"
        seconds = time.perf_counter() - started
        made += [p for p in plan.results.rglob("*") if p.is_file() and before.get(p) != p.stat().st_mtime]
        plan.timings["stages"][stage.name] = {"status": status, "seconds": round(seconds, 1), "gpu": gpu,
                                              **{k: v for k, v in provenance().items() if k in ("device", "commit", "date")}}
        write_json_atomically(plan.timings, plan.results / TIMINGS)
        print(f"[{stage.name}] {status} in {seconds:.0f} s", flush=True)
        if after_each:
            after_each(sorted(set(p for p in [*made, plan.results / TIMINGS] if p.exists())))
        if status == "partial":  # it stopped before work that would not fit: the window is spent
            print(f"[{stage.name}] partial: the next window goes on with it", flush=True)
            break
        if status != "done":
            print(f"[{stage.name}] see the output above; the plan goes on with the next stage", flush=True)
    made.append(plan.results / TIMINGS)
    return sorted(set(p for p in made if p.exists()))


def archive(files: list[Path], results: Path, path: Path) -> None:
    """Pack files into path, a .tar.gz, replacing it whole: a window cut short mid-write keeps the last one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=str(f.relative_to(results)))
    os.replace(partial, path)
    print(f"archived {len(files)} files in {path} (unpack with `tar -xzf {path.name} -C results`)")


def print_state(plan: Plan) -> None:
    print(f"{'stage':24s} {'state':10s} {'expected s':>10s}  last run")
    for stage in STAGES:
        last = plan.timings["stages"].get(stage.name)
        seen = f"{last['status']}, {last['seconds']:.0f} s on {last['device']}" if last else "-"
        print(f"{stage.name:24s} {'done' if plan.done(stage) else 'to do':10s} {plan.expected_s(stage):10.0f}  {seen}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, help="seconds this window allows (default: no limit)")
    parser.add_argument("--archive", type=output_file, help="pack the files this run made into this .tar.gz")
    parser.add_argument("--dry-run", action="store_true", help="tiny stages on the CPU, into a scratch folder")
    parser.add_argument("--results-dir", type=Path, help="default: results/ (a scratch folder with --dry-run)")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in STAGES])
    parser.add_argument("--list", action="store_true", help="show the stages and what is done")
    args = parser.parse_args(argv)
    scratch = None
    if args.dry_run and not args.results_dir:
        scratch = tempfile.TemporaryDirectory(prefix="gpu_plan_dry_")
    results = args.results_dir or (Path(scratch.name) if scratch else RESULTS)
    if results.exists() and not results.is_dir():
        parser.error(f"--results-dir {results} is a file; give a folder (it is made if missing)")
    results.mkdir(parents=True, exist_ok=True)
    plan = Plan(results, args.budget_s, args.dry_run)
    if args.list:
        print_state(plan)
        return 0
    if args.dry_run:  # checkpoints and the teacher go to a scratch folder too, beside the results
        runs = tempfile.TemporaryDirectory(prefix="gpu_plan_dry_runs_")
        plan.runs = runs.name  # for the stages' processes only: this process's environment stays as it was
    elif gpu_name() is None:
        print("No CUDA GPU here: the plan's numbers would not be GPU numbers. Use --dry-run to check it on a CPU.")
        return 2
    made = run_plan(plan, args.only, after_each=args.archive and (lambda files: archive(files, results, args.archive)))
    print()
    print_state(plan)
    if args.archive:
        archive(made, results, args.archive)
    failed = [n for n, s in plan.timings["stages"].items() if s["status"] not in ("done", "partial")]
    return 1 if args.dry_run and failed else 0


if __name__ == "__main__":
    sys.exit(main())
