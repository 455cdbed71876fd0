import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])  # fp16: both ranks skip the same overflowed steps
def test_two_processes_with_gloo_agree_on_the_weights(tmp_path, precision):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(WORKER), str(tmp_path)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "DEIT_PRECISION": precision})
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for name, weight in r0["state"].items():
        assert torch.equal(weight, r1["state"][name]), f"ranks disagree on {name}"
        assert torch.equal(r0["average"][name], r1["average"][name]), f"ranks' weight averages disagree on {name}"
    # Each process trained on its own half of the data ...
    assert set(r0["indices"].tolist()).isdisjoint(r1["indices"].tolist())
    assert len(r0["indices"]) + len(r1["indices"]) == 80
    # ... metrics were reduced over both, and only rank 0 wrote files.
    def metrics(history):
        return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in history]
    assert metrics(r0["history"]) == metrics(r1["history"])
    # the mean over both ranks' batches, not their sum: near ln(10) = 2.3 for a barely trained model
    assert 1.5 < r0["history"][0]["train_loss"] < 3.0
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["history.csv", "history.json", "last.pt"]
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert all(torch.equal(v, r0["state"][k]) for k, v in saved["model"].items())
    assert all(torch.equal(v, r0["average"][k]) for k, v in saved["averages"]["0.5"]["module"].items())
    assert ("loss_scale" in r0["history"][-1]) == (precision == "fp16") == bool(saved["scaler"])
