"""The ablation protocol: its variants, paired seeds, the runner and the statistics."""
from dataclasses import replace

import pytest

from helpers import ablate, exercises_ablation
from helpers.figure_check import readability_problems
from helpers.profiles import get_profile
from helpers.recipe import Recipe

INGREDIENT_FIELDS = {name: set(fields) for name, fields in ablate.INGREDIENTS}


def differing_fields(a: Recipe, b: Recipe) -> set:
    return {k for k, v in a.as_dict().items() if b.as_dict()[k] != v}


def test_there_are_seventeen_distinct_variants_each_ingredient_on_its_own():
    v = ablate.variants()
    assert len(v) == 17 and len(INGREDIENT_FIELDS) == 7
    recipes = list(v.values())
    assert all(a != b for i, a in enumerate(recipes) for b in recipes[i + 1:])  # no recipe trained twice
    assert all(len(fields) == 1 for fields in INGREDIENT_FIELDS.values())  # never two ingredients at once


def test_cumulative_order_adds_one_ingredient_at_a_time_from_plain_to_deits_recipe():
    v = ablate.variants()
    assert v["plain"] == Recipe.plain() and v["full"] == Recipe()
    cumulative = ["plain"] + [ablate.cumulative_name(i) for i in range(len(ablate.INGREDIENTS))]
    for (name, _), previous, current in zip(ablate.INGREDIENTS, cumulative, cumulative[1:]):
        assert differing_fields(v[previous], v[current]) == INGREDIENT_FIELDS[name]


def test_leave_one_out_removes_exactly_one_ingredient():
    v = ablate.variants()
    for name, fields in INGREDIENT_FIELDS.items():
        left_out = v[ablate.leave_one_out_name(name)]
        assert differing_fields(v["full"], left_out) == fields
        assert all(getattr(left_out, f) == getattr(Recipe.plain(), f) for f in fields)
    # repeated augmentation comes last, so the recipe without it is the cumulative variant before it
    assert ablate.leave_one_out_name("repeated-aug") == "+label-smoothing" and "full-repeated-aug" not in v


def test_distillation_variants_use_the_papers_settings():
    v = ablate.variants()
    assert differing_fields(v["full"], v["full+hard-distillation"]) == {"distillation_type"}
    soft, batchmean = v["full+soft-distillation"], v["full+soft-distillation-batchmean"]
    assert (soft.distillation_type, soft.distillation_alpha, soft.distillation_tau) == ("soft", 0.1, 3.0)
    assert soft.distillation_kl == "numel" and differing_fields(soft, batchmean) == {"distillation_kl"}


def _fake_training(calls):
    """Stands in for train_in_profile: records the initial weights and the data seed."""
    def train(name, profile, recipe, seed, **kwargs):
        model = recipe.build_model(**profile.vit_sizes)
        calls[name] = (model.patch_embed.proj.weight.sum().item(), seed)
        return [{"epoch": 1, "val_acc": 50.0, "val_loss": 1.0, "train_loss": 1.0, "lr": 0.0, "seconds": 1.0,
                 "test_acc": 49.0, "test_loss": 1.1}]
    return train


def test_seeds_are_paired_same_initial_weights_and_data_seed_in_every_variant(tmp_path, monkeypatch):
    calls = {}
    monkeypatch.setattr(ablate, "train_in_profile", _fake_training(calls))
    ablate.run_ablation(["plain", "+randaugment", "full"], seeds=2, profile=get_profile("ci"),
                        results_dir=tmp_path / "r", runs_dir=tmp_path / "runs", progress=False)
    assert list(calls) == ["plain-seed0", "+randaugment-seed0", "full-seed0",   # seed by seed
                           "plain-seed1", "+randaugment-seed1", "full-seed1"]
    for seed in (0, 1):
        weights = {calls[f"{v}-seed{seed}"] for v in ("plain", "+randaugment", "full")}
        assert len(weights) == 1 and next(iter(weights))[1] == seed
    assert calls["plain-seed0"][0] != calls["plain-seed1"][0]


def test_seed_k_on_the_command_line_trains_that_seed_alone_as_it_would_among_the_others(tmp_path, monkeypatch):
    calls, alone = {}, {}
    monkeypatch.setattr(ablate, "train_in_profile", _fake_training(calls))
    ablate.run_ablation(["plain"], seeds=2, profile=get_profile("ci"), results_dir=tmp_path / "r",
                        runs_dir=tmp_path / "runs", progress=False)
    monkeypatch.setattr(ablate, "train_in_profile", _fake_training(alone))
    assert ablate.main(["--profile", "ci", "--only", "plain", "--seed", "1", "--results-dir", str(tmp_path / "s"),
                        "--no-progress"]) == 0
    assert alone == {"plain-seed1": calls["plain-seed1"]}  # the same initial weights and data seed
    assert [p.name for p in (tmp_path / "s" / "ci").iterdir()] == ["plain-seed1.json"]


def test_runner_writes_final_validation_and_test_skips_finished_runs(tmp_path, monkeypatch):
    profile = get_profile("ci")
    kwargs = dict(profile=profile, epochs=1, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                  seeds=2, progress=False)
    results = ablate.run_ablation(["plain"], **kwargs)
    assert [(r["variant"], r["seed"]) for r in results] == [("plain", 0), ("plain", 1)]
    first = results[0]
    assert first["protocol"] == ablate.PROTOCOL and first["recipe"] == Recipe.plain().as_dict()
    assert first["final_val_acc"] == first["history"][-1]["val_acc"]
    assert first["test_acc"] == first["history"][-1]["test_acc"]
    assert first["val_images"] == profile.val_size and first["config"]["seed"] == 0
    assert {"torch", "timm", "device", "commit", "command", "train_seconds"} <= set(first)
    assert len(ablate.load_results("ci", tmp_path / "results")) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(ablate, "train_in_profile", no_training)
    assert ablate.run_ablation(["plain"], **kwargs) == results


def test_the_result_is_the_final_epoch_not_the_best_one(tmp_path, monkeypatch):
    # Picking the best epoch by validation accuracy would overstate a run: the protocol reports the last.
    history = [{"epoch": e, "val_acc": acc, "val_loss": 1.0, "train_loss": 1.0, "lr": 0.0, "seconds": 1.0,
                "test_acc": acc - 2.0, "test_loss": 1.0} for e, acc in ((1, 40.0), (2, 60.0), (3, 50.0))]
    monkeypatch.setattr(ablate, "train_in_profile", lambda *args, **kwargs: [dict(r) for r in history])
    [result] = ablate.run_ablation(["plain"], seeds=1, profile=get_profile("ci"), results_dir=tmp_path / "r",
                                   runs_dir=tmp_path / "runs", progress=False)
    assert result["final_val_acc"] == 50.0 and result["test_acc"] == 48.0  # epoch 3's, not epoch 2's 60 / 58
    assert result["train_seconds"] == 3.0  # every epoch's seconds, summed
    assert ablate.load_results("ci", tmp_path / "r")[0]["final_val_acc"] == 50.0


def test_a_result_records_its_share_of_a_group_the_test_size_and_its_teacher_without_history(tmp_path):
    from types import SimpleNamespace
    profile, recipe = get_profile("ci"), ablate.variants()["full+hard-distillation"]
    history = [{"epoch": 1, "val_acc": 40.0, "test_acc": 39.0, "seconds": 3.0},
               {"epoch": 2, "val_acc": 50.0, "test_acc": 48.0, "seconds": 5.0}]
    teacher = SimpleNamespace(info={"test_acc": 60.0, "history": [{"epoch": 1}]})
    config = ablate.run_config(profile, recipe, 0, None, compile=False)
    result = ablate.write_result("full+hard-distillation", recipe, profile, 0, config, history, teacher=teacher,
                                 results_dir=tmp_path, wall_clock_s=10.0, together=4)
    # a group of 4 trained for 8 s of epochs in 10 s of wall clock: a quarter of each is this run's
    assert (result["train_seconds"], result["wall_clock_seconds_this_session"], result["together"]) == (2.0, 2.5, 4)
    assert (result["test_images"], result["val_images"]) == (profile.test_size, profile.val_size)
    assert result["teacher"] == {"test_acc": 60.0}


def test_a_finished_run_is_reused_only_if_it_was_trained_as_asked(tmp_path):
    ci, recipe = get_profile("ci"), Recipe()
    config = ablate.run_config(ci, recipe, 0, None, compile=False)
    found = ablate.write_result("full", recipe, ci, 0, config, [{"val_acc": 1.0, "test_acc": 1.0, "seconds": 1.0}],
                                teacher=None, results_dir=tmp_path, wall_clock_s=1.0)
    sizes = ablate.run_sizes(ci)
    ablate.check_same_run(found, config, recipe, tmp_path, sizes)
    # a run written before TrainConfig had an optimizer trained with the default one, AdamW
    older = {**found, "config": {k: v for k, v in found["config"].items() if k not in ("opt", "momentum")}}
    ablate.check_same_run(older, config, recipe, tmp_path, sizes)
    ablate.check_same_run(found, replace(config, compile=True), recipe, tmp_path, sizes)  # how, not what, it trains
    for name, changed in [("batch_size", replace(config, batch_size=64)), ("lr", replace(config, lr=1e-3))]:
        with pytest.raises(SystemExit, match=rf"differs in \['{name}'\]"):
            ablate.check_same_run(found, changed, recipe, tmp_path, sizes)
    with pytest.raises(SystemExit, match=r"(?s)differs in \['recipe.drop_path'\].*Use another --results-dir"):
        ablate.check_same_run(found, config, recipe.but(drop_path=0.0), tmp_path, sizes)
    with pytest.raises(SystemExit, match=r"differs in \['train_images'\]"):
        ablate.check_same_run(found, config, recipe, tmp_path,
                              ablate.run_sizes(replace(ci, train_per_class=ci.train_per_class + 1)))


def test_a_runs_config_has_its_seed_budget_and_its_recipes_label_smoothing():
    ci = get_profile("ci")
    config = ablate.run_config(ci, Recipe(), 2, 7, compile=False)
    assert (config.seed, config.epochs, config.smoothing) == (2, 7, 0.1)  # DeiT smooths by 0.1
    assert ablate.run_config(ci, ablate.without("label-smoothing"), 0, None, compile=False).smoothing == 0.0
    assert ablate.run_config(ci, Recipe(), 0, None, compile=False).epochs == ci.epochs


def test_a_run_with_sgd_takes_the_profiles_sgd_settings_and_adamw_its_own():
    cpu = get_profile("cpu")
    sgd = ablate.run_config(cpu, Recipe(opt="sgd"), 0, None, compile=False)
    assert (sgd.opt, sgd.lr, sgd.weight_decay) == ("sgd", cpu.sgd_lr, cpu.sgd_weight_decay)
    adamw = ablate.run_config(cpu, Recipe(), 0, None, compile=False)
    assert (adamw.opt, adamw.lr, adamw.weight_decay) == ("adamw", cpu.lr, 0.05)  # DeiT's weight decay
    assert ablate.run_config(cpu, Recipe(opt="sgd"), 0, None, compile=False, lr=0.3).lr == 0.3


def test_run_costs_learn_a_plain_runs_time_from_a_distilled_group():
    costs = ablate.RunCosts(distilled_cost=2.0, compile_s=5.0, teacher_s=7.0)
    costs.measured(2, True, 25.0)  # minus 5 s of compiling, over 2 runs, each twice a plain run: 5 s
    assert costs.run_s == pytest.approx(5.0)
    assert costs.expected_s(2, True, False) == pytest.approx(20.0)  # that graph is compiled now
    assert costs.expected_s(1, False, True) == pytest.approx(5.0 + 5.0 + 7.0)  # a new graph and the teacher


def test_run_costs_time_a_run_trained_alone_apart_from_a_group_members_share():
    costs = ablate.RunCosts(run_s=2.0)  # a member's share of a group on a GPU: far less than a run alone
    assert costs.expected_s(1, False, False, alone=True) == pytest.approx(2.0)  # nothing measured alone yet
    costs.measured(1, False, 30.0, alone=True)  # a run with dropout or SGD, trained alone
    assert (costs.run_s, costs.alone_s) == (2.0, 30.0)
    assert costs.expected_s(4, False, False) == pytest.approx(8.0)  # a group still costs its shares
    assert costs.expected_s(1, False, False, alone=True) == pytest.approx(30.0)
    costs.measured(4, False, 12.0)
    assert (costs.run_s, costs.alone_s) == (3.0, 30.0)


def test_the_runner_times_runs_alone_apart_under_together(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(ablate, "train_in_profile", _fake_training({}))
    monkeypatch.setattr(ablate, "run_together", lambda *a, **k: [])

    class Recording(ablate.RunCosts):
        def measured(self, size, is_distilled, seconds, alone=False):
            seen.append((size, alone))
            super().measured(size, is_distilled, seconds, alone)
    ablate.run_ablation(["full+sgd"], seeds=1, profile=get_profile("ci"), together=2, costs=Recording(),
                        results_dir=tmp_path / "r", runs_dir=tmp_path / "runs", progress=False)
    ablate.run_ablation(["full+sgd"], seeds=1, profile=get_profile("ci"), costs=Recording(),
                        results_dir=tmp_path / "r2", runs_dir=tmp_path / "runs2", progress=False)
    assert seen == [(1, True), (1, False)]  # without --together every run is a plain run


def test_results_of_another_protocol_are_ignored(tmp_path):
    folder = tmp_path / "ci"
    folder.mkdir()
    (folder / "plain-seed0.json").write_text('{"variant": "plain", "seed": 0, "best_acc": 50.0}')
    assert ablate.load_results("ci", tmp_path) == []


def _results(table):
    """Synthetic results: {variant: [final val acc for seed 0, 1, ...]}."""
    return [{"variant": v, "seed": s, "final_val_acc": acc, "test_acc": acc - 1.0}
            for v, accs in table.items() for s, acc in enumerate(accs)]


def test_summary_gives_mean_and_standard_error():
    rows = ablate.summarize(_results({"plain": [50.0, 52.0, 54.0]}))
    assert rows[0]["seeds"] == 3 and rows[0]["val_acc"] == pytest.approx(52.0)
    assert rows[0]["val_se"] == pytest.approx(2.0 / 3 ** 0.5)  # stdev 2, n 3
    assert rows[0]["test_acc"] == pytest.approx(51.0)


def test_contributions_are_paired_differences_with_a_t_test():
    results = _results({"plain": [50.0, 60.0, 70.0], "+randaugment": [52.0, 62.1, 71.9],
                        "full": [80.0, 80.0, 80.0], "full-mixup": [80.5, 79.0, 80.8]})
    rows = {r["ingredient"]: r for r in ablate.contributions(results)}
    added = rows["randaugment"]["added"]
    # paired differences 2.0, 2.1, 1.9: tiny spread although the plain runs vary by 20 points
    assert added["mean"] == pytest.approx(2.0) and added["se"] == pytest.approx(0.0577, abs=1e-4)
    assert added["distinguishable"] and added["p"] < 0.01
    removed = rows["mixup"]["removed"]  # differences -0.5, 1.0, -0.8: noise
    assert removed["mean"] == pytest.approx(-0.1) and not removed["distinguishable"]
    assert rows["mixup"]["paper_removed"] == pytest.approx(3.1)  # Table 8: 81.8 -> 78.7
    assert rows["cutmix"]["added"] is None and rows["label-smoothing"]["paper_removed"] is None
    # two tests in this table: Holm keeps the first (p < 0.05 / 2), and the cells say which is which
    assert added["holm"] and not removed["holm"] and added["tests_in_table"] == 2
    assert ablate.contribution_cells(rows["randaugment"])[1].endswith("*†")
    assert ablate.contribution_cells(rows["mixup"])[2].endswith("  ")
    assert "† still so after Holm's correction over the whole ablation table's 2 distinct tests" in \
        ablate.contributions_footnote(list(rows.values()))
    # a comparison with one shared seed has no test, so Holm's count leaves it out
    partial = {r["ingredient"]: r for r in ablate.contributions(_results(
        {"plain": [50.0, 60.0, 70.0], "+randaugment": [52.0, 62.1, 71.9], "full": [80.0], "full-mixup": [80.5]}))}
    assert partial["mixup"]["removed"]["p"] is None and partial["randaugment"]["added"]["tests_in_table"] == 1


def test_distillation_rows_are_each_distilled_student_minus_full():
    results = _results({"full": [80.0, 81.0, 82.0], "full+hard-distillation": [81.0, 82.5, 83.0]})
    rows = {r["ingredient"]: r for r in ablate.contributions(results)}
    added = rows["hard-distillation"]["added"]  # differences 1.0, 1.5, 1.0
    assert added["pair"] == ("full+hard-distillation", "full") and added["mean"] == pytest.approx(3.5 / 3)
    assert rows["hard-distillation"]["removed"] is None and rows["soft-distillation"]["added"] is None


def test_the_paper_column_names_the_runs_that_did_not_train():
    cells = {r["ingredient"]: ablate.contribution_cells(r)[3] for r in ablate.contributions([])}
    # Table 8: 81.8 with everything, 79.6 without RandAugment; without random erasing: 4.3, a failed run
    assert cells["randaugment"] == "+2.2" and cells["random-erasing"] == "did not train"
    assert cells["label-smoothing"] == "-" and cells["hard-distillation"] == "-"


def test_summary_rows_follow_the_names_given_and_skip_variants_without_results():
    results = _results({"plain": [50.0], "+randaugment": [55.0], "full": [80.0]})
    assert [r["variant"] for r in ablate.summarize(results, ["full", "full-mixup", "plain"])] == ["full", "plain"]


def test_holm_steps_down_and_stops_at_the_first_test_it_cannot_reject():
    from helpers.stats import holm_rejections
    # m = 3: 0.01 < 0.05/3, 0.02 < 0.05/2, 0.04 < 0.05/1; Bonferroni (0.05/3 each) would keep only the first
    assert holm_rejections([0.04, 0.01, 0.02]) == [True, True, True]
    # 0.03 >= 0.05/3 stops it: 0.045 is not rejected although it is below 0.05
    assert holm_rejections([0.001, 0.03, 0.045, 0.04]) == [True, False, False, False]
    # a comparison without a test (one seed) is neither rejected nor counted in m
    assert holm_rejections([0.02, None, 0.03]) == [True, False, True]
    assert holm_rejections([0.03, 0.03]) == [False, False]  # a tie: 0.03 >= 0.05/2 stops it at the first
    assert holm_rejections([]) == []
    assert holm_rejections([0.05]) == [False]  # one test: Holm is the t-test itself, which needs p below 0.05


def test_estimates_are_printed_with_two_decimals_a_sign_when_asked_and_no_se_when_none():
    from helpers.stats import format_estimate
    assert format_estimate(52.0, 2.0 / 3 ** 0.5) == "52.00 ± 1.15"
    assert format_estimate(2.0, 0.0577, signed=True) == "+2.00 ± 0.06"
    assert format_estimate(-0.1, None, signed=True) == "-0.10"


def test_the_last_ingredients_added_and_removed_are_one_test_and_the_footnote_says_so():
    results = _results({"+stochastic-depth": [40.0, 41.0, 42.0], "+label-smoothing": [41.0, 41.5, 43.0],
                        "full": [38.0, 39.0, 40.5]})
    rows = {r["ingredient"]: r for r in ablate.contributions(results)}
    added, removed = rows["repeated-aug"]["added"], rows["repeated-aug"]["removed"]
    assert added["pair"] == removed["pair"] == ("full", "+label-smoothing") and added["mean"] == removed["mean"]
    tests = ablate.paired_tests(ablate.contributions(results))
    assert [t["pair"] for t in tests] == [("+label-smoothing", "+stochastic-depth"), ("full", "+label-smoothing")]
    twice = "repeated-aug: added and removed are one comparison (full vs +label-smoothing)"
    assert twice in ablate.contributions_footnote(list(rows.values()))
    assert twice not in ablate.contributions_footnote([r for r in rows.values() if r["ingredient"] != "repeated-aug"])


def test_the_reference_names_every_commit_and_device_its_runs_were_made_at():
    from helpers.ablation_figures import made_where

    def run(commit, device="cpu (x86_64, 1 threads)"):
        return {"commit": commit, "device": device}
    assert made_where([run("abc1234"), run("abc1234")]) == "made on cpu (x86_64, 1 threads) at commit abc1234"
    assert made_where([run("abc1234"), run("def5678-dirty"), run("0123456-dirty"), run("abc1234")]) == \
        "made on cpu (x86_64, 1 threads) at 3 commits, 2 of them with uncommitted changes (-dirty)"
    assert made_where([run("abc1234"), run("def5678", "NVIDIA H100 80GB HBM3")]) == \
        "made on NVIDIA H100 80GB HBM3 and cpu (x86_64, 1 threads) at 2 commits"


def test_ranking_checker_accepts_every_order_the_data_cannot_tell_apart(capsys):
    full = [80.0, 81.0, 82.0]
    table = {"full": full, "full-mixup": [70.0, 71.1, 71.9],          # costs 10 points
             "full-cutmix": [75.0, 76.2, 77.1], "full-randaugment": [75.2, 75.9, 77.0]}  # both about 5
    results = _results({k: v for k, v in table.items()})
    assert exercises_ablation.check_ranking(["mixup", "cutmix", "randaugment"], results)
    assert exercises_ablation.check_ranking(["mixup", "randaugment", "cutmix"], results)  # a tie
    assert not exercises_ablation.check_ranking(["cutmix", "mixup", "randaugment"], results)
    assert "cutmix above mixup" in capsys.readouterr().out
    assert not exercises_ablation.check_ranking({"mixup", "cutmix", "randaugment"}, results)  # a set has no order
    assert "in a list" in capsys.readouterr().out
    assert exercises_ablation.within_noise(results) == []  # every removal costs 5 or 10 points, seed after seed
    # removing random erasing: paired differences -1.5, +2.0, -0.8 (mean -0.1), a t-test cannot tell it from 0
    noisy = results + _results({"full-random-erasing": [81.5, 79.0, 82.8]})
    assert exercises_ablation.within_noise(noisy) == ["random-erasing"]


def test_within_noise_checker_wants_exactly_the_ingredients_the_t_test_cannot_tell_from_zero(capsys):
    results = _results({"full": [80.0, 81.0, 82.0], "full-mixup": [70.0, 71.1, 71.9],  # costs 10, clearly
                        "full-random-erasing": [81.5, 79.0, 82.8]})  # differences -1.5, 2.0, -0.8: noise
    check = exercises_ablation.check_within_noise
    assert check(["random-erasing"], results) and "Correct!" in capsys.readouterr().out
    for wrong in ([], ["mixup"], ["mixup", "random-erasing"]):
        assert not check(wrong, results)
        assert "look at each 'removed' value without a *" in capsys.readouterr().out
    assert not check(None, results) and "give a list of ingredient names" in capsys.readouterr().out
    assert check({"random-erasing"}, results)  # here the order does not matter
    assert not check(["Random-Erasing"], results) and "'Random-Erasing'] is not an ingredient" in capsys.readouterr().out
    assert not check(["random-erasing", "random-erasing"], results) and "each ingredient once" in capsys.readouterr().out
    # one seed per variant: no spread, so no answer can be checked, not even the right one
    one_seed = _results({"full": [80.0], "full-mixup": [70.0], "full-random-erasing": [81.5]})
    for answer in (["random-erasing"], [], None):
        assert not check(answer, one_seed)
        assert "Not checkable yet: with one seed per variant" in capsys.readouterr().out
    assert not check([], _results({"full": [80.0, 81.0]}))  # no leave-one-out run at all
    assert "Not checkable yet" in capsys.readouterr().out


def test_paired_difference_is_a_two_sided_t_test_with_n_minus_1_degrees_of_freedom():
    from scipy import stats as scipy_stats

    from helpers.stats import paired_difference
    # differences 1, 2, 3: mean 2, sample sd 1, se 1/sqrt(3), t = 2 sqrt(3) = 3.46 on 2 degrees of freedom
    d = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert d["mean"] == pytest.approx(2.0) and d["se"] == pytest.approx(1 / 3 ** 0.5) and d["n"] == 3
    assert d["t"] == pytest.approx(2 * 3 ** 0.5)
    assert d["p"] == pytest.approx(2 * scipy_stats.t.sf(2 * 3 ** 0.5, df=2)) and d["p"] == pytest.approx(0.0742, abs=1e-4)
    # a z-test (p about 0.0005) or a one-sided test (about 0.037) would call this distinguishable
    assert not d["distinguishable"]
    assert paired_difference({0: 0.0, 1: 0.0, 2: 0.0}, {0: 1.0, 1: 2.0, 2: 3.0})["p"] == pytest.approx(d["p"])
    assert paired_difference({0: 0.0, 1: 0.0, 2: 0.0}, {0: 1.0, 1: 2.0, 2: 3.0})["t"] == pytest.approx(-d["t"])


def test_paired_difference_without_spread_or_with_one_seed():
    from helpers.stats import paired_difference
    # the same nonzero difference on every seed: no noise at all, so it is told from zero
    same = paired_difference({0: 3.0, 1: 4.0, 2: 5.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert (same["mean"], same["se"], same["p"], same["distinguishable"]) == (2.0, 0.0, 0.0, True)
    assert same["t"] == float("inf")
    assert paired_difference({0: 1.0, 1: 2.0}, {0: 3.0, 1: 4.0})["t"] == float("-inf")
    # identical runs: a zero difference is never evidence
    zero = paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert (zero["mean"], zero["se"], zero["t"], zero["p"], zero["distinguishable"]) == (0.0, 0.0, 0.0, 1.0, False)
    # one shared seed: a mean but no standard error, so no test
    one = paired_difference({0: 5.0, 1: 9.0}, {0: 2.0})
    assert (one["mean"], one["se"], one["n"], one["t"], one["p"], one["distinguishable"]) == (3.0, None, 1, None, None, False)
    assert paired_difference({0: 1.0}, {1: 1.0}) is None  # no seed in common: nothing to pair


def test_unknown_variant_is_named():
    with pytest.raises(SystemExit, match="error: unknown variants \\['fast'\\]"):
        ablate.run_ablation(["fast"], profile=get_profile("ci"))


def assert_readable(ax):
    """Drawn as a notebook stores it: no readability problem (helpers.figure_check)."""
    ax.figure.tight_layout()
    assert readability_problems(ax.figure) == []


def test_figures_show_mean_and_standard_error_bands_and_flag_the_papers_failed_runs():
    import matplotlib
    matplotlib.use("Agg")
    from helpers import ablation_figures

    def run(variant, seed, accs):
        return {"variant": variant, "seed": seed, "final_val_acc": accs[-1], "test_acc": accs[-1],
                "history": [{"epoch": i + 1, "val_acc": a} for i, a in enumerate(accs)]}
    results = [run("plain", 0, [10, 20]), run("plain", 1, [12, 24]),
               run("full", 0, [11, 30]), run("full", 1, [13, 32]),
               run("full-random-erasing", 0, [9, 25]), run("full-random-erasing", 1, [9, 29])]
    ax = ablation_figures.plot_validation_curves(results, ["plain", "full", "full-random-erasing", "full-mixup"])
    # the full recipe is the leave-one-out runs' baseline: drawn last, on top, in black
    assert [line.get_label() for line in ax.get_lines()] == ["plain (2 seeds)", "full-random-erasing (2 seeds)",
                                                           "full (2 seeds)"]
    assert ax.get_lines()[-1].get_color() == "black" and ax.get_lines()[0].get_color() != "black"
    assert list(ax.get_lines()[0].get_ydata()) == [11, 22]  # the mean over seeds
    alone = ablation_figures.plot_validation_curves(results, ["plain", "full"])  # no baseline among cumulatives
    assert alone.get_lines()[-1].get_color() != "black"
    assert len(ax.collections) == 3  # one ± s.e. band per variant
    assert_readable(ax)
    one_seed = ablation_figures.plot_validation_curves(results[:1], ["plain"])
    assert one_seed.get_lines()[0].get_label() == "plain (1 seed)"
    empty = ablation_figures.plot_validation_curves(results, ["full+hard-distillation"])
    assert not empty.get_lines() and "no finished runs" in empty.texts[0].get_text()
    many = ablation_figures.plot_validation_curves(  # a group as large as the course's
        [run(f"+variant-{i}", 0, [10 + i, 20 + i]) for i in range(8)], [f"+variant-{i}" for i in range(8)])
    assert_readable(many)
    ax = ablation_figures.plot_contributions(results)
    notes = [t.get_text() for t in ax.texts]
    assert notes.count("paper: did not train") == 2  # random erasing and stochastic depth
    assert_readable(ax)  # among the labels: hard-, soft- and soft-distillation-batchmean


def test_ablation_checkers_answer_a_list_with_holes_instead_of_raising(capsys):
    results = _results({"full": [80.0, 81.0, 82.0], "full-mixup": [70.0, 71.1, 71.9],
                        "full-random-erasing": [81.5, 79.0, 82.8]})
    assert not exercises_ablation.check_ranking(["mixup", None, None], results)
    assert "list each of" in capsys.readouterr().out
    for answer in (["random-erasing", None], "random-erasing"):
        assert not exercises_ablation.check_within_noise(answer, results)
        assert "give a list of ingredient names" in capsys.readouterr().out


def test_table_8_rows_are_deits_recipe_with_one_change_and_not_in_the_protocols_set():
    from helpers.paper import TABLE_8_OTHER
    extra, protocol = ablate.table_8_variants(), ablate.variants()
    assert set(extra).isdisjoint(protocol) and all(r not in protocol.values() for r in extra.values())
    assert differing_fields(Recipe(), extra["full+dropout"]) == {"drop"} and extra["full+dropout"].drop == 0.1
    assert differing_fields(Recipe(), extra["full-mixup-cutmix"]) == {"mixup", "cutmix"}
    assert differing_fields(Recipe(), extra["full-randaugment+autoaugment"]) == {"aa"}
    assert extra["full-randaugment+autoaugment"].aa == "original"
    assert differing_fields(Recipe(), extra["full+sgd"]) == {"opt"} and extra["full+sgd"].opt == "sgd"
    assert all(row in TABLE_8_OTHER for row, _ in ablate.TABLE_8_ROWS.values())
    assert list(ablate.all_variants()) == list(protocol) + list(extra)


def test_table_8_rows_compare_with_full_seed_by_seed_beside_the_papers_change(capsys):
    results = _results({"full": [80.0, 81.0, 82.0], "full+dropout": [79.0, 80.1, 80.9],
                        "full-mixup-cutmix": [75.0]})
    rows = {r["variant"]: r for r in ablate.table_8_rows(results)}
    dropout = rows["full+dropout"]
    assert dropout["row"] == "with dropout" and dropout["paper"] == pytest.approx(-0.5)  # 81.3 - 81.8
    assert dropout["difference"]["mean"] == pytest.approx(-1.0) and dropout["difference"]["n"] == 3
    assert dropout["difference"]["distinguishable"] and dropout["difference"]["holm"]
    one_seed = rows["full-mixup-cutmix"]["difference"]
    assert one_seed["n"] == 1 and one_seed["p"] is None and not one_seed["holm"]  # no test with one seed
    assert rows["full-mixup-cutmix"]["paper"] == pytest.approx(-6.0)  # 75.8 - 81.8
    assert ablate.table_8_rows(_results({"full+dropout": [79.0]})) == []  # nothing to pair with
    ablate.print_table_8_rows(list(rows.values()))
    out = capsys.readouterr().out
    assert "with dropout" in out and "-1.00 ± 0.06*†" in out and "-0.5" in out


def test_the_runner_takes_table_8_rows_by_name_only_and_trains_dropout_alone(tmp_path, monkeypatch):
    calls = {}
    monkeypatch.setattr(ablate, "train_in_profile", _fake_training(calls))
    grouped = []
    monkeypatch.setattr(ablate, "run_together", lambda pending, *a, **k: grouped.extend(pending) or [])
    ablate.run_ablation(["full", "full+dropout", "full+sgd"], seeds=1, profile=get_profile("ci"), together=2,
                        results_dir=tmp_path / "r", runs_dir=tmp_path / "runs", progress=False)
    assert list(calls) == ["full+dropout-seed0", "full+sgd-seed0"] and grouped == [("full", 0)]
    assert not ablate.trains_together(ablate.all_variants()["full+dropout"])
    assert not ablate.trains_together(ablate.all_variants()["full+sgd"])
    assert all(ablate.trains_together(r) for r in ablate.variants().values())
