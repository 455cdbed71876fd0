"""The committed reference results are what this code trains: the first epoch of a committed cpu
ablation run or crossover run, trained again here the way its runner trains it, gives the first
record of its history. A change that alters training (data, split, augmentation, model, optimizer, seeding)
fails here, before the committed results that the notebooks show go stale unnoticed."""
import os

import pytest
import torch

from helpers.ablate import all_variants, run_config, run_variant
from helpers.constants import RESULTS
from helpers.files import read_result
from helpers.profiles import get_profile
from helpers.train import TrainConfig

# Another CPU may round differently, which moves a first epoch's mean loss by far less than this;
# other initial weights alone moved plain's by 0.002 to 0.01 (five unseeded runs, 2026-11-28).
LOSS_TOLERANCE = 1e-4
ACCURACY_TOLERANCE = 0.2  # points: two of the 1,000 validation images


class FirstEpochDone(Exception):
    """Raised by fit's on_epoch hook: the other 59 epochs are not needed here."""


def _stop(history):
    raise FirstEpochDone(history[0])


@pytest.mark.parametrize("variant", ["plain", "full", "full+dropout", "full-randaugment+autoaugment", "full+sgd"])
def test_a_committed_cpu_ablation_run_is_what_this_code_trains(variant, tmp_path, one_thread):
    committed = committed_run(RESULTS / "ablation" / "cpu" / f"{variant}-seed0.json")
    profile, recipe = get_profile("cpu"), all_variants()[variant]
    assert "(x86_64, 1 threads)" in committed["device"]  # one thread, as here: the same sums in the same order
    # a field added to TrainConfig since the run takes its default, which the run trained with
    assert TrainConfig(**committed["config"]) == run_config(profile, recipe, 0, None, compile=False)
    with pytest.raises(FirstEpochDone) as done:
        run_variant(variant, recipe, profile, 0, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                    device=torch.device("cpu"), progress=False, on_epoch=_stop)
    assert_same_first_epoch(done.value.args[0], committed, f"results/ablation/cpu/{variant}-seed0.json",
                            "train the cpu ablation again (README, 'The ablation')")


@pytest.mark.parametrize("recipe", ["plain", "full"])
def test_a_committed_crossover_run_is_what_this_code_trains(recipe, tmp_path, one_thread):
    from benchmarks import crossover

    committed = committed_run(RESULTS / "crossover" / f"{recipe}-seed0.json")
    settings = committed["config"]
    assert committed["threads"] == 1  # as here: the same sums in the same order
    # One epoch of the same run: its learning rate is still warming up, which does not depend on
    # the number of epochs.
    argv = [f"--{key.replace('_', '-')}={settings[key]}" for key in crossover.RUN_SETTINGS if key != "epochs"]
    args = crossover.parser().parse_args([*argv, "--epochs=1", f"--runs-dir={tmp_path}"])
    run = crossover.run_one(recipe, 0, args, *crossover.crossover_data(args))
    assert_same_first_epoch(run["history"][0], committed, f"results/crossover/{recipe}-seed0.json",
                            "run `python -m benchmarks.crossover` again (its docstring has the commands)")


def committed_run(path) -> dict:
    """A committed result, or a skip where another torch would give other numbers anyway; in CI
    (.ci/run sets CI) a failure instead, for there a skip would hide results gone stale."""
    committed = read_result(path)
    if committed["torch"].split("+")[0] != torch.__version__.split("+")[0]:
        why = (f"the committed runs used torch {committed['torch']}, this is {torch.__version__}: "
               f"its random streams and kernels give other numbers")
        if os.environ.get("CI"):
            pytest.fail(f"{why}. Retrain the committed runs with this torch (README, 'The ablation'), or run CI "
                        f"with torch {committed['torch'].split('+')[0]}.")
        pytest.skip(why)
    return committed


def assert_same_first_epoch(now: dict, committed: dict, name: str, again: str) -> None:
    then = committed["history"][0]
    fix = f"{name} is no longer what this code trains: undo the change that altered training, or {again}"
    assert now["train_loss"] == pytest.approx(then["train_loss"], abs=LOSS_TOLERANCE), fix
    assert now["val_loss"] == pytest.approx(then["val_loss"], abs=LOSS_TOLERANCE), fix
    assert abs(now["val_acc"] - then["val_acc"]) <= ACCURACY_TOLERANCE, fix
    assert now["lr"] == pytest.approx(then["lr"], rel=1e-12), fix
