"""The ablation's figures and the reference results the notebooks show (notebooks 02, 03, 05).

Curves are mean ± standard error over seeds, one hue per family of variants; contributions are
bars with error bars beside the paper's Table 8 changes.
"""
from __future__ import annotations

import statistics

import matplotlib.pyplot as plt
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from helpers.ablate import TABLE_8_ROWS, by_variant, contributions, load_results, variants
from helpers.profiles import Profile

# One colour family per group of variants, so related curves read together.
FAMILIES = {"cumulative": plt.cm.Blues, "leave-one-out": plt.cm.Oranges, "distillation": plt.cm.Greens}


def reference_results(profile: Profile) -> tuple[list[dict], str]:
    """The committed reference ablation to show in `profile`: the full one on the full profile
    (once it exists), the cpu one otherwise; and a sentence that says which it is.

    Notebooks: used in 02, 03, 05.
    """
    for name in (["full", "cpu"] if profile.name == "full" else ["cpu"]):
        protocol = variants()
        results = [r for r in load_results(name) if r["variant"] in protocol]  # not Table 8's other rows
        if results:
            seeds = len({r["seed"] for r in results})
            images, epochs = _sizes(results)
            return results, (f"the committed {name}-profile reference ablation (results/ablation/{name}/: "
                             f"{len(results)} runs of {len({r['variant'] for r in results})} variants, up to "
                             f"{seeds} seeds, {epochs} epochs each, {images} training images; {made_where(results)})")
    return [], (f"no reference ablation committed yet for this profile (results/ablation/"
                f"{'full or cpu' if profile.name == 'full' else 'cpu'}/ is empty)")


def figure_source(results: list[dict]) -> str:
    """A figure title's line on which runs it shows, e.g. "committed cpu-profile reference runs:
    4,000 training images, 60 epochs".

    Notebooks: used in 05.
    """
    profiles = " and ".join(sorted({r["profile"] for r in results}))
    images, epochs = _sizes(results)
    return f"committed {profiles}-profile reference runs: {images} training images, {epochs} epochs"


def _sizes(results: list[dict]) -> tuple[str, str]:
    """The runs' training-set sizes and epoch counts, as text ("4,000", "60" or "60 or 100")."""
    def listed(values):
        return " or ".join(f"{v:,}" for v in sorted(values))
    return listed({r["train_images"] for r in results}), listed({r["config"]["epochs"] for r in results})


def made_where(results: list[dict]) -> str:
    """Where and from which code a set of runs was made, over all of them: "made on <device(s)>
    at commit <c>", or "at 15 commits, 7 of them with uncommitted changes (-dirty)" when the runs
    span several."""
    devices = sorted({r["device"] for r in results})
    commits = sorted({r["commit"] for r in results})
    dirty = sum(c.endswith("-dirty") for c in commits)
    if len(commits) == 1:
        code = f"commit {commits[0]}"
    else:
        code = f"{len(commits)} commits" + (f", {dirty} of them with uncommitted changes (-dirty)" if dirty else "")
    return f"made on {' and '.join(devices)} at {code}"


def family_of(name: str) -> str:
    """The family of a protocol variant, by its name; Table 8's other rows belong to none."""
    if name in TABLE_8_ROWS:
        raise ValueError(f"{name} is one of Table 8's other rows, outside the protocol's families: "
                         f"helpers.ablate.table_8_rows compares it with full.")
    if name.startswith("full+"):
        return "distillation"
    return "leave-one-out" if name.startswith("full-") else "cumulative"


def seeds_label(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def mean_and_se_per_epoch(runs: list[dict], key: str) -> tuple[list, list, list]:
    """Epochs where every run recorded `key`, and the mean and standard error over runs there
    (s.e. 0 with one run)."""
    rows = [{r["epoch"]: r[key] for r in run["history"] if r.get(key) is not None} for run in runs]
    epochs = sorted(set.intersection(*(set(row) for row in rows)))
    values = [[row[e] for row in rows] for e in epochs]
    return (epochs, [statistics.fmean(v) for v in values],
            [statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else 0.0 for v in values])


def plot_band(ax, runs: list[dict], key: str, colour, label: str, **line):
    """The mean over runs of history[key] per epoch, with a ± s.e. band."""
    epochs, mean, se = mean_and_se_per_epoch(runs, key)
    ax.plot(epochs, mean, color=colour, label=label, **line)
    ax.fill_between(epochs, [m - s for m, s in zip(mean, se)], [m + s for m, s in zip(mean, se)],
                    color=colour, alpha=0.25, linewidth=0)


def plot_validation_curves(results: list[dict], names: list[str], ax=None, title: str = ""):
    """Validation accuracy per epoch, mean ± s.e. over seeds, for each named variant.

    Notebooks: used in 05.
    """
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    by_family = {f: [n for n in names if family_of(n) == f] for f in FAMILIES}
    # The full recipe among leave-one-out or distilled variants is their baseline: black, and drawn
    # last so that no band hides it.
    baseline = "full" if "full" in names and any(family_of(n) != "cumulative" for n in names) else None
    for name in sorted(names, key=lambda n: n == baseline):
        runs = [r for r in results if r["variant"] == name]
        if not runs:
            continue
        members = by_family[family_of(name)]
        colour = "black" if name == baseline else \
            FAMILIES[family_of(name)](0.35 + 0.6 * members.index(name) / max(1, len(members) - 1))
        plot_band(ax, runs, "val_acc", colour, f"{name} ({seeds_label(len(runs))})")
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not ax.lines:
        ax.text(0.5, 0.5, "no finished runs of these variants yet", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
        return ax
    # Beside the axes, never on the curves (a group can have eight variants).
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


def plot_contributions(results: list[dict], ax=None, title: str = ""):
    """Each ingredient's paired effect (added and removed) with ± s.e. bars, beside the paper's
    Table 8 change from removing it (DeiT-B on ImageNet).

    Horizontal bars, one row per ingredient: long names such as "soft-distillation-batchmean"
    then read level and never run into each other.

    Notebooks: used in 05.
    """
    rows = contributions(results)
    ax = ax or plt.subplots(figsize=(10, 0.45 * len(rows) + 1))[1]
    height, positions, handles = 0.27, range(len(rows)), []
    series = ((-height, "added", "tab:blue", "added (cumulative;\ndistillation: on top of full)"),
              (0.0, "removed", "tab:orange", "cost of removing it"))
    for offset, key, colour, label in series:
        values = [r[key] for r in rows]
        ys = [p + offset for p, v in zip(positions, values) if v is not None]
        ax.barh(ys, [v["mean"] for v in values if v is not None], height, color=colour,
                xerr=[v["se"] or 0.0 for v in values if v is not None], capsize=2)
        # A drawn patch, so that a series without runs yet still shows its colour in the legend.
        handles.append(Patch(color=colour, label=label + ("" if ys else " (no runs yet)")))
    paper = [(p + height, r) for p, r in zip(positions, rows) if r["paper_removed"] is not None]
    trained = [(y, r["paper_removed"]) for y, r in paper if r["paper_converged"]]
    ax.barh([y for y, _ in trained], [v for _, v in trained], height, color="grey", hatch="//")
    handles.append(Patch(facecolor="grey", hatch="//",
                         label="paper: cost of removing it\n(ImageNet, DeiT-B, Table 8)"))
    for y, r in paper:
        if not r["paper_converged"]:  # the paper's run without it did not train at all
            ax.annotate("paper: did not train", (0, y), xytext=(4, 0), textcoords="offset points",
                        ha="left", va="center", fontsize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(list(positions), [r["ingredient"] for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first ingredient on top, as in the printed table
    ax.set(xlabel="points of validation accuracy", title=title)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


def variant_groups() -> dict[str, list[str]]:
    """Notebooks: used in 05."""
    names = list(variants())
    return {"cumulative": [n for n in names if family_of(n) == "cumulative"],
            "leave-one-out": ["full"] + [n for n in names if family_of(n) == "leave-one-out"],
            "distillation": ["full"] + [n for n in names if family_of(n) == "distillation"]}


def final_accuracies(results: list[dict], names: list[str]) -> dict[str, dict[int, float]]:
    """{variant: {seed: final validation accuracy}} for the named variants that were run.

    Notebooks: used in 05.
    """
    table = by_variant(results, "final_val_acc")
    return {n: table[n] for n in names if n in table}

