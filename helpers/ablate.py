"""`python -m helpers ablate`: what each DeiT ingredient contributes, measured with one protocol.

    python -m helpers ablate --list                        # the variants and their recipes
    python -m helpers ablate                               # every variant, 3 seeds (resumable)
    python -m helpers ablate --only plain full --seeds 3   # some of them
    python -m helpers ablate --summary                     # the tables from the results so far

The protocol, the same at every scale:
  * validation images are held out of the training set (helpers.data.train_validation_split);
    every number compared is the validation accuracy at the FINAL epoch. The test set is
    evaluated once per finished model and reported beside it, never used to choose.
  * every variant runs with the same seeds; seed k seeds every variant's random streams alike,
    so variants that sample alike get the same data order (repeated augmentation samples
    differently by design) and variants that augment alike the same augmented batches. It gives
    the same initial weights only to variants of one shape: a distilled student draws its extra
    token and head from the same random stream, so all its randomly drawn weights but the patch
    embedding differ from the others' (the model code stays as the committed results were
    made). Its comparison with `full` is paired in data order and augmentation, not in
    initialisation;
  * a contribution is the mean over seeds of the paired difference (with minus without the
    ingredient, same seed) with its standard error; helpers.stats says when it is
    distinguishable from zero.
The variants: cumulative (the plain ViT, then one ingredient at a time up to DeiT's recipe),
leave-one-out (the recipe minus one ingredient; minus the last one, repeated augmentation, is
the cumulative "+label-smoothing", so it is trained once: 17 variants), and the recipe plus hard distillation, soft
distillation (the paper's tau 3 and lambda 0.1, KL normalised per element as in DeiT's code)
and soft distillation with the batch-mean KL (K times stronger; notebook 03's hypothesis).

Each run writes results/ablation/<profile>/<variant>-seed<k>.json. Runs go seed by seed (every
variant's seed 0 first), finished runs are skipped (a result trained with other settings stops the
call with the settings named) and interrupted ones resume from
runs/ablation/<profile>/ (runs/ablation/<profile>-<E>ep/ for another --epochs budget);
--time-limit-s stops before a run that would not fit in the time left. --seed K runs seed K
alone: on two cores, a process per seed with --threads 1 trains three seeds at once.

Table 8's other rows (`python -m helpers ablate --only full+dropout full-mixup-cutmix
full-randaugment+autoaugment full+sgd`) run with the same protocol and seeds beside `full`, which
they are compared with; they are not in the default set. full+sgd trains with SGD at the profile's
sgd_lr, which benchmarks/sgd_lr.py chose on validation (the paper gives no SGD learning rate).

--together M trains up to M of the pending runs in the same steps (helpers.together.fit_together:
the same results to float rounding, more work per step for a GPU that one small model leaves
idle): plain and distilled students (extra token and head) form separate groups, filled in the
order above. A group's checkpoint goes to runs/ablation/<profile>/together<n>-<hash of its
runs>/, so the same pending runs resume there; each result is written as a single run's, with
"together": n and train_seconds the group's time / n. A group that runs out of GPU memory is
given up, and the runs left go on in groups half as large. A run with dropout or SGD trains alone.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from helpers.constants import RESULTS as ALL_RESULTS, RUNS
from helpers.errors import check_same_settings, make_folder, reports_errors
from helpers.profile_runs import EVAL_BATCH, profile_config, profile_data, train_in_profile
from helpers.files import read_result, write_json_atomically
from helpers.paper import (SOFT_DISTILLATION_LAMBDA, SOFT_DISTILLATION_TAU, TABLE_8_DEFAULT, TABLE_8_OTHER,
                           table_8_converged, table_8_delta)
from helpers.profiles import PROFILES, Profile, get_profile
from helpers.provenance import provenance
from helpers.recipe import Recipe
from helpers.stats import format_estimate, holm_rejections, mean_and_se, paired_difference
from helpers.train import TrainConfig, evaluate, pick_device, run_identity

RESULTS = ALL_RESULTS / "ablation"
PROTOCOL = 2  # results of another protocol version (e.g. best epoch on the test set) are ignored
SEEDS = 3
FULL = Recipe()
# Each ingredient on its own, in the order the cumulative ablation adds them.
INGREDIENTS = (
    ("randaugment", dict(aa=FULL.aa)),
    ("random-erasing", dict(reprob=FULL.reprob)),
    ("mixup", dict(mixup=FULL.mixup)),
    ("cutmix", dict(cutmix=FULL.cutmix)),
    ("stochastic-depth", dict(drop_path=FULL.drop_path)),
    ("label-smoothing", dict(smoothing=FULL.smoothing)),
    ("repeated-aug", dict(repeated_aug=True)),
)
DISTILLATION = {
    "hard-distillation": dict(distillation_type="hard"),
    "soft-distillation": dict(distillation_type="soft", distillation_alpha=SOFT_DISTILLATION_LAMBDA,
                              distillation_tau=SOFT_DISTILLATION_TAU),
    "soft-distillation-batchmean": dict(distillation_type="soft", distillation_alpha=SOFT_DISTILLATION_LAMBDA,
                                        distillation_tau=SOFT_DISTILLATION_TAU, distillation_kl="batchmean"),
}

# Rows of the paper's Table 8 beyond the ingredients, as changes to DeiT's recipe: run on request
# (--only), not part of the protocol's set. The dropout rate is ViT-B's in Table 9, 0.1, and the
# AutoAugment policy the one its paper lists for ImageNet (helpers.auto_augment): Table 8 states neither.
TABLE_8_ROWS = {
    "full+dropout": ("with dropout", dict(drop=0.1)),
    "full-mixup-cutmix": ("without mixup and cutmix", dict(mixup=0.0, cutmix=0.0)),
    "full-randaugment+autoaugment": ("autoaugment instead of randaugment", dict(aa="original")),
    "full+sgd": ("SGD for pre-training", dict(opt="sgd")),
}


def cumulative_name(index: int) -> str:
    """The cumulative variant that has the first index + 1 ingredients ("full" has them all)."""
    return "full" if index == len(INGREDIENTS) - 1 else f"+{INGREDIENTS[index][0]}"


def variants() -> dict[str, Recipe]:
    """Every variant's recipe, by name: cumulative, leave-one-out, then distillation.

    Notebooks: used in 04, 05.
    """
    found = {"plain": Recipe.plain()}
    recipe = found["plain"]
    for i, (_, fields) in enumerate(INGREDIENTS):
        recipe = recipe.but(**fields)
        found[cumulative_name(i)] = recipe
    assert recipe == FULL, "adding every ingredient must give DeiT's recipe"
    for name, _ in INGREDIENTS:
        recipe = without(name)
        if recipe not in found.values():  # without the last ingredient is the cumulative variant before it
            found[f"full-{name}"] = recipe
    for name, fields in DISTILLATION.items():
        found[f"full+{name}"] = FULL.but(**fields)
    return found


def table_8_variants() -> dict[str, Recipe]:
    """The recipes of TABLE_8_ROWS, by variant name."""
    return {name: FULL.but(**fields) for name, (_, fields) in TABLE_8_ROWS.items()}


def all_variants() -> dict[str, Recipe]:
    """The protocol's variants, then Table 8's other rows: every name the runner takes."""
    return {**variants(), **table_8_variants()}


def without(ingredient: str) -> Recipe:
    """DeiT's recipe with one ingredient set back to the plain recipe's value."""
    plain = Recipe.plain()
    return FULL.but(**{k: getattr(plain, k) for k in dict(INGREDIENTS)[ingredient]})


def leave_one_out_name(ingredient: str) -> str:
    """The variant that is DeiT's recipe without `ingredient` ("full-<ingredient>", or for the
    last ingredient the cumulative variant before it, which is the same recipe)."""
    return next(name for name, recipe in variants().items() if recipe == without(ingredient))


def result_path(results_dir: Path, profile: Profile, variant: str, seed: int) -> Path:
    return results_dir / profile.name / f"{variant}-seed{seed}.json"


def runs_folder(runs_dir: Path, profile: Profile, epochs: int | None) -> Path:
    """Where the profile's checkpoints go; another epoch budget gets its own folder, so that a
    second budget (in another --results-dir) never meets the first one's checkpoints."""
    return runs_dir / (profile.name if epochs in (None, profile.epochs) else f"{profile.name}-{epochs}ep")


RESULT_KEYS = ("variant", "seed", "final_val_acc", "test_acc")  # what the tables read
RUN_SIZES = ("model", "train_images", "val_images", "test_images")


def run_sizes(profile: Profile) -> dict:
    """A result's RUN_SIZES: its model's shape and how many images it trained and was measured on."""
    return dict(zip(RUN_SIZES, (profile.vit_sizes, profile.train_size, profile.val_size, profile.test_size)))


def unknown_variants(names) -> str | None:
    """What is wrong with these variant names, or None if every one is a variant."""
    unknown = [n for n in names if n not in all_variants()]
    return f"unknown variants {unknown}; `python -m helpers ablate --list` shows them." if unknown else None


def run_config(profile: Profile, recipe: Recipe, seed: int, epochs: int | None, compile: bool,
               **changes) -> TrainConfig:
    """One run's TrainConfig: the profile's, with the run's seed and the recipe's label smoothing and
    optimizer (and its settings in the profile); `changes` override any field."""
    return profile_config(profile, seed=seed, smoothing=recipe.smoothing, opt=recipe.opt, compile=compile,
                          **({"epochs": epochs} if epochs else {}), **changes)


def run_variant(variant: str, recipe: Recipe, profile: Profile, seed: int, *, results_dir: Path,
                runs_dir: Path, epochs: int | None = None, teacher=None, device=None, progress=True,
                on_epoch=None, config_changes: dict | None = None) -> dict:
    """Train one variant with one seed (or resume it), write its result JSON and return it.
    on_epoch(history) is fit's hook, called after every epoch; config_changes override TrainConfig
    fields (e.g. a learning rate being tried)."""
    device = device or pick_device()
    config = run_config(profile, recipe, seed, epochs, compile=device.type == "cuda", **(config_changes or {}))
    torch.manual_seed(seed)  # paired seeds: the same initial weights in every variant of one shape
    started = time.perf_counter()
    history = train_in_profile(f"{variant}-seed{seed}", profile=profile, recipe=recipe, teacher=teacher,
                               run_dir=runs_folder(runs_dir, profile, epochs) / f"{variant}-seed{seed}", device=device,
                               progress=progress, on_epoch=on_epoch, **asdict(config))
    return write_result(variant, recipe, profile, seed, config, history, teacher=teacher, results_dir=results_dir,
                        wall_clock_s=time.perf_counter() - started)


def write_result(variant: str, recipe: Recipe, profile: Profile, seed: int, config: TrainConfig, history: list[dict],
                 *, teacher, results_dir: Path, wall_clock_s: float, together: int | None = None) -> dict:
    """Write one run's result JSON and return it. A run trained in a group of `together` shares the
    group's time: train_seconds and wall_clock_seconds_this_session are the group's divided by it."""
    final = history[-1]
    result = {
        "protocol": PROTOCOL, "variant": variant, "seed": seed, "profile": profile.name,
        "final_val_acc": final["val_acc"], "test_acc": final["test_acc"],
        "train_seconds": sum(r["seconds"] for r in history) / (together or 1),
        "wall_clock_seconds_this_session": wall_clock_s / (together or 1),
        **({"together": together} if together else {}),
        "recipe": recipe.as_dict(), "config": asdict(config), **run_sizes(profile),
        "teacher": getattr(teacher, "info", None) and {k: v for k, v in teacher.info.items() if k != "history"},
        "history": history, **provenance(),
    }
    write_json_atomically(result, result_path(results_dir, profile, variant, seed))
    return result


def distilled(recipe: Recipe) -> bool:
    """A distilled student has a DIST token and head: another shape, so another group.

    Notebooks: used in 04.
    """
    return recipe.distillation_type != "none"


def trains_together(recipe: Recipe) -> bool:
    """Whether helpers.together.fit_together can train the recipe: not with dropout, and only with AdamW."""
    return recipe.drop == 0 and recipe.opt == "adamw"


def together_groups(pending: list[tuple[str, int]], table: dict[str, Recipe], size: int) -> list[list[tuple[str, int]]]:
    """The pending (variant, seed) runs, in the runner's order, cut into groups of at most `size`
    runs of one model shape; the groups in the order of their first run. Finishing a group removes
    a whole group from the front of its shape's runs, so the next call forms the same later groups."""
    by_shape: dict[bool, list] = {}
    for run in pending:
        by_shape.setdefault(distilled(table[run[0]]), []).append(run)
    groups = []
    for runs in by_shape.values():
        # As few groups as fit, their sizes within one of each other (so few graphs to compile, no
        # small tail group); the first group finished leaves the same split of the rest.
        count = -(-len(runs) // size)
        start = 0
        for k in range(count):
            end = start + len(runs) // count + (k < len(runs) % count)
            groups.append(runs[start:end])
            start = end
    return sorted(groups, key=lambda group: pending.index(group[0]))


def group_folder(group: list[tuple[str, int]]) -> str:
    """The group's run folder, named from its runs: the same runs find the same checkpoint."""
    names = [f"{variant}-seed{seed}" for variant, seed in group]
    return f"together{len(group)}-{hashlib.sha1(' '.join(names).encode()).hexdigest()[:12]}"


def run_group(group: list[tuple[str, int]], table: dict[str, Recipe], profile: Profile, *, results_dir: Path,
              runs_dir: Path, epochs: int | None = None, teacher=None, device=None, progress=True,
              checkpoints: bool = True) -> list[dict]:
    """Train a group of runs of one model shape together (or resume it; without checkpoints, where
    the machine keeps nothing anyway, every epoch's save of M stacked states is skipped), then write each run's
    result as run_variant does. Each model gets what its single run gets: the same seeded initial
    weights, data order, recipe and config (compiled on a GPU, as fit_together compiles a group)."""
    from helpers.together import Member, fit_together

    device = device or pick_device()
    train, val, test = profile_data(profile)
    members = []
    for variant, seed in group:
        recipe = table[variant]
        config = run_config(profile, recipe, seed, epochs, compile=device.type == "cuda")
        torch.manual_seed(seed)  # as run_variant seeds before train_in_profile builds the model
        model = recipe.build_model(**profile.vit_sizes)
        members.append(Member(model, recipe.train_batches(train, config.batch_size, config.seed).to(device), config,
                              recipe.batch_transform(), recipe.loss_fn(teacher), {"recipe": recipe.as_dict()},
                              f"{variant}-seed{seed}"))
    started = time.perf_counter()
    run_dir = runs_folder(runs_dir, profile, epochs) / group_folder(group) if checkpoints else None
    histories = fit_together(members, _eval_batches(val, device), run_dir=run_dir, device=device, log_epochs=progress)
    for member, history in zip(members, histories):  # the test set, once per finished model
        tested = evaluate(member.model, _eval_batches(test, device), device)
        history[-1] = {**history[-1], "test_loss": tested["val_loss"], "test_acc": tested["val_acc"]}
    wall_clock_s = time.perf_counter() - started
    return [write_result(variant, table[variant], profile, seed, member.config, history, teacher=teacher,
                         results_dir=results_dir, wall_clock_s=wall_clock_s, together=len(group))
            for (variant, seed), member, history in zip(group, members, histories)]


def _eval_batches(arrays, device):
    from helpers.data import TensorBatches
    return TensorBatches(arrays, EVAL_BATCH, shuffle=False).to(device)


def teacher_for(recipes, teacher, profile: Profile, device):
    """The teacher, loaded (or trained) the first time one of the recipes distills."""
    if teacher is None and any(distilled(recipe) for recipe in recipes):
        from helpers.teacher import load_or_train_teacher
        teacher = load_or_train_teacher(profile, train_if_missing=True, device=device).to_device(device)
    return teacher


@dataclass
class RunCosts:
    """What the runner expects a run or a group to take, for --time-limit-s: seconds of one plain
    run's training (its share of a group's steps), a distilled run's cost relative to a plain one
    (the teacher's forward in every step), the compile time of a graph (model shape and group
    size) not yet trained in this process, and the teacher's training until it is loaded. After
    each run or group, run_s becomes what that one took. Under --together a run that trains alone
    (dropout, SGD) is timed apart, as alone_s: a whole run's seconds, not a group member's share
    (until one is measured, the share stands in)."""
    run_s: float = 0.0
    distilled_cost: float = 1.0
    compile_s: float = 0.0
    teacher_s: float = 0.0
    graphs: set = field(default_factory=set)
    alone_s: float | None = None

    def expected_s(self, size: int, is_distilled: bool, needs_teacher: bool, alone: bool = False) -> float:
        per_run = self.alone_s if alone and self.alone_s is not None else self.run_s
        return (size * per_run * self._cost(is_distilled) + self._compiling(size, is_distilled)
                + (self.teacher_s if needs_teacher else 0.0))

    def measured(self, size: int, is_distilled: bool, seconds: float, alone: bool = False) -> None:
        """Record a run or group of `size` that took `seconds` (the teacher's training not included);
        alone: a run trained by itself while the others train in groups."""
        per_run = max(0.0, seconds - self._compiling(size, is_distilled)) / size / self._cost(is_distilled)
        if alone:
            self.alone_s = per_run
        else:
            self.run_s = per_run
        self.graphs.add((is_distilled, size))

    def _cost(self, is_distilled: bool) -> float:
        return self.distilled_cost if is_distilled else 1.0

    def _compiling(self, size: int, is_distilled: bool) -> float:
        return 0.0 if (is_distilled, size) in self.graphs else self.compile_s


def out_of_time(what: str, unit: str, elapsed_s: float, expected_s: float, time_limit_s: float | None) -> bool:
    """True, with a message, if `what` (one `unit`, expected to take expected_s) would end past the limit."""
    if time_limit_s is not None and elapsed_s + expected_s > time_limit_s:
        print(f"Stopping before {what}: {elapsed_s:.0f} s used, {unit} takes about {expected_s:.0f} s and "
              f"the limit is {time_limit_s:.0f} s. Run again to go on.")
        return True
    return False


def check_same_run(found: dict, config: TrainConfig, recipe: Recipe, path: Path, recorded: dict | None = None) -> None:
    """A finished run is reused only if it was trained as this call would train it: the same
    config (epochs, learning rate, ...) and recipe, and the `recorded` values (a result's
    RUN_SIZES: model and data sizes). Else stop and say how to keep both, rather than compare runs
    of two protocols."""
    recorded = recorded or {}
    # fields added to TrainConfig or Recipe since the run was written take their defaults
    saved = {**run_identity(TrainConfig(**found.get("config", {})), {"recipe": found.get("recipe", {})}),
             **{key: found.get(key) for key in recorded}}
    now = {**run_identity(config, {"recipe": recipe.as_dict()}), **recorded}
    check_same_settings(saved, now, path, "Use another --results-dir for these settings, or delete the old "
                                          "results to replace them.")


def load_results(profile_name: str, results_dir: Path = RESULTS) -> list[dict]:
    """Every result of this protocol for one profile (empty if none were made yet).

    Notebooks: used in 02, 05.
    """
    folder = results_dir / profile_name
    found = {path: read_result(path) for path in sorted(folder.glob("*.json"))} if folder.is_dir() else {}
    results = []
    for path, result in found.items():
        if result.get("protocol") != PROTOCOL:
            continue
        if missing := [key for key in RESULT_KEYS if key not in result]:
            raise SystemExit(f"error: {path} lacks {missing}, so it is not a whole result. Restore it (git "
                             f"checkout) or delete it to train that run again.")
        results.append(result)
    if len(results) < len(found):  # said, not silently dropped: someone may expect them counted
        print(f"note: {len(found) - len(results)} file(s) in {folder} are not results of protocol {PROTOCOL} "
              f"(helpers.ablate) and are left out.", file=sys.stderr)
    return results


def by_variant(results: list[dict], key: str) -> dict[str, dict[int, float]]:
    """{variant: {seed: result[key]}}."""
    table: dict[str, dict[int, float]] = {}
    for r in results:
        table.setdefault(r["variant"], {})[r["seed"]] = r[key]
    return table


def summarize(results: list[dict], names=None) -> list[dict]:
    """Per variant (in `names` order, default all found): seeds, and mean ± s.e. of the final
    validation accuracy and of the test accuracy.

    Notebooks: used in 02, 03, 05.
    """
    val, test = by_variant(results, "final_val_acc"), by_variant(results, "test_acc")
    rows = []
    for name in names or list(val):
        if name in val:
            v_mean, v_se = mean_and_se(list(val[name].values()))
            t_mean, t_se = mean_and_se(list(test[name].values()))
            rows.append({"variant": name, "seeds": len(val[name]), "val_acc": v_mean, "val_se": v_se,
                         "test_acc": t_mean, "test_se": t_se})
    return rows


def contributions(results: list[dict]) -> list[dict]:
    """Each ingredient's effect on final validation accuracy (points), as paired differences
    over seeds: `added` (the cumulative variant with it minus the one before) and `removed`
    (the full recipe minus the recipe without it), with the paper's Table 8 change beside it;
    then each distillation against the full recipe.

    Notebooks: used in 02, 03, 05.
    """
    val = by_variant(results, "final_val_acc")

    def diff(better: str, worse: str):
        if better not in val or worse not in val:
            return None
        return {**paired_difference(val[better], val[worse]), "pair": (better, worse)}

    rows, previous = [], "plain"
    for i, (name, _) in enumerate(INGREDIENTS):
        rows.append({"ingredient": name, "added": diff(cumulative_name(i), previous),
                     "removed": diff("full", leave_one_out_name(name)), "paper_removed": table_8_delta(name),
                     "paper_converged": table_8_converged(name)})
        previous = cumulative_name(i)
    for name in DISTILLATION:
        rows.append({"ingredient": name, "added": diff(f"full+{name}", "full"), "removed": None,
                     "paper_removed": None, "paper_converged": None})
    # Holm's correction over the table's distinct comparisons, marked on every cell that shows one
    tests = paired_tests(rows)
    holm = dict(zip((t["pair"] for t in tests), holm_rejections([t["p"] for t in tests])))
    tested = sum(t["p"] is not None for t in tests)
    for row in rows:
        for d in (row["added"], row["removed"]):
            if d is not None:
                d.update(holm=holm[d["pair"]], tests_in_table=tested)
    return rows


def table_8_rows(results: list[dict]) -> list[dict]:
    """Table 8's other rows that were run: each one's paired difference from `full` (final
    validation accuracy, points; Holm's correction over the rows shown) beside the paper's change
    from its default recipe (DeiT-B, 224 px). A row without a result in common with `full` is left out.

    Notebooks: used in 02, 05.
    """
    val = by_variant(results, "final_val_acc")
    rows = []
    for name, (row_name, _) in TABLE_8_ROWS.items():
        if name in val and "full" in val and (d := paired_difference(val[name], val["full"])) is not None:
            paper = round(TABLE_8_OTHER[row_name]["top1_224"] - TABLE_8_DEFAULT["top1_224"], 1)
            rows.append({"variant": name, "row": row_name, "difference": d, "paper": paper})
    for row, holm in zip(rows, holm_rejections([r["difference"]["p"] for r in rows])):
        row["difference"]["holm"] = holm
    return rows


TABLE_8_HEADER = ("Table 8 row", "variant", "seeds", "here, vs full", "paper, vs default")


def table_8_cells(row: dict) -> tuple[str, ...]:
    d = row["difference"]
    marks = ("*" if d["distinguishable"] else "") + ("†" if d["holm"] else "")
    return (row["row"], row["variant"], str(d["n"]), format_estimate(d["mean"], d["se"], signed=True) + f"{marks:2s}",
            f"{row['paper']:+.1f}")


def print_table_8_rows(rows: list[dict]) -> None:
    """Notebooks: used in 02, 05."""
    _print_table(TABLE_8_HEADER, [table_8_cells(r) for r in rows], widths=(-35, -29, 5, 16, 17))
    print(table_8_footnote(rows))


def table_8_footnote(rows: list[dict]) -> str:
    tested = sum(r["difference"]["p"] is not None for r in rows)
    return (f"points of final validation accuracy, mean ± s.e. of the paired differences over seeds; * distinguishable "
            f"from zero (paired t-test, 5 %); † still so after Holm's correction over the {tested} tested "
            f"row{'s' * (tested != 1)} shown; paper: DeiT-B on ImageNet at 224 px, Table 8 (arXiv 2012.12877v2), "
            f"the row minus the default recipe's {TABLE_8_DEFAULT['top1_224']} ± {TABLE_8_DEFAULT['pm_224']} "
            f"(the rows themselves have no ±)")


def paired_tests(rows: list[dict]) -> list[dict]:
    """The distinct paired comparisons among contributions() rows, each once: the last
    ingredient's `added` and `removed` compare the same two variants and count as one.

    Notebooks: used in 05.
    """
    found = {}
    for row in rows:
        for key in ("added", "removed"):
            if row[key] is not None:
                found.setdefault(row[key]["pair"], row[key])
    return list(found.values())


SUMMARY_HEADER = ("variant", "seeds", "final val acc %", "test acc %")
CONTRIBUTIONS_HEADER = ("ingredient", "added", "removed", "paper (removed)")
def contributions_footnote(rows: list[dict]) -> str:
    """The line under a contributions table; it notes the last ingredient's double row if shown."""
    last = INGREDIENTS[-1][0]
    twice = any(r["ingredient"] == last and r["added"] and r["removed"] for r in rows)
    tests = max((d["tests_in_table"] for r in rows for d in (r["added"], r["removed"]) if d), default=0)
    return ("points of final validation accuracy, mean ± s.e. of the paired differences over seeds; "
            "* distinguishable from zero (paired t-test, 5 %, each test on its own); "
            + (f"† still so after Holm's correction over the whole ablation table's {tests} distinct test{'s' * (tests > 1)}; "
               if tests else "")
            + (f"{last}: added and removed are one comparison (full vs {cumulative_name(len(INGREDIENTS) - 2)}), "
               "shown twice; " if twice else "")
            + "paper: DeiT-B on ImageNet, Table 8 (arXiv 2012.12877v2)")


def summary_cells(row: dict) -> tuple[str, ...]:
    """One summarize() row as text, in SUMMARY_HEADER's order (printed here, written in the README)."""
    return (row["variant"], str(row["seeds"]), format_estimate(row["val_acc"], row["val_se"]),
            format_estimate(row["test_acc"], row["test_se"]))


def contribution_cells(row: dict) -> tuple[str, ...]:
    """One contributions() row as text, in CONTRIBUTIONS_HEADER's order; * marks a difference
    distinguishable from zero (paired t, 5 %), † one that stays so after Holm's correction."""
    def cell(d):
        if d is None:
            return "-"
        marks = ("*" if d["distinguishable"] else "") + ("†" if d["holm"] else "")
        return format_estimate(d["mean"], d["se"], signed=True) + f"{marks:2s}"
    paper = "-" if row["paper_removed"] is None else (
        "did not train" if row["paper_converged"] is False else f"{row['paper_removed']:+.1f}")
    return row["ingredient"], cell(row["added"]), cell(row["removed"]), paper


def print_summary(rows: list[dict]) -> None:
    """Notebooks: used in 02, 03, 05."""
    _print_table(SUMMARY_HEADER, [summary_cells(r) for r in rows], widths=(-32, 5, 16, 14))


def print_contributions(rows: list[dict]) -> None:
    """The contributions table.

    Notebooks: used in 02, 03, 05.
    """
    _print_table(CONTRIBUTIONS_HEADER, [contribution_cells(r) for r in rows], widths=(-28, 16, 16, 16))
    print(contributions_footnote(rows))


def _print_table(header, rows, widths) -> None:
    """Fixed-width columns; a negative width aligns left."""
    for cells in [header, *rows]:
        print(" ".join(f"{c:<{-w}s}" if w < 0 else f"{c:>{w}s}" for c, w in zip(cells, widths)))


def run_ablation(names=None, seeds: int | list[int] = SEEDS, profile: Profile | None = None, epochs: int | None = None,
                 results_dir: Path = RESULTS, runs_dir: Path = RUNS / "ablation", progress=True,
                 time_limit_s: float | None = None, costs: RunCosts | None = None, together: int | None = None,
                 group_checkpoints: bool = True) -> list[dict]:
    """Run the named variants (default: all) for seeds 0..seeds-1 (or the listed seeds), seed by
    seed; skip those whose result exists. With time_limit_s, stop before a run expected to end past the limit
    (expected: by `costs`, RunCosts, which learns from each run). With together=M, the pending
    runs train in groups of up to M (run_together); results come back in the same order.

    Notebooks: used in 05.
    """
    profile = profile or get_profile()
    table = all_variants()
    names = list(names or variants())
    if wrong := unknown_variants(names):
        raise SystemExit(f"error: {wrong}")
    if together is not None and together < 1:
        raise SystemExit(f"--together needs at least 1 model per group, not {together}.")
    device = pick_device()
    costs = costs or RunCosts()
    teacher, results, pending, started = None, [], [], time.perf_counter()
    seeds = range(seeds) if isinstance(seeds, int) else list(seeds)
    for seed in seeds:
        for name in names:
            path = result_path(results_dir, profile, name, seed)
            if path.exists() and (found := read_result(path)).get("protocol") == PROTOCOL:
                check_same_run(found, run_config(profile, table[name], seed, epochs, compile=False), table[name],
                               path, run_sizes(profile))
                results.append(found)
                continue
            if together and trains_together(table[name]):
                pending.append((name, seed))
                continue
            is_distilled = distilled(table[name])
            alone = bool(together)  # it cannot join a group (trains_together): time it apart from their shares
            expected = costs.expected_s(1, is_distilled, is_distilled and teacher is None, alone)
            if out_of_time(f"{name} seed {seed}", "a run", time.perf_counter() - started, expected, time_limit_s):
                return results
            teacher = teacher_for([table[name]], teacher, profile, device)
            print(f"{name} seed {seed}: training", flush=True)
            run_started = time.perf_counter()
            results.append(run_variant(name, table[name], profile, seed, results_dir=results_dir,
                                       runs_dir=runs_dir, epochs=epochs, teacher=teacher, device=device,
                                       progress=progress))
            costs.measured(1, is_distilled, time.perf_counter() - run_started, alone)
    if together:
        results += run_together(pending, table, profile, together, started, results_dir=results_dir, runs_dir=runs_dir,
                                epochs=epochs, device=device, progress=progress, time_limit_s=time_limit_s,
                                costs=costs, checkpoints=group_checkpoints)
        order = [(name, seed) for seed in seeds for name in names]
        results.sort(key=lambda r: order.index((r["variant"], r["seed"])))
    return results


def run_together(pending, table, profile: Profile, size: int, started: float, *, time_limit_s: float | None,
                 costs: RunCosts, teacher=None, **run_args) -> list[dict]:
    """The pending runs, trained in groups (together_groups) one group after another. With
    time_limit_s, stop before a group expected (by costs) to end past it. A group that runs out
    of GPU memory is given up, and the runs left go on in groups half as large."""
    results = []
    for group in together_groups(pending, table, size):
        label = ", ".join(f"{variant} seed {seed}" for variant, seed in group)
        is_distilled = distilled(table[group[0][0]])
        expected = costs.expected_s(len(group), is_distilled, is_distilled and teacher is None)
        if out_of_time(f"the group {label}", "a group", time.perf_counter() - started, expected, time_limit_s):
            break
        teacher = teacher_for([table[variant] for variant, _ in group], teacher, profile, run_args["device"])
        print(f"{len(group)} runs together ({label}): training", flush=True)
        group_started = time.perf_counter()
        try:
            finished = run_group(group, table, profile, teacher=teacher, **run_args)
        except torch.OutOfMemoryError:
            finished = None
        if finished is None:  # out of the except block, whose traceback holds the group's tensors
            if size == 1:
                raise SystemExit(f"error: one model alone ran out of GPU memory at batch {profile.batch_size}: "
                                 f"free the GPU of other processes, or use one with more memory.")
            gc.collect()
            torch.cuda.empty_cache()
            print(f"{len(group)} models together ran out of GPU memory: the runs left go on in groups of "
                  f"at most {size // 2}", flush=True)
            done = {(r["variant"], r["seed"]) for r in results}
            rest = [run for run in pending if run not in done]
            return results + run_together(rest, table, profile, size // 2, started, time_limit_s=time_limit_s,
                                          costs=costs, teacher=teacher, **run_args)
        results += finished
        costs.measured(len(group), is_distilled, time.perf_counter() - group_started)
    return results


@reports_errors
def main(argv=None) -> int:
    from helpers.cli import non_negative_int, positive_int

    parser = argparse.ArgumentParser(prog="python -m helpers ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="VARIANT")
    parser.add_argument("--seeds", type=positive_int, default=SEEDS, help=f"seeds 0..N-1 for every variant (default {SEEDS})")
    parser.add_argument("--seed", type=non_negative_int, metavar="K",
                        help="seed K only, in place of --seeds (several processes with --threads 1 share the cores)")
    parser.add_argument("--profile", choices=list(PROFILES))
    parser.add_argument("--epochs", type=positive_int, help="override the profile's epochs (same for every run)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--list", action="store_true", help="print the variants and stop")
    parser.add_argument("--summary", action="store_true", help="print the tables of the results so far and stop")
    parser.add_argument("--time-limit-s", type=float,
                        help="stop before a run (with --together: a group) that would end past this")
    parser.add_argument("--expected-run-s", type=float, default=0.0,
                        help="a plain run's training seconds (with --together: its share of a group's) until one is measured")
    parser.add_argument("--compile-s", type=float, default=0.0,
                        help="seconds to compile each model shape and group size, the first time (with --time-limit-s)")
    parser.add_argument("--distilled-cost", type=float, default=1.0,
                        help="a distilled run's time over a plain one's: the teacher's forward (with --time-limit-s)")
    parser.add_argument("--teacher-s", type=float, default=0.0,
                        help="seconds to train the teacher if it is not saved yet (with --time-limit-s)")
    parser.add_argument("--together", type=positive_int, metavar="M",
                        help="train up to M runs in the same steps (helpers.together.fit_together; plain and "
                             "distilled students in separate groups), compiled on a GPU as single runs are")
    parser.add_argument("--no-group-checkpoints", action="store_true",
                        help="with --together: save no checkpoint of a group after each epoch (M models' states; "
                             "for a machine that keeps nothing after the run, such as a GPU window)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (1 lets two runners share two cores)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.list:
        for name, recipe in variants().items():
            print(f"{name:32s} {recipe}")
        print("\nTable 8's other rows (run with --only; not in the protocol's set):")
        for name, recipe in table_8_variants().items():
            print(f"{name:32s} {recipe}")
        return 0
    profile = get_profile(args.profile)
    if args.summary:
        results = load_results(profile.name, args.results_dir)
        if not results:
            raise SystemExit(f"error: no {profile.name}-profile results of this protocol in {args.results_dir / profile.name}: "
                              f"check --results-dir and --profile (DEIT_PROFILE), or run the ablation first.")
    else:
        if wrong := unknown_variants(args.only or []):  # before a folder is made for them
            parser.error(wrong)
        make_folder(args.results_dir, "Choose another --results-dir")
        run_ablation(args.only, args.seeds if args.seed is None else [args.seed], profile, args.epochs, args.results_dir,
                     progress=not args.no_progress, time_limit_s=args.time_limit_s,
                     costs=RunCosts(args.expected_run_s, args.distilled_cost, args.compile_s, args.teacher_s),
                     together=args.together, group_checkpoints=not args.no_group_checkpoints)
        # the tables of every result there, so that --only's runs are compared with the others (Table 8's with full)
        results = load_results(profile.name, args.results_dir)
    print()
    print_summary(summarize(results, list(variants())))
    print()
    print_contributions(contributions(results))
    if rows := table_8_rows(results):
        print()
        print_table_8_rows(rows)
    return 0
