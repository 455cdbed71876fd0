import contextlib
import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.data import TensorBatches, load_cifar10
from helpers.models import build_vit
from helpers.losses import classification_loss
from helpers.train import (CheckpointError, TrainConfig, evaluate, fit, lr_at, make_optimizer,
                           param_groups, train_step)

TINY = dict(embed_dim=16, depth=1, num_heads=2)


@pytest.fixture(scope="module")
def small_data():
    return load_cifar10("train", n_per_class=12), load_cifar10("test", n_per_class=4)


def run(small_data, run_dir=None, epochs=3, batches=None, seed=0, **kwargs):
    train, test = small_data
    torch.manual_seed(123)  # the same initial weights every time
    model = build_vit(**TINY)
    config = TrainConfig(epochs=epochs, batch_size=24, warmup_epochs=1, lr=4e-3, seed=seed)
    history = fit(model, batches or TensorBatches(train, 24, seed=seed), TensorBatches(test, 40, shuffle=False),
                  config, run_dir=run_dir, progress=False, device="cpu", **kwargs)
    return model, history


def without_time(history):
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in history]


class InterruptAt:
    """Batches that raise KeyboardInterrupt at one (epoch, batch), as a user pressing stop."""

    def __init__(self, batches, epoch, batch):
        self.batches, self.stop, self.epoch = batches, (epoch, batch), 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.batches.set_epoch(epoch)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for i, item in enumerate(self.batches):
            if (self.epoch, i) == self.stop:
                raise KeyboardInterrupt
            yield item


def test_warmup_then_cosine():
    assert lr_at(0, 100, 10, 1e-3, warmup_lr=1e-6) == pytest.approx(1e-6)
    assert lr_at(10, 100, 10, 1e-3) == pytest.approx(1e-3)
    assert lr_at(55, 100, 10, 1e-3, min_lr=1e-5) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    assert lr_at(100, 100, 10, 1e-3, min_lr=1e-5) == pytest.approx(1e-5)
    after = [lr_at(s, 100, 10, 1e-3) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(after, after[1:]))


def test_lr_scales_with_batch_size():
    assert TrainConfig(lr=5e-4, batch_size=1024).scaled_lr == pytest.approx(1e-3)


def test_no_weight_decay_on_norms_biases_tokens_and_positions():
    model = build_vit(**TINY)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "pos_embed", "norm.weight", "norm.bias", "head.bias", "blocks.0.attn.qkv.bias"} <= skipped
    assert {names[id(p)] for p in decay["params"]} == {n for n, p in model.named_parameters() if n not in skipped}
    assert all(p.ndim == 2 or p.ndim == 4 for p in decay["params"])
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_no_weight_decay_on_the_distillation_token():
    model = build_vit(**TINY, distilled=True)
    decay, no_decay = param_groups(model, 0.05)
    assert any(p is model.dist_token for p in no_decay["params"])
    assert not any(p is model.dist_token for p in decay["params"])


def test_adamw_decays_only_weight_matrices_by_lr_times_the_configs_decay():
    torch.manual_seed(0)
    model = build_vit(**TINY)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.3), 2e-3, torch.device("cpu"))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # Adam's own update is 0: only the decoupled decay acts
    optimizer.step()
    for n, p in model.named_parameters():
        factor = 1 - 2e-3 * 0.3 if p.ndim > 1 and n not in ("cls_token", "pos_embed") else 1.0
        torch.testing.assert_close(p.detach(), before[n] * factor, msg=n)


def test_opt_sgd_steps_as_timms_sgd_which_deits_opt_sgd_builds():
    from timm.optim import create_optimizer_v2, param_groups_weight_decay
    torch.manual_seed(0)
    model = build_vit(**TINY)
    ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
    config = TrainConfig(opt="sgd", weight_decay=5e-4, momentum=0.9)
    optimizers = [make_optimizer(ours, config, 0.05, torch.device("cpu")),
                  # timm leaves 1-D parameters and the tokens a ViT's no_weight_decay() names undecayed
                  create_optimizer_v2(param_groups_weight_decay(theirs, 5e-4, no_weight_decay_list=("cls_token", "pos_embed")),
                                      "sgd", lr=0.05, momentum=0.9)]
    assert isinstance(optimizers[0], torch.optim.SGD) and optimizers[0].defaults["nesterov"]
    images, labels = torch.randn(4, 3, 32, 32), torch.arange(4)
    for _ in range(3):  # momentum and decay act from the second step on
        for net, optimizer in zip((ours, theirs), optimizers):
            optimizer.zero_grad()
            F.cross_entropy(net(images), labels).backward()
            optimizer.step()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    assert not torch.equal(ours.patch_embed.proj.weight, model.patch_embed.proj.weight)


def test_an_unknown_optimizer_is_named_with_the_choices():
    with pytest.raises(ValueError, match="opt must be one of \\('adamw', 'sgd'\\), not 'adam'"):
        TrainConfig(opt="adam")


def test_a_step_is_minus_lr_times_the_gradient_and_clip_grad_zero_or_none_clip_nothing():
    torch.manual_seed(0)
    model = build_vit(**TINY)
    images, labels = torch.randn(4, 3, 32, 32), torch.arange(4)
    F.cross_entropy(model(images), labels).backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()

    def update(clip_grad):  # one SGD step's change of all weights
        trained = copy.deepcopy(model)
        train_step(trained, torch.optim.SGD(trained.parameters(), lr=0.1), images, labels,
                   lambda out, y, x: F.cross_entropy(out, y), clip_grad, contextlib.nullcontext(),
                   torch.amp.GradScaler("cpu", enabled=False))
        return torch.cat([(a - b).flatten() for a, b in zip(trained.parameters(), model.parameters())])
    for clip_grad in (None, 0.0):  # fit: `if clip_grad:`, as helpers.together's clip_per_model
        torch.testing.assert_close(update(clip_grad), -0.1 * grad)
    torch.testing.assert_close(update(grad.norm().item() / 4), -0.1 * grad / 4)


def test_classification_loss_matches_hard_and_smoothed_ce():
    logits, labels = torch.randn(6, 10), torch.randint(0, 10, (6,))
    one_hot = F.one_hot(labels, 10).float()
    torch.testing.assert_close(classification_loss(logits, one_hot), F.cross_entropy(logits, labels))
    smoothed = one_hot * 0.9 + 0.01
    torch.testing.assert_close(classification_loss(logits, smoothed),
                               classification_loss(logits, labels, smoothing=0.1))


def test_training_learns_and_writes_history(small_data, tmp_path):
    model, history = run(small_data, tmp_path, epochs=4)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_acc", "lr", "seconds", "train_seconds"}
    assert 0 < history[0]["train_seconds"] <= history[0]["seconds"]
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["history"] == history and saved["config"]["epochs"] == 4


def test_same_seed_gives_the_same_history(small_data):
    _, a = run(small_data)
    _, b = run(small_data)
    _, c = run(small_data, seed=1)
    assert without_time(a) == without_time(b)
    assert without_time(a) != without_time(c)


def test_interrupted_run_resumes_to_the_same_history(small_data, tmp_path):
    reference_model, reference = run(small_data, tmp_path / "straight")
    train, _ = small_data
    with pytest.raises(KeyboardInterrupt):
        run(small_data, tmp_path / "stopped", batches=InterruptAt(TensorBatches(train, 24), epoch=1, batch=2))
    assert len(json.loads((tmp_path / "stopped" / "history.json").read_text())["history"]) == 1
    (tmp_path / "stopped" / "last.pt.99999.tmp").write_bytes(b"half of a save killed with its kernel")
    resumed_model, resumed = run(small_data, tmp_path / "stopped")
    assert not (tmp_path / "stopped" / "last.pt.99999.tmp").exists()
    assert without_time(resumed) == without_time(reference)
    for a, b in zip(reference_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_finished_run_is_returned_without_training(small_data, tmp_path):
    _, first = run(small_data, tmp_path)
    _, again = run(small_data, tmp_path, batches=InterruptAt(TensorBatches(small_data[0], 24), epoch=0, batch=0))
    assert again == first


def test_corrupt_checkpoint_is_reported_and_kept(small_data, tmp_path):
    run(small_data, tmp_path, epochs=1)
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="cannot be read.*left untouched"):
        run(small_data, tmp_path)
    assert checkpoint.read_bytes() == b"truncated"


def test_checkpoint_from_another_config_is_refused(small_data, tmp_path):
    run(small_data, tmp_path, epochs=1)
    with pytest.raises(CheckpointError, match="(?s)another config.*'epochs'.*epochs: saved 1, now 2"):
        run(small_data, tmp_path, epochs=2)


def test_existing_run_is_not_overwritten_without_resume(small_data, tmp_path):
    run(small_data, tmp_path, epochs=1)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="nothing was overwritten"):
        run(small_data, tmp_path, epochs=1, resume=False)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_nan_loss_stops_with_a_clear_message(small_data):
    def poison(images, labels):
        return torch.full(images.shape, math.nan), labels
    with pytest.raises(FloatingPointError, match="loss became nan at epoch 1, step 1.*Lower the learning rate") as err:
        run(small_data, batch_transform=poison)
    assert "checkpoint" not in str(err.value)  # nothing was saved yet, so none is named


def test_an_infinite_loss_stops_the_run_too(small_data):
    def infinite(outputs, targets, images):
        return F.cross_entropy(outputs, targets) * math.inf
    with pytest.raises(FloatingPointError, match="loss became inf at epoch 1, step 1"):
        run(small_data, loss_fn=infinite)


def test_float_batches_from_a_dataloader_are_used_as_they_are(small_data):
    from helpers.augment import normalize
    train, test = small_data
    images = normalize(train.images.permute(0, 3, 1, 2))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, train.labels), batch_size=24)
    _, history = run(small_data, batches=loader, epochs=1)
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])


def test_too_few_images_for_one_batch_is_explained(small_data):
    train, test = small_data
    with pytest.raises(ValueError, match="no batch of 500 images.*smaller batch size"):
        fit(build_vit(**TINY), TensorBatches(train, 500, drop_last=True), TensorBatches(test, 40),
            TrainConfig(epochs=1, batch_size=500), progress=False, device="cpu")


# --- notebook 04's exercise: warmup + cosine, checked against lr_at ---------------------------

def written_schedule(step, total_steps, warmup_steps, peak, warmup_lr, min_lr, *, warmup=True, floor=True):
    """A schedule written from its definition (not lr_at), with switches for two common mistakes."""
    if warmup and step < warmup_steps:
        return warmup_lr + (peak - warmup_lr) * step / warmup_steps
    start = warmup_steps if warmup else 0
    end = min_lr if floor else 0.0
    progress = (step - start) / max(1, total_steps - start)
    return end + (peak - end) * (1 + math.cos(math.pi * progress)) / 2


def test_schedule_checker_accepts_correct_schedules(capsys):
    from helpers.exercises_fast import check_warmup_cosine
    assert check_warmup_cosine(lr_at)
    assert check_warmup_cosine(written_schedule)
    assert capsys.readouterr().out.count("Correct!") == 2


@pytest.mark.parametrize("mistake, hint", [
    (dict(warmup=False), "there is no warmup"),
    (dict(floor=False), "the cosine decays towards 0; it should end at min_lr"),
])
def test_schedule_checker_rejects_a_wrong_schedule(capsys, mistake, hint):
    from helpers.exercises_fast import check_warmup_cosine
    assert not check_warmup_cosine(lambda *args: written_schedule(*args, **mistake))
    out = capsys.readouterr().out
    assert out.startswith("Not yet:") and hint in out


def test_schedule_checker_names_a_cosine_that_ends_a_step_early(capsys):
    from helpers.exercises_fast import check_warmup_cosine

    def one_step_early(step, total_steps, warmup_steps, peak, warmup_lr, min_lr):  # off by a hair at first
        if step < warmup_steps:
            return warmup_lr + (peak - warmup_lr) * step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - 1 - warmup_steps))
        return min_lr + (peak - min_lr) * (1 + math.cos(math.pi * progress)) / 2
    assert not check_warmup_cosine(one_step_early)
    assert "progress reaches 1 one step early" in capsys.readouterr().out


def test_schedule_checker_names_the_wrong_endpoint(capsys):
    from helpers.exercises_fast import check_warmup_cosine

    def ends_early(step, total_steps, warmup_steps, peak, warmup_lr, min_lr):
        # Right everywhere except the last step, which should be min_lr.
        right = lr_at(step, total_steps, warmup_steps, peak, warmup_lr, min_lr)
        return right if step < total_steps else peak
    assert not check_warmup_cosine(ends_early)
    assert "must end at min_lr" in capsys.readouterr().out


def test_schedule_checker_reports_a_stub_without_raising(capsys):
    from helpers.exercises_fast import check_warmup_cosine

    def stub(step, total_steps, warmup_steps, peak, warmup_lr, min_lr):
        raise NotImplementedError
    assert check_warmup_cosine(stub) is False
    out = capsys.readouterr().out
    assert "still raises NotImplementedError" in out and "total_steps=" not in out  # no case details




def test_progress_bars_answer_tqdms_own_switch(small_data, capfd, monkeypatch):
    train, test = small_data

    def one_epoch() -> str:
        fit(build_vit(**TINY), TensorBatches(train, 24), TensorBatches(test, 40, shuffle=False),
            TrainConfig(epochs=1, batch_size=24, warmup_epochs=0, lr=4e-3), progress=True, device="cpu")
        return capfd.readouterr().err

    assert "epoch 1/1" in one_epoch()
    monkeypatch.setenv("TQDM_DISABLE", "1")  # as benchmarks/notebook_check.py runs the notebooks
    assert "epoch 1/1" not in one_epoch()


def test_the_bars_loss_is_read_only_where_the_nan_check_has_waited_for_the_gpu(small_data, monkeypatch):
    """Reading a loss makes the CPU wait for the GPU: the bar shows it only at the NaN checks."""
    import tqdm.auto

    from helpers import train as train_module
    monkeypatch.setattr(train_module, "NAN_CHECK_EVERY", {"cpu": 3})  # a GPU's rule, on the CPU
    monkeypatch.setattr(train_module, "POSTFIX_EVERY", 2)
    events, check = [], train_module._stop_if_not_finite

    def checking(*args, **kwargs):
        events.append("check")
        return check(*args, **kwargs)

    class Bar(tqdm.auto.tqdm):
        def set_postfix(self, *args, **kwargs):
            events.append("loss shown")
            return super().set_postfix(*args, **kwargs)

    monkeypatch.setattr(train_module, "_stop_if_not_finite", checking)
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    train, test = small_data

    def one_epoch() -> list:
        events.clear()
        fit(build_vit(**TINY), TensorBatches(train, 24), TensorBatches(test, 40, shuffle=False),
            TrainConfig(epochs=1, batch_size=24, warmup_epochs=0, lr=4e-3), progress=True, device="cpu")
        return list(events)

    shown = one_epoch()
    assert shown.count("loss shown") >= 2  # steps 1, 4, 7, ...
    assert all(shown[i - 1] == "check" for i, event in enumerate(shown) if event == "loss shown")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert "loss shown" not in one_epoch()  # no bar drawn: no loss read for it


def test_running_out_of_gpu_memory_names_smaller_settings_and_keeps_finished_epochs(small_data, tmp_path):
    from helpers.errors import CourseError

    calls = []

    def loss_that_runs_out(outputs, targets, images):  # the second epoch's third step needs too much
        calls.append(1)
        if len(calls) == len(TensorBatches(small_data[0], 24)) + 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nmore detail")
        return classification_loss(outputs, targets, 0.1)

    with pytest.raises(torch.OutOfMemoryError) as caught:  # still one, for callers that try smaller runs
        run(small_data, tmp_path, loss_fn=loss_that_runs_out)
    message = str(caught.value)
    assert isinstance(caught.value, CourseError)
    assert message.startswith("The cpu device ran out of memory in a run with batches of 24 images "
                              "(CUDA out of memory. Tried to allocate 2.00 GiB.)")
    assert "--batch-size 12" in message and "DEIT_PROFILE=cpu" in message and "more detail" not in message
    assert caught.value.__context__ is None  # the failed step's tensors are not held by the error
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 1  # the first epoch was kept
    _, resumed = run(small_data, tmp_path)
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert len(json.loads((tmp_path / "history.json").read_text())["history"]) == 3


def test_evaluate_averages_over_images_not_batches_and_leaves_eval_mode_on():
    # Float "images" pass through unnormalized; a Flatten + identity Linear makes them the logits.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(3)), model[1].bias.zero_()
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([0, 2, 2])  # the second image is wrong
    batches = [(logits[:2], labels[:2]), (logits[2:], labels[2:])]  # batches of 2 and 1
    by_hand = sum(-torch.log_softmax(row, 0)[y].item() for row, y in zip(logits, labels)) / 3
    result = evaluate(model.train(), batches)
    assert result["val_loss"] == pytest.approx(by_hand, rel=1e-6)
    assert result["val_acc"] == pytest.approx(200 / 3) and not model.training


def test_schedule_checker_accepts_a_schedule_computed_in_float32(capsys):
    from helpers.exercises_fast import check_warmup_cosine

    def with_torch_cos(step, total_steps, warmup_steps, peak, warmup_lr, min_lr):
        if step < warmup_steps:
            return warmup_lr + (peak - warmup_lr) * step / warmup_steps
        progress = torch.tensor((step - warmup_steps) / max(1, total_steps - warmup_steps))  # float32
        return min_lr + (peak - min_lr) * 0.5 * (1 + torch.cos(math.pi * progress))
    assert check_warmup_cosine(with_torch_cos)
    assert capsys.readouterr().out.startswith("Correct!")


def test_schedule_checker_prints_two_different_rates(capsys):
    import re

    from helpers.exercises_fast import check_warmup_cosine

    def pi_is_3_1416(step, total_steps, warmup_steps, peak, warmup_lr, min_lr):  # a small error, at first
        if step < warmup_steps:
            return warmup_lr + (peak - warmup_lr) * step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr + (peak - min_lr) * 0.5 * (1 + math.cos(3.1416 * progress))
    assert not check_warmup_cosine(pi_is_3_1416)
    want, got = re.search(r"should have lr (\S+), not (\S+);", capsys.readouterr().out).groups()
    assert want != got


def test_the_default_config_is_deits_table_9():
    """lr 5e-4 per 512 images, weight decay 0.05, 5 warmup epochs from 1e-6, cosine to main.py's
    --min-lr 1e-5, label smoothing 0.1; clipping at 1.0 is the course's (DeiT does not clip)."""
    c = TrainConfig()
    assert (c.lr, c.weight_decay, c.warmup_epochs, c.warmup_lr, c.min_lr, c.smoothing, c.clip_grad, c.opt) == \
           (5e-4, 0.05, 5, 1e-6, 1e-5, 0.1, 1.0, "adamw")


def test_sgd_uses_the_configured_momentum():
    config = TrainConfig(opt="sgd", momentum=0.5)
    optimizer = make_optimizer(build_vit(embed_dim=24, depth=1, num_heads=2), config, 0.1, torch.device("cpu"))
    assert {g["momentum"] for g in optimizer.param_groups} == {0.5}
    assert all(g["nesterov"] for g in optimizer.param_groups)
