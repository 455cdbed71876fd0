"""`python -m helpers.ablate`: what each DeiT ingredient contributes, with the same budget each.

    python -m helpers.ablate --list                       # the variants and their recipes
    python -m helpers.ablate                              # all of them (profile: full on a GPU)
    python -m helpers.ablate --only plain full --seeds 2  # some of them, two seeds each

Two orders: cumulative (plain ViT, then add one ingredient at a time up to the full recipe)
and leave-one-out (the full recipe minus one ingredient), plus the full recipe with hard and
with soft distillation. Each run writes results/ablation/<profile>/<variant>-seed<k>.json
(history, final and best accuracy, recipe, config, provenance, wall-clock). Finished runs are
skipped and interrupted ones resume from runs/<profile>/ablation/, so an ablation can be spread
over several short GPU sessions; --time-limit-s stops before a run that would not fit in the
time left (each run is expected to take as long as the last one, or --expected-run-s).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
import sys
import time
from pathlib import Path

import torch

from helpers.experiment import RUNS, profile_config, train_in_profile
from helpers.files import write_json_atomically
from helpers.profiles import PROFILES, Profile, get_profile
from helpers.provenance import REPO, provenance
from helpers.recipe import Recipe
from helpers.train import pick_device

RESULTS = REPO / "results" / "ablation"
FULL = Recipe()
# The ingredients in the order the cumulative ablation adds them: (name, fields that turn it on).
INGREDIENTS = (
    ("randaugment+erasing", dict(aa=FULL.aa, reprob=FULL.reprob)),
    ("mixup+cutmix", dict(mixup=FULL.mixup, cutmix=FULL.cutmix)),
    ("stochastic-depth", dict(drop_path=FULL.drop_path)),
    ("label-smoothing", dict(smoothing=FULL.smoothing)),
    ("repeated-aug", dict(repeated_aug=True)),
)
HEADLINE = ("plain", "full", "full+hard-distillation", "full+soft-distillation")


def variants() -> dict[str, Recipe]:
    """Every variant's recipe, by name."""
    plain = Recipe.plain()
    found = {"plain": plain}
    recipe = plain
    for name, fields in INGREDIENTS:
        recipe = recipe.but(**fields)
        found[f"+{name}"] = recipe
    assert recipe == FULL, "adding every ingredient must give DeiT's recipe"
    found["full"] = found.pop(f"+{INGREDIENTS[-1][0]}")
    for name, fields in INGREDIENTS:
        found[f"full-{name}"] = FULL.but(**{k: getattr(plain, k) for k in fields})
    found["full+hard-distillation"] = FULL.but(distillation_type="hard")
    # The paper's soft-distillation values: tau 3, lambda 0.1 (Touvron et al., 2021, Section 5.1).
    found["full+soft-distillation"] = FULL.but(distillation_type="soft", distillation_alpha=0.1, distillation_tau=3.0)
    return found


def result_path(results_dir: Path, profile: Profile, variant: str, seed: int) -> Path:
    return results_dir / profile.name / f"{variant}-seed{seed}.json"


def run_variant(variant: str, recipe: Recipe, profile: Profile, seed: int, *, results_dir: Path,
                runs_dir: Path, epochs: int | None = None, teacher=None, device=None, progress=True) -> dict:
    """Train one variant (or resume it) and write its result JSON; returns the result."""
    device = device or pick_device()
    config = profile_config(profile, seed=seed, smoothing=recipe.smoothing, compile=device.type == "cuda",
                            **({"epochs": epochs} if epochs else {}))
    torch.manual_seed(seed)
    started = time.perf_counter()
    history = train_in_profile(f"{variant}-seed{seed}", profile=profile, recipe=recipe, teacher=teacher,
                               run_dir=runs_dir / profile.name / f"{variant}-seed{seed}", device=device,
                               progress=progress, **asdict(config))
    result = {
        "variant": variant, "seed": seed, "profile": profile.name,
        "final_acc": history[-1]["val_acc"], "best_acc": max(r["val_acc"] for r in history),
        "train_seconds": sum(r["seconds"] for r in history),
        "wall_clock_seconds_this_session": time.perf_counter() - started,
        "recipe": recipe.as_dict(), "config": asdict(config), "model": profile.model,
        "train_images": profile.train_size, "test_images": profile.test_size,
        "teacher": getattr(teacher, "info", None), "history": history, **provenance(),
    }
    write_json_atomically(result, result_path(results_dir, profile, variant, seed))
    return result


def load_results(profile_name: str, results_dir: Path = RESULTS) -> list[dict]:
    """Every result JSON of one profile (empty if none were made yet)."""
    folder = results_dir / profile_name
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def summarize(results: list[dict], names=None) -> list[dict]:
    """Per variant (in `names` order, default all found): mean and spread of best accuracy over seeds."""
    import statistics
    by_name: dict[str, list[float]] = {}
    for r in results:
        by_name.setdefault(r["variant"], []).append(r["best_acc"])
    rows = []
    for name in names or list(by_name):
        accs = by_name.get(name)
        if accs:
            rows.append({"variant": name, "best_acc": statistics.mean(accs), "seeds": len(accs),
                         "spread": max(accs) - min(accs)})
    return rows


def contributions(results: list[dict]) -> list[dict]:
    """Each ingredient's effect on best accuracy (percentage points), measured two ways:
    cumulative (the variant that adds it minus the one before) and leave-one-out (full minus
    full-without-it); plus hard and soft distillation on top of the full recipe. `noise` is the
    largest seed spread among the variants involved (None with a single seed each)."""
    acc = {r["variant"]: r for r in summarize(results)}

    def delta(better, worse):
        if better in acc and worse in acc:
            spreads = [acc[v]["spread"] for v in (better, worse) if acc[v]["seeds"] > 1]
            return acc[better]["best_acc"] - acc[worse]["best_acc"], max(spreads, default=None)
        return None, None

    rows, previous = [], "plain"
    for name, _ in INGREDIENTS:
        added = "full" if name == INGREDIENTS[-1][0] else f"+{name}"
        cumulative, noise_c = delta(added, previous)
        leave_one_out, noise_l = delta("full", f"full-{name}")
        noises = [n for n in (noise_c, noise_l) if n is not None]
        rows.append({"ingredient": name, "cumulative": cumulative, "leave_one_out": leave_one_out,
                     "noise": max(noises, default=None)})
        previous = added
    for kind in ("hard", "soft"):
        gain, noise = delta(f"full+{kind}-distillation", "full")
        rows.append({"ingredient": f"{kind} distillation", "cumulative": gain, "leave_one_out": None, "noise": noise})
    return rows


def print_contributions(rows: list[dict]) -> None:
    def fmt(value):
        return f"{value:+8.2f}" if value is not None else f"{'-':>8s}"
    print(f"{'ingredient':22s} {'added':>8s} {'removed':>8s} {'seed spread':>12s}")
    for r in rows:
        noise = f"{r['noise']:.2f}" if r["noise"] is not None else "n/a"
        print(f"{r['ingredient']:22s} {fmt(r['cumulative'])} {fmt(r['leave_one_out'])} {noise:>12s}")


def print_summary(rows: list[dict]) -> None:
    print(f"{'variant':32s} {'best acc %':>10s} {'seeds':>5s} {'spread':>7s}")
    for r in rows:
        print(f"{r['variant']:32s} {r['best_acc']:10.2f} {r['seeds']:5d} {r['spread']:7.2f}")


def run_ablation(names=None, seeds: int = 1, headline_seeds: int = 2, profile: Profile | None = None,
                 epochs: int | None = None, results_dir: Path = RESULTS, runs_dir: Path = RUNS / "ablation",
                 progress=True, time_limit_s: float | None = None, expected_run_s: float = 0.0) -> list[dict]:
    """Run the named variants (default: all); skip those whose result file exists.

    With time_limit_s, stop before a run expected to end past the limit (expected: the last
    run's wall-clock time, at first expected_run_s)."""
    profile = profile or get_profile()
    table = variants()
    names = list(names or table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"Unknown variants {unknown}; `python -m helpers.ablate --list` shows them.")
    device = pick_device()
    teacher = None
    results = []
    started = time.perf_counter()
    for name in names:
        for seed in range(max(seeds, headline_seeds if name in HEADLINE else 1)):
            path = result_path(results_dir, profile, name, seed)
            if path.exists():
                results.append(json.loads(path.read_text()))
                print(f"{name} seed {seed}: done already ({path})")
                continue
            if table[name].distillation_type != "none" and teacher is None:
                from helpers.teacher import load_or_train_teacher
                teacher = load_or_train_teacher(profile, train_if_missing=True, device=device).to_device(device)
            elapsed = time.perf_counter() - started
            if time_limit_s is not None and elapsed + expected_run_s > time_limit_s:
                print(f"Stopping before {name} seed {seed}: {elapsed:.0f} s used, a run takes about "
                      f"{expected_run_s:.0f} s and the limit is {time_limit_s:.0f} s. Run again to go on.")
                return results
            print(f"{name} seed {seed}: training", flush=True)
            results.append(run_variant(name, table[name], profile, seed, results_dir=results_dir,
                                       runs_dir=runs_dir, epochs=epochs, teacher=teacher, device=device, progress=progress))
            expected_run_s = results[-1]["wall_clock_seconds_this_session"]
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="VARIANT")
    parser.add_argument("--seeds", type=int, default=1, help="seeds for every variant")
    parser.add_argument("--headline-seeds", type=int, default=2, help=f"seeds for {', '.join(HEADLINE)}")
    parser.add_argument("--profile", choices=list(PROFILES))
    parser.add_argument("--epochs", type=int, help="override the profile's epochs (same for every run)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--time-limit-s", type=float, help="stop before a run that would end past this")
    parser.add_argument("--expected-run-s", type=float, default=0.0, help="a run's duration until one is measured")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for name, recipe in variants().items():
            print(f"{name:32s} {recipe}")
        return 0
    results = run_ablation(args.only, args.seeds, args.headline_seeds, get_profile(args.profile),
                           args.epochs, args.results_dir, time_limit_s=args.time_limit_s,
                           expected_run_s=args.expected_run_s)
    print()
    print_summary(summarize(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
