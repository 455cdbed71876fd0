"""The plain-vs-full crossover runner: one result per (recipe, seed), resumable, skips finished runs."""
import json

from benchmarks import crossover


def tiny(tmp_path, *extra):
    return ["--train-per-class", "4", "--val-per-class", "2", "--embed-dim", "16", "--depth", "1", "--heads", "2",
            "--batch-size", "8", "--warmup-epochs", "0", "--seeds", "2", "--seen-every", "1", "--threads", "1",
            "--results-dir", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"), *extra]


def test_each_recipe_and_seed_is_recorded_once_with_overfitting_evidence(tmp_path, capsys):
    assert crossover.main(tiny(tmp_path, "--epochs", "2")) == 0
    results = {p.name: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert sorted(results) == ["full-seed0.json", "full-seed1.json", "plain-seed0.json", "plain-seed1.json"]
    plain, full = results["plain-seed0.json"], results["full-seed0.json"]
    assert [r["epoch"] for r in plain["history"]] == [1, 2]
    assert all(0 <= r["train_seen_acc"] <= 100 and "val_acc" in r for r in plain["history"])
    assert plain["train_images"] == 40 and plain["val_images"] == 20 and plain["seed"] == 0
    assert plain["recipe"]["mixup"] == 0.0 and full["recipe"]["mixup"] == 0.8
    assert full["history"] != plain["history"]
    capsys.readouterr()
    assert crossover.main(tiny(tmp_path, "--epochs", "2")) == 0
    assert capsys.readouterr().out.count("exists: skipped") == 4


def test_an_interrupted_run_resumes_to_the_same_history(tmp_path, monkeypatch):
    import pytest

    def args(folder):
        return tiny(folder, "--epochs", "3", "--recipes", "full", "--seeds", "1")
    assert crossover.main(args(tmp_path / "whole")) == 0
    whole = json.loads((tmp_path / "whole" / "results" / "full-seed0.json").read_text())["history"]

    real_evaluate, calls = crossover.evaluate, []

    def stop_after_epoch_2(*a, **k):  # on_epoch runs after the epoch's checkpoint is saved
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)
    monkeypatch.setattr(crossover, "evaluate", stop_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        crossover.main(args(tmp_path / "cut"))
    assert not (tmp_path / "cut" / "results" / "full-seed0.json").exists()
    monkeypatch.setattr(crossover, "evaluate", real_evaluate)
    assert crossover.main(args(tmp_path / "cut")) == 0
    resumed = json.loads((tmp_path / "cut" / "results" / "full-seed0.json").read_text())["history"]
    assert [(r["train_loss"], r["val_loss"]) for r in resumed] == [(r["train_loss"], r["val_loss"]) for r in whole]
