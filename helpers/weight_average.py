"""An exponential moving average (EMA) of a model's weights, and how long its memory is.

After every optimizer step, average <- decay * average + (1 - decay) * weights. The average
forgets a step's weights by a factor `decay` per later step: its memory spans about
1 / (1 - decay) steps (the mean age of what it holds, counting the newest step as 1).

DeiT's code keeps one; its recipe (Table 9 of arXiv 2012.12877 v2) does not. DeiT's main.py turns
--model-ema on by default with --model-ema-decay 0.99996 (timm's ModelEma, updated after every
step in engine.py's train_one_epoch) and saves it in the checkpoint, but evaluates the raw model.
The paper reports the EMA apart: Table 8's row "with EMA", 81.9 % top-1 at 224 px against the
recipe's 81.8 %, and Section 6's paragraph on it: a small edge that fine-tuning at 384 px removes.

A decay is a number of steps, not a fraction of training: DeiT's 0.99996 remembers 25,000
steps, 20 of its 300 ImageNet epochs (1,251 steps each at batch 1,024). Over a short run the same
decay barely leaves the initial weights; scaled_decay keeps DeiT's fraction of training instead.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

DEIT_DECAY = 0.99996  # DeiT's main.py, --model-ema-decay
DEIT_STEPS = 300 * 1251  # 300 epochs of 1,281,167 ImageNet images in batches of 1,024 (Table 9)


def memory_steps(decay: float) -> float:
    """How many steps an average with this decay remembers: 1 / (1 - decay), the mean age of
    the weights it holds (the newest step counted as 1).

    Notebooks: used in 02.
    """
    return 1.0 / (1.0 - decay)


def initial_share(decay: float, steps: int) -> float:
    """The share of the initial weights still in the average after `steps` updates: decay**steps.

    Notebooks: used in 02.
    """
    return decay ** steps


def scaled_decay(total_steps: int, decay: float = DEIT_DECAY, reference_steps: int = DEIT_STEPS) -> float:
    """The decay whose memory is the same fraction of a run of total_steps steps as `decay`'s is
    of reference_steps (by default: DeiT's, 6.7 % of its training). A memory under one step
    is one step: decay 0, the average is the model itself.

    Notebooks: used in 02.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, not {total_steps}.")
    return 1.0 - 1.0 / max(1.0, memory_steps(decay) * total_steps / reference_steps)


def decay_key(decay: float) -> str:
    """The decay as a checkpoint names its average: 12 significant digits, so that decays a
    millionth apart (or 0.9999996, which "%g" would print as 1) keep apart."""
    return f"{decay:.12g}"


def ema_key(decay: float, metric: str) -> str:
    """A history record's key for an average's metric, e.g. ema_key(0.99, "val_acc") -> "val_acc_ema0.99"."""
    return f"{metric}_ema{decay_key(decay)}"


class WeightAverage:
    """An EMA of a model's weights, kept in a copy of the model (`.module`) that can be evaluated.

    Floating-point parameters and buffers are averaged, other buffers (counters) copied. It
    starts from the model's weights when made, as DeiT's does (no warmup).

    Notebooks: used in 02.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), not {decay} "
                             f"(DeiT uses {DEIT_DECAY}; helpers.weight_average.scaled_decay gives one for a shorter run).")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def _pairs(self, model: nn.Module):
        mine, theirs = self.module.state_dict(), model.state_dict()
        if mine.keys() != theirs.keys():
            raise ValueError("This WeightAverage was made from another model; make one from this model.")
        return [(mine[k], theirs[k]) for k in mine]

    @torch.no_grad()
    def restart(self, model: nn.Module) -> None:
        """Start again from the model's weights (under DDP: rank 0's, once broadcast)."""
        for mine, theirs in self._pairs(model):
            mine.copy_(theirs)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        averaged, copied = [], []
        for mine, theirs in self._pairs(model):
            (averaged if mine.is_floating_point() else copied).append((mine, theirs.detach()))
        if averaged:  # one multi-tensor kernel per call on a GPU, not one per tensor
            torch._foreach_lerp_([m for m, _ in averaged], [t for _, t in averaged], 1.0 - self.decay)
        for mine, theirs in copied:
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if decay_key(state["decay"]) != decay_key(self.decay):
            raise ValueError(f"The saved average has decay {state['decay']!r}, this one {self.decay!r}: "
                             f"make this one with the saved decay.")
        self.module.load_state_dict(state["module"])


# --- The committed measurement: benchmarks/weight_average.py ------------------------------------

# The averages each run keeps, by label: a decay from the run's total number of steps.
HORIZONS = {
    "DeiT's decay as written": lambda total_steps: DEIT_DECAY,
    "DeiT's share of training": lambda total_steps: scaled_decay(total_steps),
    "three times that share": lambda total_steps: scaled_decay(total_steps, 1 - (1 - DEIT_DECAY) / 3),
}


def horizon_decays(total_steps: int) -> dict[str, float]:
    """HORIZONS' decays for a run of total_steps optimizer steps.

    Notebooks: used in 02.
    """
    return {label: decay_for(total_steps) for label, decay_for in HORIZONS.items()}


def weight_average_results(profile_name: str, folder=None) -> list[dict]:
    """The per-seed results of one profile, in seed order (none yet: an empty list).

    Notebooks: used in 02.
    """
    from helpers.constants import RESULTS
    from helpers.files import seed_results

    folder = RESULTS / "weight_average" if folder is None else folder
    return seed_results(folder / profile_name)


def curve_differences(results: list[dict], ablation_folder=None) -> list[float | None]:
    """Per seed: the largest gap (points) between the model's validation curve and that of the
    committed ablation run it repeats (`full`, same seed); None where that run is not committed.

    Notebooks: used in 02.
    """
    from helpers.constants import RESULTS
    from helpers.files import read_result

    folder = RESULTS / "ablation" if ablation_folder is None else ablation_folder
    gaps = []
    for result in results:
        path = folder / result["profile"] / f"full-seed{result['seed']}.json"
        committed = [r["val_acc"] for r in read_result(path)["history"]] if path.exists() else None
        mine = result["model"]["val_acc_per_epoch"]
        if committed is not None and len(committed) != len(mine):
            raise ValueError(f"{path} has {len(committed)} epochs, the seed {result['seed']} run {len(mine)}: it "
                             f"is another run (another --epochs), not the one this run repeats.")
        gaps.append(None if committed is None else round(max(abs(a - b) for a, b in zip(mine, committed)), 2))
    return gaps


def describe_weight_averages(results: list[dict]) -> str:
    """Final validation and test accuracy of the model and of each average, mean ± s.e. over
    seeds, and the paired differences average minus model in validation accuracy: at the final
    epoch, and averaged over all epochs (where the curves differ while the learning rate is
    still high); * marks a test on its own, † one that holds after Holm's correction over all.

    Notebooks: used in 02.
    """
    from helpers.stats import format_estimate, holm_rejections, mean_and_se, paired_difference

    def by_seed(get):
        return {r["seed"]: get(r) for r in results}

    def over_epochs(curve: dict) -> float:
        return sum(curve["val_acc_per_epoch"]) / len(curve["val_acc_per_epoch"])

    def estimate(values: dict) -> str:
        return format_estimate(*mean_and_se(list(values.values())))

    def row(name: str, curve) -> str:
        return f"  {name:52s} {estimate(by_seed(lambda r: curve(r)['val_acc'])):>14s} " \
               f"{estimate(by_seed(lambda r: curve(r)['test_acc'])):>14s}"

    first = results[0]
    lines = [f"{len(results)} seed(s), profile {first['profile']}, {first['total_steps']} steps: accuracy %, "
             f"mean ± s.e.", f"  {'':52s} {'validation':>14s} {'test':>14s}",
             row("the model itself (what DeiT evaluates)", lambda r: r["model"])]
    model, model_over_epochs = by_seed(lambda r: r["model"]["val_acc"]), by_seed(lambda r: over_epochs(r["model"]))
    tests = []  # (label, final, over epochs): paired differences in validation accuracy
    for label, average in first["averages"].items():
        lines.append(row(f"EMA, {label} (decay {average['decay']:.5g})", lambda r, lb=label: r["averages"][lb]))
        tests.append((label, paired_difference(by_seed(lambda r, lb=label: r["averages"][lb]["val_acc"]), model),
                      paired_difference(by_seed(lambda r, lb=label: over_epochs(r["averages"][lb])), model_over_epochs)))
    holm = iter(holm_rejections([d["p"] for _, *pair in tests for d in pair]))

    def marked(d: dict) -> str:
        return f"{format_estimate(d['mean'], d['se'], signed=True)}{'*' * d['distinguishable']}{'†' * next(holm)}"
    return "\n".join(lines + [
        "EMA minus the model, validation accuracy (points, paired); * distinguishable from zero (paired",
        f"t-test, 5 %, each test on its own), † still so after Holm's correction over these {2 * len(tests)} tests:",
        f"  {'':40s} {'final epoch':>17s} {'mean over epochs':>18s}"]
        + [f"  {label:40s} {marked(final):>17s} {marked(every):>18s}" for label, final, every in tests])
