"""Benchmarks: scripts that print tables and write results with provenance (README, "Benchmarks")."""
from pathlib import Path

import torch

from helpers.files import write_missing_seeds
from helpers.profiles import get_profile, smoke_test_label
from helpers.train import pick_device


def per_seed_setup(args):
    """A per-seed benchmark's (profile, device, results folder) from its --profile, --threads and
    --results-dir, with the threads set."""
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    return profile, pick_device(), Path(args.results_dir) / profile.name


def seeds_then_summary(profile, folder, seeds, run_seed, check_finished, summary) -> int:
    """A per-seed benchmark's work once its arguments are read: train the seeds that have no result
    in `folder` yet (a finished one is kept once check_finished accepts it), then print summary()."""
    write_missing_seeds(seeds, folder, run_seed, check_finished)
    if profile.name == "ci":
        print(smoke_test_label(profile))
    print(summary())
    return 0
