"""Does DeiT's fine-tuning at a higher resolution pay in a profile? Seed by seed: the whole recipe
with hard distillation trained at 32 px (notebook 04, section 4), then fine-tuned in DeiT's
proportions at 48 px, once with the teacher seeing the images made 32 px again (the course's
choice) and once seeing the enlarged images (what DeiT's losses.py would do, as it hands the
teacher the student's inputs; DeiT's main.py itself refuses to fine-tune with distillation), and
once at 32 px, the control: the same extra epochs without the resolution.

    python -m benchmarks.finetune_resolution --profile cpu --seeds 3

Each seed writes results/finetune_resolution/<profile>/seed<k>.json (with provenance) when it
finishes and is skipped once that exists; its runs resume from their checkpoints in
runs/<profile>/finetune_resolution/. Notebook 04 (section 7) prints the summary. Use --threads 1
beside other work on two cores.
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks import per_seed_setup, seeds_then_summary
from helpers.cli import positive_int
from helpers.constants import IMAGE_SIZE, RUNS
from helpers.errors import check_same_settings, reports_errors
from helpers.profile_runs import finetune_in_profile, profile_data, train_in_profile
from helpers.profiles import PROFILES
from helpers.provenance import provenance
from helpers.recipe import Recipe, comparable_recipe
from helpers.resolution import (FINETUNE_RESULTS, FINETUNE_SIZE, FINETUNINGS, ResizeInputs, before_finetuning,
                                describe_finetuning, finetune_overrides, finetune_results)
from helpers.teacher import load_or_train_teacher

RECIPE = Recipe(distillation_type="hard")  # notebook 04's


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.finetune_resolution", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=list(PROFILES), default="cpu")
    p.add_argument("--seeds", type=positive_int, default=3)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--results-dir", default=str(FINETUNE_RESULTS))
    return p


def final(history: list[dict]) -> dict:
    return {"val_acc": history[-1]["val_acc"], "test_acc": history[-1]["test_acc"],
            "train_seconds": sum(r["train_seconds"] for r in history), "val_acc_per_epoch": [r["val_acc"] for r in history]}


def run_seed(seed: int, profile, teacher, device) -> dict:
    started = time.perf_counter()
    runs = RUNS / profile.name / "finetune_resolution" / f"seed{seed}"
    torch.manual_seed(seed)
    student = RECIPE.build_model(**profile.vit_sizes)  # trained in place
    base = train_in_profile("base", student, profile, recipe=RECIPE, teacher=teacher, device=device,
                            run_dir=runs / "base", seed=seed, log_epochs=False)
    _, val, _ = profile_data(profile)
    record = {"benchmark": "finetune_resolution", "profile": profile.name, "seed": seed, "size": FINETUNE_SIZE,
              "recipe": RECIPE.as_dict(), "settings": finetune_overrides(profile), "base": final(base),
              "before": before_finetuning(student, teacher, val, FINETUNE_SIZE, device), "finetuned": {}}
    for name, (size, teacher_at_own_size) in FINETUNINGS.items():
        taught_by = ResizeInputs(teacher, IMAGE_SIZE) if teacher_at_own_size else teacher
        history = finetune_in_profile(name, student, size, profile, recipe=RECIPE, teacher=taught_by, device=device,
                                      run_dir=runs / name, seed=seed, log_epochs=False)
        record["finetuned"][name] = final(history)
    return {**record, "seconds": time.perf_counter() - started, **provenance()}


@reports_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    profile, device, folder = per_seed_setup(args)
    teacher = load_or_train_teacher(profile, train_if_missing=True, device=device).to_device(device)

    def check_finished(found, seed, path):  # made with this recipe and these fine-tuning settings
        check_same_settings({"recipe": comparable_recipe(found.get("recipe", {})), "settings": found.get("settings"),
                             "size": found.get("size")},
                            {"recipe": RECIPE.comparable(), "settings": finetune_overrides(profile), "size": FINETUNE_SIZE},
                            path, "Use another --results-dir for these settings, or delete the old results.")

    return seeds_then_summary(profile, folder, range(args.seeds), lambda seed: run_seed(seed, profile, teacher, device),
                              check_finished, lambda: describe_finetuning(finetune_results(profile.name, folder.parent)))


if __name__ == "__main__":
    raise SystemExit(main())
