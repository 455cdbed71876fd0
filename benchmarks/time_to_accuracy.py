"""Test accuracy against wall-clock seconds for the whole recipe, teacher included.

    python benchmarks/time_to_accuracy.py --output results/time_to_accuracy.json     # on a GPU
    python benchmarks/time_to_accuracy.py --profile ci                             # a CPU smoke run
    python benchmarks/time_to_accuracy.py --cached-teacher                         # reuse the teacher

The clock starts before the teacher is trained (or loaded, with --cached-teacher, which the
output then states) and runs through every student epoch, evaluation included. Targets on one
H100: >= 90 % in <= 3 minutes and >= 94 % in <= 10 minutes with a ViT of <= 6 M parameters.
"""
from __future__ import annotations

import argparse
import time

import torch

from helpers.data import TensorBatches
from helpers.experiment import EVAL_BATCH, RUNS, profile_config, profile_data
from helpers.files import write_json_atomically
from helpers.models import count_parameters
from helpers.profiles import PROFILES, get_profile
from helpers.provenance import provenance
from helpers.recipe import DISTILLATION_TYPES, Recipe
from helpers.teacher import load_or_train_teacher, teacher_path
from helpers.train import fit, pick_device

TARGETS = ((90.0, 180.0), (94.0, 600.0))  # (test accuracy %, seconds)


def first_time_at(timeline: list[dict], accuracy: float) -> float | None:
    return next((t["seconds"] for t in timeline if t["test_acc"] >= accuracy), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=list(PROFILES))
    parser.add_argument("--epochs", type=int, help="student epochs (default: the profile's)")
    parser.add_argument("--distillation-type", choices=DISTILLATION_TYPES, default="hard")
    parser.add_argument("--cached-teacher", action="store_true", help="load the teacher instead of training it")
    parser.add_argument("--output", help="write the timeline as JSON here")
    args = parser.parse_args()
    profile, device = get_profile(args.profile), pick_device()
    recipe = Recipe(distillation_type=args.distillation_type)
    config = profile_config(profile, smoothing=recipe.smoothing, compile=device.type == "cuda",
                            **({"epochs": args.epochs} if args.epochs else {}))
    train, test = profile_data(profile)  # decoded and cached before the clock starts

    start = time.perf_counter()
    teacher, teacher_seconds = None, 0.0
    if recipe.distillation_type != "none":
        teacher = load_or_train_teacher(profile, retrain=not args.cached_teacher,
                                        train_if_missing=True, device=device).to_device(device)
        teacher_seconds = time.perf_counter() - start
    timeline = [{"epoch": 0, "seconds": teacher_seconds, "test_acc": None}]

    def log(history):
        timeline.append({"epoch": history[-1]["epoch"], "seconds": time.perf_counter() - start,
                         "test_acc": history[-1]["val_acc"]})

    torch.manual_seed(0)
    model = recipe.build_model(**profile.model)
    run_dir = RUNS / profile.name / f"time_to_accuracy-{time.strftime('%Y%m%d-%H%M%S')}"
    fit(model, recipe.train_batches(train, config.batch_size).to(device),
        TensorBatches(test, EVAL_BATCH, shuffle=False).to(device), config,
        batch_transform=recipe.batch_transform(), loss_fn=recipe.loss_fn(teacher), run_dir=run_dir,
        progress=profile.progress, device=device, on_epoch=log)

    print(f"\n{count_parameters(model):,}-parameter ViT, {len(train):,} training images, recipe {recipe}")
    print(f"teacher: {'loaded from ' + str(teacher_path(profile)) if args.cached_teacher else 'trained'} "
          f"({teacher_seconds:.0f} s, test accuracy {getattr(teacher, 'test_acc', None)})\n")
    print(f"{'epoch':>5s} {'seconds':>8s} {'test acc %':>10s}")
    for t in timeline[1:]:
        print(f"{t['epoch']:5d} {t['seconds']:8.1f} {t['test_acc']:10.2f}")
    reached = {}
    for accuracy, budget in TARGETS:
        seconds = first_time_at(timeline[1:], accuracy)
        reached[f"{accuracy:g}"] = seconds
        verdict = "not reached" if seconds is None else f"{seconds:.0f} s ({'met' if seconds <= budget else 'missed'})"
        print(f">= {accuracy:g}% within {budget:.0f} s: {verdict}")
    if args.output:
        write_json_atomically({"benchmark": "time_to_accuracy", "profile": profile.name,
                               "teacher": "cached" if args.cached_teacher else "trained in the timed run",
                               "teacher_seconds": teacher_seconds, "teacher_test_acc": getattr(teacher, "test_acc", None),
                               "parameters": count_parameters(model), "recipe": recipe.as_dict(),
                               "seconds_to": reached, "timeline": timeline, **provenance()}, args.output)


if __name__ == "__main__":
    main()
