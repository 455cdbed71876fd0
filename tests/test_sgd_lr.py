import pytest

from benchmarks import sgd_lr as sweep
from helpers.ablate import result_path
from helpers.files import write_json_atomically
from helpers.profiles import get_profile
from helpers.sgd_lr import VARIANT, best_rate, sweep_results


def result(lr, val_acc):
    return {"config": {"lr": lr, "batch_size": 128}, "final_val_acc": val_acc, "history": [{"train_loss": 2.0}]}


def test_the_rate_is_chosen_by_validation_accuracy_the_lower_one_on_a_tie():
    assert best_rate([result(0.03, 20.0), result(0.1, 25.0), result(0.3, 22.0)]) == 0.1
    assert best_rate([result(0.3, 25.0), result(0.1, 25.0)]) == 0.1
    with pytest.raises(ValueError, match="python -m benchmarks.sgd_lr --lrs"):
        best_rate([])


def test_a_sweep_trains_each_rate_once_with_sgd_and_reports_the_choice(tmp_path, capsys):
    argv = ["--profile", "ci", "--lrs", "0.1", "1.0", "--results-dir", str(tmp_path / "r"),
            "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    assert sweep.main(argv) == 0
    found = sweep_results("ci", tmp_path / "r")
    assert [r["config"]["lr"] for r in found] == [0.1, 1.0]
    assert all(r["config"]["opt"] == "sgd" and r["recipe"]["opt"] == "sgd" and r["seed"] == 0 for r in found)
    assert [r["train_loss"] for r in found[0]["history"]] != [r["train_loss"] for r in found[1]["history"]]
    out = capsys.readouterr().out
    assert "SMOKE TEST" in out and out.count("<- chosen on validation") == 1
    chosen = next(line for line in out.splitlines() if "chosen" in line)
    assert chosen.split()[0] == f"{best_rate(found):g}"
    assert sweep.main(argv) == 0  # finished rates are not trained again
    assert capsys.readouterr().out.count("done already") == 2
    path = result_path(tmp_path / "r" / "lr1", get_profile("ci"), VARIANT, 0)
    write_json_atomically({**found[1], "config": {**found[1]["config"], "weight_decay": 0.05}}, path)
    with pytest.raises(SystemExit, match=r"(?s)differs in \['weight_decay'\].*Use another --results-dir"):
        sweep.main(argv)  # trained otherwise (an older profile, say): never reused as this rate's run


def test_a_report_without_runs_says_where_it_looked_and_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match=f"no finished ci-profile SGD run in {tmp_path}.*--lrs"):
        sweep.main(["--profile", "ci", "--report", "--results-dir", str(tmp_path)])
