"""Which learning rate for Table 8's "SGD for pre-training" row? The paper gives none.

The paper reports only the result, with no SGD learning rate or weight decay. So the course
chooses a rate at its own scale: DeiT's recipe (ablate's `full+sgd`, SGD with Nesterov momentum
0.9 as timm's "sgd" builds it, weight decay the profile's sgd_weight_decay) is trained once per
learning rate, seed 0, for the profile's whole run, and the rate with the best final *validation*
accuracy becomes the profile's `sgd_lr` (helpers.profiles). The test set plays no part in the choice.

    python -m benchmarks.sgd_lr --profile cpu --lrs 0.01 0.03 0.1 0.3 1.0
    python -m benchmarks.sgd_lr --profile cpu --report

Learning rates are for a batch of 512 and scaled with the batch, as every lr in the course.
Each rate writes results/sgd_lr/lr<rate>/<profile>/full+sgd-seed0.json (the ablation's
result format, with provenance) when it finishes, and is skipped once that exists;
its run resumes from runs/sgd_lr/. Several processes with --threads 1 share the cores.
Notebook 05 shows the table.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from helpers.ablate import check_same_run, result_path, run_config, run_sizes, run_variant, table_8_variants
from helpers.cli import positive_float, positive_int
from helpers.constants import RUNS
from helpers.errors import reports_errors
from helpers.files import read_result
from helpers.profiles import PROFILES, get_profile, smoke_test_label
from helpers.sgd_lr import FOLDER, VARIANT, print_report, rate_folder, sweep_results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sgd_lr", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=list(PROFILES))
    parser.add_argument("--lrs", type=positive_float, nargs="+", default=[], help="learning rates for a batch of 512")
    parser.add_argument("--report", action="store_true", help="print the table of the finished rates and stop")
    parser.add_argument("--results-dir", type=Path, default=FOLDER)
    parser.add_argument("--runs-dir", type=Path, default=RUNS / "sgd_lr", help="checkpoints, to resume a run")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (1 lets two processes share two cores)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    if not args.report:
        if not args.lrs:
            parser.error("give --lrs to train, or --report to print the finished ones")
        print(smoke_test_label(profile))
        recipe = table_8_variants()[VARIANT]
        for lr in args.lrs:
            folder = rate_folder(args.results_dir, lr)
            path = result_path(folder, profile, VARIANT, 0)
            if path.exists():  # reused only if it trained as this call would
                check_same_run(read_result(path), run_config(profile, recipe, 0, None, compile=False, lr=lr), recipe,
                               path, run_sizes(profile))
                print(f"lr {lr:g}: done already ({folder})")
                continue
            run_variant(VARIANT, recipe, profile, 0, results_dir=folder, runs_dir=rate_folder(args.runs_dir, lr),
                        progress=not args.no_progress, config_changes={"lr": lr})
    results = sweep_results(profile.name, args.results_dir)
    if not results:
        raise SystemExit(f"error: no finished {profile.name}-profile SGD run in {args.results_dir}: check "
                         f"--results-dir and --profile, or train some rates with --lrs.")
    print_report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(reports_errors(main)())
