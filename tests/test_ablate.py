import pytest

from helpers import ablate
from helpers.profiles import get_profile
from helpers.recipe import Recipe

INGREDIENT_FIELDS = {name: set(fields) for name, fields in ablate.INGREDIENTS}


def differing_fields(a: Recipe, b: Recipe) -> set:
    return {k for k, v in a.as_dict().items() if b.as_dict()[k] != v}


def test_cumulative_order_goes_from_plain_to_deits_recipe():
    v = ablate.variants()
    assert v["plain"] == Recipe.plain() and v["full"] == Recipe()
    names = list(v)
    cumulative = names[:names.index("full") + 1]
    for previous, current in zip(cumulative, cumulative[1:]):
        added = current.lstrip("+") if current != "full" else "repeated-aug"
        assert differing_fields(v[previous], v[current]) == INGREDIENT_FIELDS[added]


def test_leave_one_out_removes_exactly_one_ingredient():
    v = ablate.variants()
    for name, fields in INGREDIENT_FIELDS.items():
        assert differing_fields(v["full"], v[f"full-{name}"]) == fields


def test_distillation_variants_use_the_papers_settings():
    v = ablate.variants()
    assert v["full+hard-distillation"].distillation_type == "hard"
    soft = v["full+soft-distillation"]
    assert (soft.distillation_type, soft.distillation_alpha, soft.distillation_tau) == ("soft", 0.1, 3.0)


def test_runner_writes_results_skips_finished_runs_and_summarizes(tmp_path, monkeypatch):
    profile = get_profile("ci")
    kwargs = dict(profile=profile, epochs=1, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                  headline_seeds=2, progress=False)
    results = ablate.run_ablation(["plain", "+stochastic-depth"], **kwargs)
    assert [(r["variant"], r["seed"]) for r in results] == [("plain", 0), ("plain", 1), ("+stochastic-depth", 0)]
    first = results[0]
    assert first["history"][0]["epoch"] == 1 and first["recipe"] == Recipe.plain().as_dict()
    assert {"torch", "timm", "device", "commit", "command", "train_seconds"} <= set(first)
    assert len(ablate.load_results("ci", tmp_path / "results")) == 3

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(ablate, "train_in_profile", no_training)
    again = ablate.run_ablation(["plain", "+stochastic-depth"], **kwargs)
    assert again == results

    rows = ablate.summarize(results, ["+stochastic-depth", "plain"])
    assert [r["variant"] for r in rows] == ["+stochastic-depth", "plain"]
    plain_accs = [r["best_acc"] for r in results if r["variant"] == "plain"]
    assert rows[1]["seeds"] == 2 and rows[1]["best_acc"] == pytest.approx(sum(plain_accs) / 2)
    assert rows[1]["spread"] == pytest.approx(max(plain_accs) - min(plain_accs))


def test_unknown_variant_is_named():
    with pytest.raises(SystemExit, match="Unknown variants \\['fast'\\]"):
        ablate.run_ablation(["fast"], profile=get_profile("ci"))
