"""Does an exponential moving average (EMA) of the weights help in a profile, and which decay?

Seed by seed, the ablation's `full` run (DeiT's recipe, the same seed and settings) is trained
again while helpers.weight_average keeps three averages of its weights beside it: with DeiT's
decay 0.99996 as written, with the decay that remembers the same share of this run as DeiT's
does of its 300 ImageNet epochs, and with three times that share. The model trains as without
them, so each average is compared with the very model it averages, and the model's validation
curve can be laid over the committed ablation run's (helpers.weight_average.curve_differences).

    python -m benchmarks.weight_average --profile cpu --seeds 3

Each seed writes results/weight_average/<profile>/seed<k>.json (with provenance) when it
finishes and is skipped once that exists; its run resumes from runs/<profile>/weight_average/.
--seed K runs that seed only (two processes with --threads 1 use two cores). Notebook 02
(section 4) prints the summary.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import torch

from benchmarks import per_seed_setup, seeds_then_summary
from helpers.ablate import FULL, check_same_run, run_config
from helpers.cli import positive_int
from helpers.constants import RESULTS
from helpers.errors import reports_errors
from helpers.profile_runs import steps_in_profile, train_in_profile
from helpers.profiles import PROFILES
from helpers.provenance import provenance
from helpers.weight_average import (describe_weight_averages, ema_key, horizon_decays, initial_share,
                                    memory_steps, weight_average_results)

FOLDER = RESULTS / "weight_average"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.weight_average", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=list(PROFILES), default="cpu")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds 0 .. N-1")
    p.add_argument("--seed", type=int, default=None, help="this seed only")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--results-dir", default=str(FOLDER))
    return p


def run_seed(seed: int, profile, device) -> dict:
    started = time.perf_counter()
    steps = steps_in_profile(profile, FULL)
    decays = horizon_decays(steps)
    config = run_config(profile, FULL, seed, None, compile=device.type == "cuda")
    torch.manual_seed(seed)  # as the ablation's run_variant, so the model is its `full` run's
    history = train_in_profile(f"weight_average/seed{seed}", profile=profile, recipe=FULL, device=device,
                               ema_decays=tuple(decays.values()), log_epochs=False, **asdict(config))

    def curve(metric_of):
        return {"val_acc_per_epoch": [r[metric_of("val_acc")] for r in history],
                "val_acc": history[-1][metric_of("val_acc")], "test_acc": history[-1][metric_of("test_acc")]}

    model = curve(lambda metric: metric)
    return {"benchmark": "weight_average", "profile": profile.name, "seed": seed, "recipe": FULL.as_dict(),
            "config": asdict(config), "total_steps": steps,
            "model": model,
            "averages": {label: {"decay": decay, "memory_steps": memory_steps(decay),
                                 "initial_share_at_end": initial_share(decay, steps),
                                 **curve(lambda metric, d=decay: ema_key(d, metric))}
                         for label, decay in decays.items()},
            "train_seconds": sum(r["train_seconds"] for r in history),
            "seconds": time.perf_counter() - started, **provenance()}


@reports_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    profile, device, folder = per_seed_setup(args)

    def check_finished(found, seed, path):  # trained as this call would train it
        check_same_run(found, run_config(profile, FULL, seed, None, compile=False), FULL, path,
                       {"total_steps": steps_in_profile(profile, FULL)})

    return seeds_then_summary(profile, folder, [args.seed] if args.seed is not None else range(args.seeds),
                              lambda seed: run_seed(seed, profile, device), check_finished,
                              lambda: describe_weight_averages(weight_average_results(profile.name, folder.parent)))


if __name__ == "__main__":
    raise SystemExit(main())
