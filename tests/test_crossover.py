"""The plain-vs-full crossover runner: one result per (recipe, seed), resumable, skips finished runs."""
import json

import pytest

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
    # other settings in the same folder: refused, the finished runs kept as they were
    before = (tmp_path / "results" / "plain-seed0.json").read_text()
    with pytest.raises(SystemExit, match=r"(?s)other settings.*differs in \['epochs'\]:\n  epochs: saved 2, now 3\nGive this"):
        crossover.main(tiny(tmp_path, "--epochs", "3"))
    assert (tmp_path / "results" / "plain-seed0.json").read_text() == before


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


def synthetic_run(recipe, seed, val, seen=None):
    return {"recipe_name": recipe, "seed": seed,
            "history": [{"epoch": e + 1, "val_acc": v, "train_seen_acc": (seen or [None] * len(val))[e]}
                        for e, v in enumerate(val)]}


def test_the_crossover_epoch_is_where_full_stays_ahead_by_two_standard_errors():
    import pytest

    from helpers.crossover import (crossover_epoch, describe_crossover, difference_by_stretch, stretch_crossover,
                                   stretch_width)

    plain = [synthetic_run("plain", s, [30 + s, 40 + s, 41 + s, 41 + s]) for s in range(3)]
    full = [synthetic_run("full", s, [20 + s, 41 + 2 * s, 45 + s, 47 + s]) for s in range(3)]
    # epoch 2: differences 1, 2, 3 (mean 2, s.e. 0.58: ahead); epoch 1 behind; so from epoch 2 on
    found = crossover_epoch({"plain": plain, "full": full})
    assert found["epoch"] == 2 and found["seeds"] == 3 and found["final_difference"]["mean"] == 6
    assert "from epoch 2 on" in describe_crossover({"plain": plain, "full": full})
    # per seed, epochs 1-2 average (-10 + 1 + s) / 2 and epochs 3-4 average (4 + 6) / 2
    first, second = difference_by_stretch({"plain": plain, "full": full}, width=2)
    assert (first["first"], first["last"], second["first"], second["last"]) == (1, 2, 3, 4)
    assert first["mean"] == pytest.approx(-4.0) and first["se"] == pytest.approx(0.5 / 3 ** 0.5)
    assert second["mean"] == 5.0 and second["se"] == 0.0
    assert stretch_crossover([first, second]) == 3 and stretch_crossover([second, first]) is None
    assert stretch_width({"plain": plain, "full": full}) == 100  # at least 100 epochs per stretch
    long_run = {"plain": [synthetic_run("plain", 0, [30] * 1600)], "full": []}
    assert stretch_width(long_run) == 200  # a long run keeps eight stretches
    long_both = {"plain": [synthetic_run("plain", s, [30 + s] * 1600) for s in range(3)],
                 "full": [synthetic_run("full", s, [20] * 1000 + [40 + 2 * s] * 600) for s in range(3)]}
    long_summary = describe_crossover(long_both)  # epochs past 999 carry thousands separators
    assert "epochs 1,401–1,600 +11.0 ± 0.6" in long_summary and "from epoch 1,001 on" in long_summary
    # epoch 2 is 3.46 s.e. ahead: enough for 2 s.e., not for the paired t-test's 4.30 (3 seeds, 5 %)
    from helpers.stats import critical_t
    assert critical_t(3) == pytest.approx(4.303, abs=1e-3) and critical_t(30) == pytest.approx(2.045, abs=1e-3)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        critical_t(1)  # one seed has no spread, so no t-test
    assert crossover_epoch({"plain": plain, "full": full}, threshold=critical_t(3))["epoch"] == 3
    assert stretch_crossover([first, second], threshold=critical_t(3)) == 3  # s.e. 0: ahead at any bar
    assert stretch_crossover([{**second, "se": 1.5}], threshold=critical_t(3)) is None  # 5.0 < 4.3 x 1.5
    behind = [synthetic_run("full", s, [20, 50, 40 + s, 40 + s]) for s in range(3)]  # ahead once, then not
    assert crossover_epoch({"plain": plain, "full": behind})["epoch"] is None
    assert crossover_epoch({"plain": plain, "full": full[:2]}) is None  # fewer than 3 paired seeds
    assert "not yet measured" in describe_crossover({"plain": plain, "full": []})
    two_seeds = describe_crossover({"plain": plain, "full": full[:2]})  # partial evidence, labelled as such
    assert "not yet measured (the averages below pair 2 seeds so far)" in two_seeds
    # seed s averages (-10 + 1 + s + 4 + 6) / 4 over epochs 1-4: 0.25 and 0.5, mean 0.375, s.e. 0.125
    assert "averaged over each 100 epochs: epochs 1–4 +0.4 ± 0.1 points" in two_seeds
    one_seed = describe_crossover({"plain": plain[:1], "full": full[:1]})
    assert "epochs 1–4 +0.2 points" in one_seed and "±" not in one_seed.splitlines()[-1]


def test_the_crossover_figure_is_readable_with_one_recipe_or_both():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.crossover import plot_crossover
    from helpers.figure_check import readability_problems

    plain = [synthetic_run("plain", s, [30 + s, 40 + s, 41 + s, 41 + s], [35, 60, 80, 95]) for s in range(2)]
    for runs in ({"plain": plain, "full": []},
                 {"plain": plain, "full": [synthetic_run("full", 0, [20, 30, 35, 38], [20, 30, 35, 39])]},
                 {"plain": [dict(run, train_images=2000, config={"epochs": 400}) for run in plain], "full": []}):
        ax = plot_crossover(runs)
        ax.figure.tight_layout()
        assert readability_problems(ax.figure) == []
        assert len(ax.lines) == 2 * sum(1 for r in runs.values() if r)  # validation and training images
    plt.close("all")


def test_the_setting_and_the_folder_are_named():
    from helpers.constants import RESULTS
    from helpers.crossover import describe_crossover, setting_label

    plain = dict(synthetic_run("plain", 0, [30, 40]), train_images=500, config={"epochs": 2})
    runs = {"plain": [plain], "full": []}
    assert setting_label(runs) == "500 training images, 2 epochs"
    assert setting_label({"plain": [synthetic_run("plain", 0, [30])], "full": []}) == ""
    assert describe_crossover(runs, RESULTS / "crossover" / "x").startswith(
        "Finished crossover runs, 500 training images, 2 epochs (results/crossover/x/): plain: 1 seed, full: 0 seeds.")


def test_a_damaged_result_file_is_named_and_left_as_it_is(tmp_path):
    from helpers.crossover import load_crossover
    damaged = tmp_path / "plain-seed0.json"
    damaged.write_text('{"recipe_name": "pla')  # a write cut short
    with pytest.raises(SystemExit, match="plain-seed0.json cannot be read"):
        load_crossover(tmp_path)
    assert damaged.read_text() == '{"recipe_name": "pla'


def test_each_recipe_is_summed_up_by_its_best_epoch_and_its_training_time_per_run():
    from helpers.crossover import describe_crossover

    # means over the two seeds: 30.5, 45.5, 40.5; the best is epoch 2
    plain = [dict(synthetic_run("plain", s, [30 + s, 45 + s, 40 + s]), train_seconds=3600 * (1 + s)) for s in range(2)]
    summary = describe_crossover({"plain": plain, "full": []})
    assert "plain: final validation 40.5 % after 3 epochs (best 45.5 % at epoch 2)" in summary
    assert "; 1.5 h of training per run" in summary  # 1 h and 2 h


def test_a_stretch_exactly_two_standard_errors_ahead_is_not_ahead():
    from helpers.crossover import stretch_crossover
    assert stretch_crossover([{"first": 1, "mean": 2.0, "se": 1.0}]) is None
    assert stretch_crossover([{"first": 1, "mean": 2.1, "se": 1.0}]) == 1
