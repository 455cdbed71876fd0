"""Mixed precision per device (helpers.precision): bf16 from Ampere on, fp16 with loss scaling on
older GPUs, fp32 elsewhere. fp16 is exercised on the CPU (DEIT_PRECISION=fp16), where PyTorch
runs autocast and GradScaler the same way."""
import copy
import json

import pytest
import torch

from helpers import precision, train
from helpers.data import TensorBatches
from helpers.models import build_vit
from helpers.precision import PrecisionError, autocast_dtype, grad_scaler_for, precision_name
from helpers.recipe import Recipe
from helpers.together import fit_together
from helpers.train import TrainConfig, make_optimizer, train_step
from tests.test_train import InterruptAt, run, small_data, without_time  # noqa: F401 (a fixture)
from tests.test_together import data, member, metrics, one_by_one, val_batches  # noqa: F401 (a fixture)


@pytest.mark.parametrize("capability, expected", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                  ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_a_gpu_gets_bf16_from_ampere_on_and_fp16_before(monkeypatch, capability, expected):
    monkeypatch.delenv(precision.PRECISION, raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype(torch.device("cuda")) == expected


def test_cpus_and_mps_train_in_fp32_unless_told(monkeypatch):
    monkeypatch.delenv(precision.PRECISION, raising=False)
    assert autocast_dtype("cpu") is None and autocast_dtype("mps") is None
    assert precision_name("cpu") == "fp32" and not grad_scaler_for("cpu").is_enabled()
    monkeypatch.setenv(precision.PRECISION, " FP16 ")
    assert autocast_dtype("cpu") == torch.float16 and grad_scaler_for("cpu").is_enabled()
    monkeypatch.setenv(precision.PRECISION, "bf16")
    assert precision_name("cpu") == "bf16" and not grad_scaler_for("cpu").is_enabled()


def test_autocast_computes_in_the_chosen_dtype_and_fp32_even_inside_another_autocast(monkeypatch):
    a = torch.randn(4, 4)
    monkeypatch.setenv(precision.PRECISION, "bf16")
    with precision.autocast_for("cpu"):
        assert (a @ a).dtype == torch.bfloat16
    monkeypatch.setenv(precision.PRECISION, "fp32")
    with torch.autocast("cpu", dtype=torch.bfloat16), precision.autocast_for("cpu"):
        assert (a @ a).dtype == torch.float32


def test_an_unknown_precision_names_the_choices(monkeypatch):
    monkeypatch.setenv(precision.PRECISION, "half")
    with pytest.raises(PrecisionError, match="bf16, fp16, fp32, or unset it"):
        autocast_dtype("cpu")


def test_an_fp16_step_whose_gradients_overflow_is_skipped_and_the_scale_halved(monkeypatch):
    monkeypatch.setenv(precision.PRECISION, "fp16")
    torch.manual_seed(0)
    model = build_vit(embed_dim=16, depth=1, num_heads=2)
    config = TrainConfig(batch_size=8)
    optimizer = make_optimizer(model, config, 1e-3, torch.device("cpu"))
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8)

    def step(scaler):
        before = [p.detach().clone() for p in model.parameters()]
        loss = train_step(model, optimizer, images, labels, lambda out, y, x: torch.nn.functional.cross_entropy(out, y),
                          config.clip_grad, precision.autocast_for("cpu"), scaler)
        return loss, any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    huge = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)  # any fp16 gradient overflows
    loss, changed = step(huge)
    assert torch.isfinite(loss) and not changed and huge.get_scale() == 2.0 ** 39
    usual = grad_scaler_for("cpu")
    _, changed = step(usual)
    assert changed and usual.get_scale() == 2.0 ** 16
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fp16_clips_the_true_gradients_not_the_scaled_ones(monkeypatch):
    torch.manual_seed(0)
    model = build_vit(embed_dim=16, depth=1, num_heads=2)
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8)

    def update(dtype, clip_grad):  # one SGD step's change of all weights
        monkeypatch.setenv(precision.PRECISION, dtype)
        trained = copy.deepcopy(model)
        train_step(trained, torch.optim.SGD(trained.parameters(), lr=0.1), images, labels,
                   lambda out, y, x: torch.nn.functional.cross_entropy(out, y), clip_grad,
                   precision.autocast_for("cpu"), grad_scaler_for("cpu"))
        return torch.cat([(a - b).flatten() for a, b in zip(trained.parameters(), model.parameters())])

    free = update("fp32", None)
    norm = free.norm().item() / 0.1  # the gradient's
    # A limit 10 times the gradient's norm clips nothing, though 2^16 times the gradient exceeds it.
    assert update("fp16", 10 * norm).norm().item() == pytest.approx(free.norm().item(), rel=0.02)
    assert update("fp16", norm / 2).norm().item() == pytest.approx(free.norm().item() / 2, rel=0.02)


def test_fp16_training_learns_like_fp32(small_data, monkeypatch):
    monkeypatch.setenv(precision.PRECISION, "fp32")
    _, full = run(small_data, epochs=3)
    monkeypatch.setenv(precision.PRECISION, "fp16")
    _, half = run(small_data, epochs=3)
    assert without_time(half) != without_time(full)  # the matrix products did run in fp16
    for a, b in zip(half, full):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.02)
    assert half[-1]["train_loss"] < half[0]["train_loss"]
    assert half[-1]["loss_scale"] == 2.0 ** 16 and "loss_scale" not in full[-1]  # recorded where it acts


def test_an_fp16_loss_that_was_not_finite_between_checks_stops_the_run_unsaved(small_data, tmp_path, monkeypatch):
    """In fp16 the scaler skips that step's update, so the weights stay finite: on a GPU, where the
    loss is read every 50 steps only, the epoch's summed loss is what shows it."""
    monkeypatch.setenv(precision.PRECISION, "fp16")
    monkeypatch.setattr(train, "NAN_CHECK_EVERY", {"cpu": 50})  # the GPU's rule, on the CPU
    steps = []

    def loss_once_nan(outputs, targets, images):
        steps.append(1)
        loss = torch.nn.functional.cross_entropy(outputs.float(), targets)
        return loss * float("nan") if len(steps) == 2 else loss

    with pytest.raises(FloatingPointError, match="in a step of epoch 1"):
        run(small_data, tmp_path, loss_fn=loss_once_nan)
    assert not (tmp_path / train.CHECKPOINT).exists()


def test_an_fp16_run_resumes_with_its_loss_scale(small_data, tmp_path, monkeypatch):
    """The scale adapts as a run trains (here it starts far too high and halves at every overflow);
    a resumed run that started again from the initial scale would skip other steps."""
    monkeypatch.setenv(precision.PRECISION, "fp16")
    monkeypatch.setattr(train, "grad_scaler_for", lambda device: torch.amp.GradScaler("cpu", init_scale=2.0 ** 30))
    _, straight = run(small_data, tmp_path / "straight")
    saved = torch.load(tmp_path / "straight" / train.CHECKPOINT, weights_only=False)
    assert saved["scaler"]["scale"] < 2.0 ** 30
    with pytest.raises(KeyboardInterrupt):
        run(small_data, tmp_path / "stopped", batches=InterruptAt(TensorBatches(small_data[0], 24), epoch=1, batch=2))
    assert len(json.loads((tmp_path / "stopped" / "history.json").read_text())["history"]) == 1
    _, resumed = run(small_data, tmp_path / "stopped")
    assert without_time(resumed) == without_time(straight)


def test_models_trained_together_use_fp16_with_loss_scaling_like_one_model(data, tmp_path, monkeypatch):
    """The group shares one loss scale (an overflow in any model would skip the step for all); none
    overflows here, so each model trains as it does alone, to fp16's rounding."""
    monkeypatch.setenv(precision.PRECISION, "fp16")
    members = [member(data, Recipe.plain(), 0, epochs=1), member(data, Recipe(), 1, epochs=1)]
    grouped = fit_together(members, val_batches(data), device="cpu", run_dir=tmp_path)
    alone = one_by_one(data, [member(data, Recipe.plain(), 0, epochs=1), member(data, Recipe(), 1, epochs=1)])
    for group_history, own_history in zip(grouped, alone):
        assert group_history[-1]["train_loss"] == pytest.approx(own_history[-1]["train_loss"], rel=1e-2)
    monkeypatch.setenv(precision.PRECISION, "fp32")
    in_fp32 = fit_together([member(data, Recipe.plain(), 0, epochs=1), member(data, Recipe(), 1, epochs=1)],
                           val_batches(data), device="cpu")
    assert [metrics(h) for h in grouped] != [metrics(h) for h in in_fp32]  # fp16 did run
    assert torch.load(tmp_path / "last.pt", weights_only=False)["scaler"]["scale"] == 2.0 ** 16


def test_a_group_skips_every_step_whose_scaled_gradients_overflow(data, monkeypatch):
    from helpers import together
    monkeypatch.setenv(precision.PRECISION, "fp16")
    scalers = []
    monkeypatch.setattr(together, "grad_scaler_for", lambda device: scalers.append(
        torch.amp.GradScaler("cpu", init_scale=2.0 ** 60)) or scalers[-1])  # overflows for every step here
    members = [member(data, Recipe.plain(), 0, epochs=1), member(data, Recipe.plain(), 1, epochs=1)]
    before = [copy.deepcopy(m.model.state_dict()) for m in members]
    fit_together(members, val_batches(data), device="cpu")
    steps = len(members[0].train_batches)
    assert scalers[0].get_scale() == 2.0 ** (60 - steps)
    for m, weights in zip(members, before):
        assert all(torch.equal(v, m.model.state_dict()[k]) for k, v in weights.items())


def test_the_notebooks_say_where_training_runs_and_in_what(monkeypatch):
    monkeypatch.delenv(precision.PRECISION, raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert precision.describe_precision(torch.device("cuda")).startswith(
        "Training on cuda (Tesla T4) in fp16 autocast with loss scaling; DEIT_PRECISION=")
    assert precision.describe_precision("cpu").startswith("Training on cpu in fp32;")
