"""benchmarks/protocol_time.py: the whole ablation protocol's time, from measured steps."""
import json

import pytest

from benchmarks import protocol_time


def test_it_estimates_each_variant_and_adds_them_up(tmp_path, capsys):
    out = tmp_path / "protocol_time.json"
    only = ["plain", "full+hard-distillation"]  # a plain and a distilled student; all 17 take longer
    assert protocol_time.main(["--profile", "ci", "--steps", "1", "--only", *only, "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [r["variant"] for r in record["rows"]] == only and all(r["estimated_seconds"] > 0 for r in record["rows"])
    assert record["total_seconds"] == pytest.approx(3 * sum(r["estimated_seconds"] for r in record["rows"])
                                                    + record["teacher_seconds"])
    assert {"device", "torch", "commit", "command"} <= set(record)
    assert "these variants (2 variants x 3 seeds + teacher)" in capsys.readouterr().out


def test_a_run_is_its_rate_times_epochs_times_training_plus_a_third_of_validation(tmp_path, monkeypatch):
    from helpers.teacher import TEACHERS
    calls = []

    def rate(profile, recipe, device, teacher, steps):  # injected: 2 ms per image, whatever the variant
        calls.append((recipe.distillation_type, teacher is not None, steps))
        return 0.002
    monkeypatch.setattr(protocol_time, "seconds_per_image", rate)
    monkeypatch.setattr(protocol_time, "teacher_seconds_per_image", lambda profile, device: 0.005)
    out = tmp_path / "protocol_time.json"
    assert protocol_time.main(["--profile", "ci", "--steps", "4", "--only", "plain", "full+hard-distillation",
                               "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    profile = protocol_time.get_profile("ci")
    # ci: 3 epochs x (1,000 training images + 200 validation images / 3) x 0.002 s = 6.4 s a run
    run = 0.002 * profile.epochs * (profile.train_size + profile.val_size / 3)
    assert run == pytest.approx(6.4)
    assert [r["estimated_seconds"] for r in record["rows"]] == pytest.approx([run, run])
    assert calls == [("none", False, 4), ("hard", True, 4)]  # only the distilled student pays for its teacher
    teacher = 0.005 * profile.train_size * TEACHERS["ci"].epochs  # trained once, for its own epochs
    assert record["teacher_seconds"] == pytest.approx(teacher)
    assert record["total_seconds"] == pytest.approx(3 * 2 * run + teacher)  # 3 seeds of each variant
