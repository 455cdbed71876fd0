"""Where DeiT's recipe overtakes the plain ViT on a laptop: the committed runs of
`python -m benchmarks.crossover`, their curves and the epoch it happens. One folder per setting:
results/crossover/ (2,000 training images, 400 epochs), results/crossover/50pc-800ep/
(500 images, 800 epochs) and results/crossover/50pc-1600ep/ (500 images, 1,600 epochs).

Shown in notebook 05 ("The premise on a laptop").
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from helpers.ablation_figures import mean_and_se_per_epoch, plot_band, seeds_label
from helpers.constants import RESULTS
from helpers.files import read_result
from helpers.stats import paired_difference

RECIPES = ("plain", "full")
SETTINGS = (RESULTS / "crossover", RESULTS / "crossover" / "50pc-800ep", RESULTS / "crossover" / "50pc-1600ep")
COLOURS = {"plain": "tab:blue", "full": "tab:orange"}


def load_crossover(folder: Path = RESULTS / "crossover") -> dict[str, list[dict]]:
    """{recipe: [finished runs, by seed]} (empty lists where none finished yet).

    Notebooks: used in 05.
    """
    found = {name: [] for name in RECIPES}
    for path in sorted(folder.glob("*-seed*.json")) if folder.is_dir() else []:
        run = read_result(path)  # a damaged file is named
        found.setdefault(run["recipe_name"], []).append(run)
    return found


def _paired_curves(runs: dict[str, list[dict]]):
    """({seed: {epoch: val_acc}} for plain, the same for full, the seeds both have, their common epochs)."""
    plain = {r["seed"]: {h["epoch"]: h["val_acc"] for h in r["history"]} for r in runs.get("plain", [])}
    full = {r["seed"]: {h["epoch"]: h["val_acc"] for h in r["history"]} for r in runs.get("full", [])}
    seeds = sorted(set(plain) & set(full))
    epochs = sorted(set.intersection(*(set(plain[s]) & set(full[s]) for s in seeds))) if seeds else []
    return plain, full, seeds, epochs


# The protocol's criterion: ahead by more than this many standard errors of the paired difference.
# Lenient: with 3 seeds a paired t-test at 5 % needs about 4.3 (helpers.stats.critical_t).
STANDARD_ERRORS = 2.0


def crossover_epoch(runs: dict[str, list[dict]], threshold: float = STANDARD_ERRORS) -> dict | None:
    """The first epoch from which the full recipe's validation accuracy stays above the plain
    ViT's by more than `threshold` standard errors of the paired difference (seeds both have;
    the protocol's 2 by default), to the last epoch; None until both have at least 3 common
    seeds, {"epoch": None, ...} if it never does.

    Notebooks: used in 05.
    """
    plain, full, seeds, epochs = _paired_curves(runs)
    if len(seeds) < 3:
        return None
    diffs = [paired_difference({s: full[s][e] for s in seeds}, {s: plain[s][e] for s in seeds}) for e in epochs]
    ahead = [d["mean"] > threshold * d["se"] for d in diffs]
    first = next((i for i in range(len(epochs)) if all(ahead[i:])), None)
    return {"epoch": None if first is None else epochs[first], "seeds": len(seeds), "final_difference": diffs[-1]}


def stretch_width(runs: dict[str, list[dict]]) -> int:
    """Epochs per stretch: 100, or an eighth of a longer run (so a summary stays eight stretches long)."""
    return max(100, max((r["history"][-1]["epoch"] for rs in runs.values() for r in rs if r["history"]), default=0) // 8)


def difference_by_stretch(runs: dict[str, list[dict]], width: int | None = None) -> list[dict]:
    """Full minus plain validation accuracy, each seed's averaged over `width` consecutive epochs
    (one epoch's value is noisy; default stretch_width), then paired over seeds:
    [{"first", "last", "mean", "se", ...}].

    Notebooks: used in 05.
    """
    plain, full, seeds, epochs = _paired_curves(runs)
    width = width or stretch_width(runs)
    stretches = [epochs[i:i + width] for i in range(0, len(epochs), width)]

    def averaged(curves, stretch):
        return {s: sum(curves[s][e] for e in stretch) / len(stretch) for s in seeds}
    return [{"first": stretch[0], "last": stretch[-1], **paired_difference(averaged(full, stretch), averaged(plain, stretch))}
            for stretch in stretches]


def stretch_crossover(stretches: list[dict], threshold: float = STANDARD_ERRORS) -> int | None:
    """The first epoch of the first stretch from which full is ahead by more than `threshold`
    standard errors (the protocol's 2 by default) in every stretch to the end (the per-epoch
    criterion, less sensitive to one noisy epoch).

    Notebooks: used in 05.
    """
    ahead = [d["mean"] > threshold * d["se"] for d in stretches]
    return next((d["first"] for i, d in enumerate(stretches) if all(ahead[i:])), None)


def setting_label(runs: dict[str, list[dict]]) -> str:
    """e.g. "2,000 training images, 400 epochs", from the first run's record ("" if it has none).

    Notebooks: used in 05.
    """
    run = next((r for recipe_runs in runs.values() for r in recipe_runs), {})
    if "train_images" not in run:
        return ""
    return f"{run['train_images']:,} training images, {run['config']['epochs']:,} epochs"


def _recipe_summary(name: str, runs: list[dict]) -> str:
    epochs, val, _ = mean_and_se_per_epoch(runs, "val_acc")
    seen_epochs, seen, _ = mean_and_se_per_epoch(runs, "train_seen_acc")
    best = max(range(len(val)), key=val.__getitem__)
    line = f"{name}: final validation {val[-1]:.1f} % after {epochs[-1]:,} epochs (best {val[best]:.1f} % at epoch {epochs[best]:,})"
    if seen:
        line += f"; training images {seen[-1]:.1f} % at epoch {seen_epochs[-1]:,}"
    if all("train_seconds" in r for r in runs):
        line += (f"; {sum(r['train_seconds'] for r in runs) / len(runs) / 3600:.1f} h of training per run "
                 f"({runs[0].get('threads') or 'all'} thread(s) of {runs[0].get('cpu_cores', '?')} cores)")
    return line + "."


def describe_crossover(runs: dict[str, list[dict]], folder: Path = RESULTS / "crossover") -> str:
    """What the committed crossover runs in `folder` show so far, in a few sentences.

    Notebooks: used in 05.
    """
    done = ", ".join(f"{name}: {seeds_label(len(runs[name]))}" for name in RECIPES) if any(runs.values()) else "none"
    where = folder.relative_to(RESULTS.parent) if folder.is_relative_to(RESULTS.parent) else folder
    setting = setting_label(runs)
    lines = [f"Finished crossover runs{', ' + setting if setting else ''} ({where}/): {done}."]
    lines += [_recipe_summary(name, runs[name]) for name in RECIPES if runs.get(name)]
    paired = len(_paired_curves(runs)[2])
    found = crossover_epoch(runs)
    if found is None:
        so_far = f" (the averages below pair {seeds_label(paired)} so far)" if paired else ""
        lines.append(f"Where full overtakes plain needs both recipes with at least 3 seeds: not yet measured{so_far}.")
    else:
        final = found["final_difference"]
        when = "within these epochs" if found["epoch"] is None else f"from epoch {found['epoch']:,} on"
        verb = "does not stay" if found["epoch"] is None else "stays"
        lines.append(f"Over {found['seeds']} seeds, full {verb} ahead of plain by more than two standard errors "
                     f"{when} (final difference {final['mean']:+.1f} ± {final['se']:.1f} points).")
    if paired:
        stretches = difference_by_stretch(runs)
        lines.append(f"Full minus plain, averaged over each {stretch_width(runs)} epochs: " + "; ".join(
            f"epochs {d['first']:,}–{d['last']:,} {d['mean']:+.1f}" + ("" if d["se"] is None else f" ± {d['se']:.1f}")
            for d in stretches) + " points.")
        if found is not None:
            start = stretch_crossover(stretches)
            lines.append("Averaged this way, full is " + ("not ahead by more than two standard errors in every stretch to the end."
                         if start is None else f"ahead by more than two standard errors in every stretch from epoch {start:,} on."))
    return "\n".join(lines)


def plot_crossover(runs: dict[str, list[dict]], ax=None):
    """Validation (solid) and training-image (dashed) accuracy per epoch, mean ± s.e. over seeds.

    Notebooks: used in 05.
    """
    ax = ax or plt.subplots(figsize=(7.5, 3.6))[1]
    for name in RECIPES:
        if runs.get(name):
            label = f"{name} ({seeds_label(len(runs[name]))})"
            plot_band(ax, runs[name], "val_acc", COLOURS[name], f"{label}: validation")
            plot_band(ax, runs[name], "train_seen_acc", COLOURS[name], f"{label}: training images", ls="--")
    setting = setting_label(runs).replace(" training", "")  # short enough for the title
    ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100),
           title="plain ViT vs DeiT's recipe" + (f", {setting}" if setting else ""))
    if ax.lines:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, "no finished crossover runs yet", transform=ax.transAxes, ha="center", va="center")
    return ax
