"""How long the whole ablation protocol (every variant x 3 seeds) takes on this machine.

    python -m benchmarks.protocol_time --profile cpu --output results/cpu_probes/protocol_time.json

For each variant, a few training steps of the profile's model and recipe are timed
(helpers.profile_runs.seconds_per_image; distilled variants with the profile's teacher, untrained:
its forward pass costs the same) and scaled to the profile's training images x epochs. The
validation pass each epoch is counted as a third of a training step per image (a forward pass
without the backward's two thirds), and the teacher is trained once. Run it alone: another busy
process on the same cores makes every number larger. The table also gives the measured
train_seconds of the committed reference runs, when there are any, for comparison.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from helpers.ablate import SEEDS, distilled, load_results, variants
from helpers.cli import positive_int, output_file
from helpers.files import write_json_atomically
from helpers.losses import FrozenTeacher
from helpers.profiles import PROFILES, get_profile
from helpers.profile_runs import seconds_per_image
from helpers.provenance import provenance
from helpers.teacher import TEACHERS, build_teacher, teacher_seconds_per_image
from helpers.errors import reports_errors


def run_seconds(profile, recipe, teacher, steps: int) -> float:
    """Estimated seconds of one run: training steps plus one validation pass per epoch."""
    per_image = seconds_per_image(profile, recipe, "cpu", teacher if distilled(recipe) else None, steps=steps)
    return per_image * profile.epochs * (profile.train_size + profile.val_size / 3)


@reports_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=list(PROFILES), default="cpu")
    parser.add_argument("--steps", type=positive_int, default=5, help="timed training steps per variant")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: PyTorch's, all cores)")
    parser.add_argument("--only", nargs="+", metavar="VARIANT", choices=list(variants()),
                        help="time these variants only (default: all; `python -m helpers ablate --list`)")
    parser.add_argument("--output", type=output_file, help="write the table as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    torch.manual_seed(0)
    teacher = FrozenTeacher(build_teacher(TEACHERS[profile.name]))
    committed = {}
    for r in load_results(profile.name):
        committed.setdefault(r["variant"], []).append(r["train_seconds"])
    print(f"profile {profile.name}: {profile.train_size:,} training images, {profile.epochs} epochs, "
          f"{torch.get_num_threads()} threads; estimated from {args.steps} timed steps per variant")
    print(f"{'variant':34s} {'min/run':>8s} {'committed min/run':>18s}")
    rows = []
    table = variants()
    for name in args.only or table:
        recipe = table[name]
        seconds = run_seconds(profile, recipe, teacher, args.steps)
        measured = statistics.fmean(committed[name]) if name in committed else None
        rows.append({"variant": name, "estimated_seconds": seconds, "committed_train_seconds_mean": measured})
        print(f"{name:34s} {seconds / 60:8.1f} {measured / 60 if measured else float('nan'):18.1f}", flush=True)
    teacher_s = teacher_seconds_per_image(profile, "cpu") * profile.train_size * TEACHERS[profile.name].epochs
    total = SEEDS * sum(r["estimated_seconds"] for r in rows) + teacher_s
    print("* train_seconds of the committed reference runs, which shared the cores with other work")
    print(f"teacher (trained once): {teacher_s / 60:.1f} min")
    print(f"{'whole protocol' if not args.only else 'these variants'} ({len(rows)} variants x {SEEDS} seeds + teacher): {total / 3600:.1f} hours on "
          f"{torch.get_num_threads()} threads, one run at a time")
    if args.output:
        write_json_atomically({"benchmark": "protocol_time", "profile": profile.name, "threads": torch.get_num_threads(),
                               "steps": args.steps, "rows": rows, "teacher_seconds": teacher_s,
                               "seeds": SEEDS, "total_seconds": total, **provenance()}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
