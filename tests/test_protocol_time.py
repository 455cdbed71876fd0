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
