"""The learning rate of Table 8's "SGD for pre-training" row, chosen on validation.

The paper gives no SGD learning rate. benchmarks/sgd_lr.py trains ablate's `full+sgd` once per
rate, seed 0, and writes each run where this module reads it; the rate with the best final
validation accuracy is the profile's `sgd_lr` (helpers.profiles). The test set plays no part.
"""
from __future__ import annotations

from pathlib import Path

from helpers.constants import RESULTS
from helpers.files import read_result
from helpers.train import TrainConfig

FOLDER, VARIANT = RESULTS / "sgd_lr", "full+sgd"


def rate_folder(root: Path, lr: float) -> Path:
    """Where one rate's runs go: its results in the ablation's layout, <root>/lr<rate>/<profile>/."""
    return root / f"lr{lr:g}"


def sweep_results(profile_name: str, root: Path = FOLDER) -> list[dict]:
    """Every finished rate's result, lowest rate first.

    Notebooks: used in 05.
    """
    paths = root.glob(f"lr*/{profile_name}/{VARIANT}-seed0.json")
    found = [read_result(path) for path in paths]
    return sorted(found, key=lambda result: result["config"]["lr"])


def best_rate(results: list[dict]) -> float:
    """The learning rate of the best final validation accuracy (ties: the lower rate)."""
    if not results:
        raise ValueError("no finished SGD run to choose from: run `python -m benchmarks.sgd_lr --lrs ...` first.")
    return max(results, key=lambda result: (result["final_val_acc"], -result["config"]["lr"]))["config"]["lr"]


def print_report(results: list[dict]) -> None:
    """A table: each rate's final validation accuracy and training loss, the chosen rate marked.

    Notebooks: used in 05.
    """
    best = best_rate(results)
    print(f"{'lr (batch 512)':>15s} {'lr (batch ' + str(results[0]['config']['batch_size']) + ')':>15s} "
          f"{'final val acc':>14s} {'final train loss':>17s}")
    for result in results:
        config, last = result["config"], result["history"][-1]
        mark = "  <- chosen on validation" if config["lr"] == best else ""
        print(f"{config['lr']:>15g} {TrainConfig(**config).scaled_lr:>15.4g} "
              f"{result['final_val_acc']:>14.2f} {last['train_loss']:>17.3f}{mark}")
