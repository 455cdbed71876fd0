import math
from dataclasses import asdict, replace

import pytest
import timm
import torch
import torch.nn.functional as F

from helpers import distill, exercises_distillation as ex, losses, teacher as teach
from helpers.augment import normalize
from helpers.batch_augment import BatchAugment
from helpers.data import TensorBatches
from helpers.models import build_vit, count_parameters
from helpers.profiles import PROFILES
from helpers.train import TrainConfig, fit

TINY_TEACHER = teach.TeacherConfig(layers=(1, 1, 1, 1), channels=(8, 8, 16, 16), epochs=1, batch_size=50)
TINY_STUDENT = dict(embed_dim=24, depth=2, num_heads=2)


# --- The distilled student against timm's VisionTransformerDistilled -----------------------------

def timm_distilled(**sizes):
    cfg = {**dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, num_classes=10), **sizes}
    return timm.models.deit.VisionTransformerDistilled(**cfg)


@pytest.mark.parametrize("sizes", [{}, PROFILES["ci"].vit_sizes])
def test_distilled_student_matches_timm(sizes):
    torch.manual_seed(0)
    ours, reference = build_vit(distilled=True, **sizes), timm_distilled(**sizes)
    assert count_parameters(ours) == count_parameters(reference)
    reference.load_state_dict(ours.state_dict())  # strict: same names and shapes, incl. dist_token
    reference.set_distilled_training(True)
    x = torch.randn(3, 3, 32, 32)
    ours.train(), reference.train()
    (cls, dist), (ref_cls, ref_dist) = ours(x), reference(x)
    torch.testing.assert_close(cls, ref_cls, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dist, ref_dist, rtol=1e-4, atol=1e-5)
    ours.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours(x), (cls + dist) / 2, rtol=1e-4, atol=1e-5)


def test_token_order_is_cls_dist_patches():
    model = build_vit(distilled=True, **TINY_STUDENT)
    tokens = model.tokens(torch.zeros(2, 3, 32, 32))
    assert tokens.shape == (2, 66, 24)  # 64 patches + CLS + DIST
    zero_patch = model.patch_embed(torch.zeros(1, 3, 32, 32))[0, 0]  # the conv's bias
    torch.testing.assert_close(tokens[0, 0], model.cls_token[0, 0] + model.pos_embed[0, 0])
    torch.testing.assert_close(tokens[0, 1], model.dist_token[0, 0] + model.pos_embed[0, 1])
    torch.testing.assert_close(tokens[0, 2], zero_patch + model.pos_embed[0, 2])


# --- Losses against their closed forms -----------------------------------------------------------

def small_case():
    cls = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    dist = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    teacher = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])  # argmax: 1, 0
    labels = torch.tensor([0, 2])
    return cls, dist, teacher, labels


def log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def ce(rows, targets):
    return sum(-log_softmax(r)[t] for r, t in zip(rows, targets)) / len(rows)


def test_none_is_cross_entropy_on_the_cls_head_only():
    cls, dist, teacher, labels = small_case()
    want = ce(cls.tolist(), labels.tolist())
    assert losses.distillation_loss("none", (cls, dist), labels).item() == pytest.approx(want, rel=1e-5)
    mixed = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    want_mixed = sum(-sum(p * l for p, l in zip(prow, log_softmax(r)))
                     for prow, r in zip(mixed.tolist(), cls.tolist())) / 2
    assert losses.distillation_loss("none", (cls, dist), mixed).item() == pytest.approx(want_mixed, rel=1e-5)


def test_hard_is_half_labels_half_teacher_argmax():
    cls, dist, teacher, labels = small_case()
    want = 0.5 * ce(cls.tolist(), [0, 2]) + 0.5 * ce(dist.tolist(), [1, 0])
    got = losses.distillation_loss("hard", (cls, dist), labels, teacher)
    assert got.item() == pytest.approx(want, rel=1e-5)


def kl_by_hand(dist, teacher, tau):
    total = 0.0
    for s, t in zip(dist.tolist(), teacher.tolist()):
        ls, lt = log_softmax([v / tau for v in s]), log_softmax([v / tau for v in t])
        total += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
    return total  # summed over the batch


def test_soft_uses_tau_squared_kl_divided_by_every_element():
    cls, dist, teacher, labels = small_case()
    kl = kl_by_hand(dist, teacher, 3.0)
    want = 0.9 * ce(cls.tolist(), [0, 2]) + 0.1 * 9.0 * kl / dist.numel()
    got = losses.distillation_loss("soft", (cls, dist), labels, teacher)
    assert got.item() == pytest.approx(want, rel=1e-5)
    # batchmean: the same KL divided by the batch only, i.e. K = 3 times larger
    term = losses.soft_distillation_term(dist, teacher, 3.0, reduction="batchmean")
    assert term.item() == pytest.approx(9.0 * kl / 2, rel=1e-5)
    # DeiT's code: F.kl_div(log_softmax(s/T), log_softmax(t/T), 'sum', log_target=True) * T^2 / numel
    deit = F.kl_div(F.log_softmax(dist / 3, -1), F.log_softmax(teacher / 3, -1), reduction="sum",
                    log_target=True) * 9 / dist.numel()
    assert losses.soft_distillation_term(dist, teacher).item() == pytest.approx(deit.item(), rel=1e-5)


def test_soft_term_is_zero_when_student_copies_teacher():
    _, _, teacher, _ = small_case()
    assert losses.soft_distillation_term(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.soft_distillation_term(-teacher, teacher).item() > 0.1
    shifted = losses.soft_distillation_term(teacher + 5.0, teacher).item()
    assert shifted == pytest.approx(0.0, abs=1e-6)  # softmax ignores a constant shift


def test_alpha_weighs_the_teacher_term_from_0_to_1():
    cls, dist, teacher, labels = small_case()
    def hard(alpha):
        return losses.distillation_loss("hard", (cls, dist), labels, teacher, alpha=alpha).item()
    assert hard(0.0) == pytest.approx(ce(cls.tolist(), [0, 2]), rel=1e-5)
    assert hard(1.0) == pytest.approx(ce(dist.tolist(), [1, 0]), rel=1e-5)  # the teacher alone
    soft = losses.distillation_loss("soft", (cls, dist), labels, teacher, alpha=0.3)
    assert soft.item() == pytest.approx(0.7 * ce(cls.tolist(), [0, 2]) + 0.3 * 9.0 * kl_by_hand(dist, teacher, 3.0) / 6,
                                        rel=1e-5)


def smoothed_ce(rows, targets, eps):
    """Cross-entropy against (1 - eps) one-hot + eps / K, by hand."""
    total = 0.0
    for r, t in zip(rows, targets):
        logp = log_softmax(r)
        total -= (1 - eps) * logp[t] + eps / len(r) * sum(logp)
    return total / len(rows)


def identity_teacher(k=3):
    """A teacher whose logits are its input: give it the teacher logits as the "images"."""
    linear = torch.nn.Linear(k, k)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(k)), linear.bias.zero_()
    return linear


def test_distillation_loss_module_uses_every_option_it_is_given():
    cls, dist, teacher, labels = small_case()
    loss_fn = losses.DistillationLoss(identity_teacher(), "soft", alpha=0.3, tau=2.0, smoothing=0.2,
                                      kl_reduction="batchmean")
    want = 0.7 * smoothed_ce(cls.tolist(), [0, 2], 0.2) + 0.3 * 4.0 * kl_by_hand(dist, teacher, 2.0) / 2
    assert loss_fn((cls, dist), labels, teacher).item() == pytest.approx(want, rel=1e-5)
    plain = losses.DistillationLoss(None, "none", smoothing=0.2)
    assert plain(cls, labels, None).item() == pytest.approx(smoothed_ce(cls.tolist(), [0, 2], 0.2), rel=1e-5)


def test_a_plain_module_given_as_teacher_is_frozen():
    teacher = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 3)).train()
    cls, dist, _, labels = small_case()
    dist.requires_grad_(True)
    losses.DistillationLoss(teacher, "hard")((cls, dist), labels, torch.randn(2, 3) + 5).backward()
    assert dist.grad is not None and all(p.grad is None for p in teacher.parameters())
    assert not teacher.training and torch.equal(teacher[0].running_mean, torch.zeros(3))  # no batch statistics


@pytest.mark.parametrize("call, message", [
    (lambda c, d, t, y: losses.distillation_loss("medium", (c, d), y, t), "kind must be one of"),
    (lambda c, d, t, y: losses.distillation_loss("hard", c, y, t), "distilled=True"),
    (lambda c, d, t, y: losses.distillation_loss("hard", (c, d), y, None), "teacher's logits"),
    (lambda c, d, t, y: losses.distillation_loss("soft", (c, d), y, t[:1]), "do not match"),
    (lambda c, d, t, y: losses.distillation_loss("soft", (c, d), y, t, tau=0), "tau must be positive"),
    (lambda c, d, t, y: losses.distillation_loss("hard", (c, d), y, t, alpha=2), "alpha must be in"),
    (lambda c, d, t, y: losses.DistillationLoss(None, "soft"), "needs a teacher"),
])
def test_bad_loss_arguments_are_explained(call, message):
    with pytest.raises(ValueError, match=message):
        call(*small_case())


# --- The teacher inside the training loop --------------------------------------------------------

class SpyTeacher(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.net(x)


class SpyStudent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.vit = build_vit(distilled=True, **TINY_STUDENT)
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.vit(x)


def test_teacher_sees_exactly_the_students_augmented_mixed_batch(cifar_train_small):
    torch.manual_seed(0)
    spy_teacher, student = SpyTeacher(), SpyStudent()
    augment = BatchAugment()  # crop, flip, erasing, MixUp/CutMix: every batch is different
    fit(student, TensorBatches(cifar_train_small, 50), TensorBatches(cifar_train_small, 100, shuffle=False),
        TrainConfig(epochs=1, batch_size=50, warmup_epochs=0), batch_transform=augment,
        loss_fn=losses.DistillationLoss(spy_teacher, "soft"), progress=False, device="cpu")
    assert len(student.seen) == len(spy_teacher.seen) == 4
    for s, t in zip(student.seen, spy_teacher.seen):
        assert torch.equal(s, t)
    assert not torch.equal(student.seen[0], student.seen[1])


def tiny_teacher_data(cifar_train_small):
    """(train, validation, test) as profile_data gives them."""
    return cifar_train_small, cifar_train_small.subset(range(50)), cifar_train_small.subset(range(100))


def test_teacher_never_changes_while_the_student_trains(cifar_train_small):
    model, _ = teach.train_teacher("ci", TINY_TEACHER, device="cpu", progress=False,
                                   data=tiny_teacher_data(cifar_train_small))
    frozen = teach.FrozenTeacher(model)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}  # incl. BatchNorm running stats
    student = build_vit(distilled=True, **TINY_STUDENT)
    frozen.train()  # a caller's .train() must not switch BatchNorm to batch statistics
    assert not frozen.training and not frozen.model.training
    fit(student, TensorBatches(cifar_train_small, 50), TensorBatches(cifar_train_small, 100, shuffle=False),
        TrainConfig(epochs=1, batch_size=50, warmup_epochs=0), batch_transform=BatchAugment(),
        loss_fn=losses.DistillationLoss(frozen, "hard"), progress=False, device="cpu")
    after = frozen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.model.train()  # even if the inner model is switched to train mode directly
    frozen(torch.randn(4, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())



def test_teacher_follows_the_device_of_its_inputs():
    # A teacher a distilled run moved to the GPU must still answer a notebook cell's CPU tensor,
    # and the reverse; "meta" stands in for a second device on a CPU-only machine.
    frozen = teach.FrozenTeacher(teach.build_teacher(TINY_TEACHER))
    assert frozen(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    out = frozen(torch.zeros(2, 3, 32, 32, device="meta"))
    assert out.device.type == "meta" and all(p.device.type == "meta" for p in frozen.parameters())

# --- The teacher's architecture and checkpoint ---------------------------------------------------

def test_full_teacher_is_timm_resnet18_with_a_32px_stem():
    ours = teach.build_teacher(teach.TEACHERS["full"])
    resnet18 = timm.create_model("resnet18", pretrained=False, num_classes=10)
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    ref_shapes = {k: v.shape for k, v in resnet18.state_dict().items()}
    assert ours_shapes.keys() == ref_shapes.keys()
    differs = {k for k in ours_shapes if ours_shapes[k] != ref_shapes[k]}
    assert differs == {"conv1.weight"}
    assert ours_shapes["conv1.weight"] == (64, 3, 3, 3) and ref_shapes["conv1.weight"] == (64, 3, 7, 7)
    assert isinstance(ours.maxpool, torch.nn.Identity)
    with torch.no_grad():  # stride 1 stem: 32 -> 32 -> 16 -> 8 -> 4 over the four stages
        assert ours.eval().forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 4, 4)


def test_the_teachers_first_stage_sees_all_32x32_pixels():
    model, seen = teach.build_teacher(TINY_TEACHER).eval(), []
    model.layer1.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert seen == [(1, 8, 32, 32)]


def test_teacher_config_overrides_only_the_fields_named():
    config = teach.teacher_config("ci", epochs=2, lr=0.05)
    assert (config.epochs, config.lr) == (2, 0.05)
    assert replace(config, epochs=teach.TEACHERS["ci"].epochs, lr=teach.TEACHERS["ci"].lr) == teach.TEACHERS["ci"]
    with pytest.raises(TypeError, match="epoch"):
        teach.teacher_config("ci", epoch=2)


def test_teacher_lr_is_per_128_images_and_scales_with_the_batch():
    assert teach.TeacherConfig(lr=0.1, batch_size=512).scaled_lr == pytest.approx(0.4)
    assert teach.TeacherConfig(lr=0.1, batch_size=64).scaled_lr == pytest.approx(0.05)


def test_sgd_decays_the_weights_of_convolutions_and_classifier_only():
    model = teach.build_teacher(TINY_TEACHER)
    decay, no_decay = teach.sgd_nesterov(replace(TINY_TEACHER, momentum=0.8))(model, "cpu").param_groups
    weights = {id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert {id(p) for p in decay["params"]} == weights
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in model.parameters()} - weights  # BN, biases
    assert decay["momentum"] == no_decay["momentum"] == 0.8


def test_warmup_lasts_the_whole_steps_in_its_fraction_rounded_down():
    lr, peak = teach.linear_warmup_then_decay(TINY_TEACHER), TINY_TEACHER.scaled_lr
    # 12 steps: 20 % is 2.4, so 2 warmup steps, then 10 down to zero
    assert [lr(step, 12) for step in (0, 1, 2, 11)] == pytest.approx([peak / 2, peak, peak, peak / 10])
    assert lr(0, 3) == pytest.approx(peak)  # under one step of warmup: one step


class PixelThreshold(torch.nn.Module):
    """Class 1 where the first red pixel is above the CIFAR-10 mean after normalization, else 0."""

    def forward(self, x):
        assert not self.training
        return torch.stack([torch.zeros(len(x)), x[:, 0, 0, 0]], dim=-1)


def test_accuracy_counts_every_batch_in_eval_mode_on_normalized_images():
    # red 255 normalizes above zero (class 1); red 100 below it (0.39 < CIFAR's mean red 0.49)
    images = torch.full((30, 3, 32, 32), 255, dtype=torch.uint8)
    images[18:] = 100
    model = PixelThreshold().train()
    assert teach.accuracy(model, images, torch.ones(30, dtype=torch.long), batch_size=7) == pytest.approx(60.0)


def test_the_teacher_trains_on_random_crops_and_flips_of_its_images(cifar_train_small):
    image = cifar_train_small.images[:1].permute(0, 3, 1, 2)
    padded = F.pad(image, (4, 4, 4, 4))  # zero padding, then a 32 x 32 window, maybe mirrored

    def window(dy, dx, flip):
        crop = padded[0, :, dy:dy + 32, dx:dx + 32]
        return normalize((crop.flip(-1) if flip else crop)[None])[0]
    views = [window(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (0, 1)]
    torch.manual_seed(0)
    out, _ = teach._crop_flip_normalize(image.repeat(64, 1, 1, 1), torch.zeros(64, dtype=torch.long))
    matches = [next(k for k, view in enumerate(views) if torch.equal(view, x)) for x in out]
    assert len(set(matches)) > 20 and {k % 2 for k in matches} == {0, 1}  # many windows, flipped and not


def test_teacher_training_is_seeded_and_records_its_final_epoch(cifar_train_small):
    config, data = replace(TINY_TEACHER, epochs=2), tiny_teacher_data(cifar_train_small)
    first, record = teach.train_teacher("ci", config, device="cpu", progress=False, data=data)
    torch.rand(10)  # the global random state moves on between the runs
    second, _ = teach.train_teacher("ci", config, device="cpu", progress=False, data=data)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    val = data[1]
    assert record["val_acc"] == teach.accuracy(first, val.images.permute(0, 3, 1, 2).contiguous(), val.labels)
    assert record["history"][0]["val_acc"] != record["val_acc"]  # so the epoch it is taken from matters


@pytest.fixture
def saved_teacher(tmp_path, cifar_train_small):
    path = tmp_path / "teacher" / "teacher.pt"
    model, record = teach.train_teacher("ci", TINY_TEACHER, device="cpu", progress=False,
                                        data=tiny_teacher_data(cifar_train_small))
    teach.save_teacher(model, record, path)
    return path, model, record


def test_saved_teacher_is_reused_not_retrained(saved_teacher, monkeypatch):
    path, model, record = saved_teacher
    monkeypatch.setattr(teach, "train_teacher", lambda *a, **k: pytest.fail("retrained a good teacher"))
    loaded = teach.load_or_train_teacher("ci", path=path, config=TINY_TEACHER)
    assert isinstance(loaded, teach.FrozenTeacher)
    assert loaded.test_acc == record["test_acc"] and loaded.info["config"]["channels"] == (8, 8, 16, 16)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_missing_teacher_is_explained_and_trained_only_when_asked(tmp_path, cifar_train_small, monkeypatch):
    path = tmp_path / "teacher.pt"
    with pytest.raises(teach.TeacherError, match="No teacher checkpoint.*Check the path.*train_if_missing=True"):
        teach.load_or_train_teacher("ci", path=path, config=TINY_TEACHER)
    assert not path.exists()
    monkeypatch.setattr(teach, "profile_data", lambda profile: tiny_teacher_data(cifar_train_small))
    teacher = teach.load_or_train_teacher("ci", path=path, config=TINY_TEACHER, train_if_missing=True,
                                          device="cpu", progress=False)
    assert path.exists()
    _, _, test = tiny_teacher_data(cifar_train_small)  # the recorded accuracy is the saved model's
    recomputed = teach.accuracy(teacher.model, test.images.permute(0, 3, 1, 2).contiguous(), test.labels)
    assert teacher.test_acc == pytest.approx(recomputed)


def test_an_interrupted_teacher_resumes_from_its_last_epoch_and_ends_as_an_uninterrupted_one(
        tmp_path, cifar_train_small, monkeypatch, capsys):
    config, data = replace(TINY_TEACHER, epochs=3), tiny_teacher_data(cifar_train_small)
    monkeypatch.setattr(teach, "profile_data", lambda profile: data)
    whole, _ = teach.train_teacher("ci", config, device="cpu", progress=False, data=data)
    path, fit = tmp_path / "teacher.pt", teach.fit

    def stopped_after_epoch_2(*args, **kwargs):  # the stop button, in epoch 3
        def stop(history):
            if len(history) == 2:
                raise KeyboardInterrupt
        return fit(*args, **kwargs, on_epoch=stop)
    monkeypatch.setattr(teach, "fit", stopped_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        teach.load_or_train_teacher("ci", path=path, config=config, train_if_missing=True, device="cpu", progress=False)
    assert not path.exists() and (teach.training_folder(path) / "last.pt").exists()
    monkeypatch.setattr(teach, "fit", fit)
    teacher = teach.load_or_train_teacher("ci", path=path, config=config, train_if_missing=True, device="cpu",
                                          progress=True)
    assert "Resumed from" in capsys.readouterr().out and len(teacher.info["history"]) == 3
    assert all(torch.equal(a, b) for a, b in zip(teacher.model.state_dict().values(), whole.state_dict().values()))
    assert not teach.training_folder(path).exists()  # saved as teacher.pt: its checkpoints are gone


def test_a_teacher_training_left_by_another_config_is_named_not_resumed(tmp_path, cifar_train_small, monkeypatch):
    data = tiny_teacher_data(cifar_train_small)
    monkeypatch.setattr(teach, "profile_data", lambda profile: data)
    path = tmp_path / "teacher.pt"
    teach.train_teacher("ci", TINY_TEACHER, device="cpu", progress=False, data=data,
                        run_dir=teach.training_folder(path))  # as if interrupted before it was saved
    from helpers.train import CheckpointError
    with pytest.raises(CheckpointError, match=r"(?s)another config.*model.lr: saved 0.*now 0.*delete that folder"):
        teach.load_or_train_teacher("ci", path=path, config=replace(TINY_TEACHER, lr=TINY_TEACHER.lr / 2),
                                    train_if_missing=True, device="cpu", progress=False)


def test_corrupt_teacher_is_never_overwritten_silently(saved_teacher, cifar_train_small, monkeypatch):
    path, _, _ = saved_teacher
    path.write_bytes(b"not a checkpoint")
    for kwargs in ({}, {"train_if_missing": True}):
        with pytest.raises(teach.TeacherError, match=r"(?s)cannot be used \(truncated.*left untouched.*retrain=True"):
            teach.load_or_train_teacher("ci", path=path, config=TINY_TEACHER, **kwargs)
        assert path.read_bytes() == b"not a checkpoint"
    monkeypatch.setattr(teach, "profile_data", lambda profile: tiny_teacher_data(cifar_train_small))
    teacher = teach.load_or_train_teacher("ci", retrain=True, path=path, config=TINY_TEACHER,
                                          device="cpu", progress=False)
    assert path.with_name("teacher.pt.bad").read_bytes() == b"not a checkpoint"
    assert teacher.info["config"] == asdict(TINY_TEACHER)


def test_foreign_torch_file_is_not_taken_for_a_teacher(tmp_path):
    path = tmp_path / "teacher.pt"
    torch.save({"model": {"weight": torch.zeros(2)}, "config": {}}, path)
    with pytest.raises(teach.TeacherError, match="does not hold a teacher"):
        teach.load_teacher("ci", path=path)


def test_teacher_with_another_config_is_explained(saved_teacher):
    path, _, _ = saved_teacher
    with pytest.raises(teach.TeacherError, match="another config"):
        teach.load_teacher("ci", path=path, config=teach.TEACHERS["ci"])


# --- Analysis tools ------------------------------------------------------------------------------

def test_token_similarity_and_head_logits():
    torch.manual_seed(0)
    model = build_vit(distilled=True, **TINY_STUDENT)
    x = torch.randn(4, 3, 32, 32)
    sims = distill.token_similarity(model, x)
    assert len(sims) == TINY_STUDENT["depth"] + 2 and all(-1 <= s <= 1 for s in sims)
    with torch.no_grad():  # the input similarity is that of (token + position embedding) vectors
        a, b = model.cls_token[0, 0] + model.pos_embed[0, 0], model.dist_token[0, 0] + model.pos_embed[0, 1]
        assert sims[0] == pytest.approx(F.cosine_similarity(a, b, dim=0).item(), abs=1e-5)
    model.dist_token.data = model.cls_token.data.clone()  # identical tokens and positions stay identical
    model.pos_embed.data[:, 1] = model.pos_embed.data[:, 0]
    assert distill.token_similarity(model, x) == pytest.approx([1.0] * len(sims), abs=1e-5)
    model.train()
    cls, dist = distill.head_logits(model, x)
    assert model.training and cls.shape == dist.shape == (4, 10)


def test_token_similarity_runs_in_eval_mode_ends_after_the_norm_and_keeps_the_mode():
    torch.manual_seed(0)
    model = build_vit(distilled=True, drop_path_rate=0.5, **TINY_STUDENT)  # in train mode drop path is random
    x = torch.randn(4, 3, 32, 32)
    sims = distill.token_similarity(model, x)
    assert model.training and distill.token_similarity(model, x) == sims
    with torch.no_grad():
        features = model.eval().forward_features(x)
    after_norm = F.cosine_similarity(features[:, 0], features[:, 1], dim=-1).mean().item()
    assert sims[-1] == pytest.approx(after_norm, abs=1e-5)


def test_attention_maps_are_timms_attention_weights_and_keep_the_mode():
    from timm.utils import AttentionExtract

    torch.manual_seed(0)
    ours, reference = build_vit(distilled=True, **TINY_STUDENT), timm_distilled(**TINY_STUDENT)
    reference.load_state_dict(ours.state_dict())
    for module in reference.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False  # the fused kernel never forms the weights the hooks read
    x = torch.randn(3, 3, 32, 32)
    ours.train()
    maps = distill.attention_maps(ours, x)
    assert ours.training  # measured in eval mode, left in train mode
    theirs = list(AttentionExtract(reference, method="hook")(x).values())
    assert len(maps) == len(theirs) == TINY_STUDENT["depth"]
    for a, b in zip(maps, theirs):
        assert a.shape == (3, TINY_STUDENT["num_heads"], 66, 66)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))


def test_the_attention_weights_give_what_the_fused_attention_computes():
    torch.manual_seed(0)
    attention = build_vit(**TINY_STUDENT).blocks[0].attn
    x = torch.randn(2, 10, 24)
    weights = attention.attention_weights(x)
    v = attention.qkv(x).reshape(2, 10, 3, 2, 12).permute(2, 0, 3, 1, 4)[2]
    by_hand = attention.proj((weights @ v).transpose(1, 2).reshape(2, 10, 24))
    torch.testing.assert_close(by_hand, attention(x), rtol=1e-4, atol=1e-6)


def _two_rows(cls_row, dist_row, tokens=6):
    """Maps of one block, one image, one head, whose [CLS] and [DIST] rows are given."""
    a = torch.full((1, 1, tokens, tokens), 1 / tokens)
    a[0, 0, 0], a[0, 0, 1] = torch.tensor(cls_row), torch.tensor(dist_row)
    return [a]


def test_attention_overlap_is_one_for_equal_rows_zero_for_disjoint_ones():
    half = [0.0, 0.0, 0.5, 0.5, 0.0, 0.0]
    assert distill.attention_overlap(_two_rows(half, half)) == pytest.approx([1.0])
    assert distill.attention_overlap(_two_rows(half, [0.0, 0.0, 0.0, 0.0, 0.5, 0.5])) == pytest.approx([0.0])
    assert distill.attention_overlap(_two_rows(half, [0.0, 0.0, 0.5, 0.0, 0.5, 0.0])) == pytest.approx([0.5])
    with pytest.raises(ValueError, match="no \\[DIST\\] row"):
        distill.attention_overlap([torch.full((1, 1, 2, 2), 0.5)])


def test_patch_attention_is_each_tokens_row_over_the_patch_grid_without_the_prefix():
    cls_row = [0.2, 0.0, 0.8, 0.0, 0.0, 0.0]   # [CLS] reads itself and the top-left patch
    dist_row = [0.0, 0.5, 0.0, 0.0, 0.0, 0.5]  # [DIST] reads itself and the bottom-right patch
    maps = _two_rows(cls_row, dist_row) * 2    # two blocks
    patches = distill.patch_attention(maps, block=0)
    torch.testing.assert_close(patches["[CLS]"], torch.tensor([[[0.8, 0.0], [0.0, 0.0]]]))
    torch.testing.assert_close(patches["[DIST]"], torch.tensor([[[0.0, 0.0], [0.0, 0.5]]]))
    with pytest.raises(ValueError, match="square grid"):
        distill.patch_attention(_two_rows([1.0] + [0.0] * 6, [1.0] + [0.0] * 6, tokens=7))


def test_head_logits_are_the_cls_and_dist_heads_of_the_model():
    torch.manual_seed(0)
    model, x = build_vit(distilled=True, **TINY_STUDENT).train(), torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(distill.head_logits(model, x), model(x))  # train mode: (cls, dist)


def test_head_report_and_teacher_mistakes():
    labels = torch.tensor([0, 1, 2, 0])
    onehot = lambda idx: F.one_hot(torch.tensor(idx), 3).float() * 5  # noqa: E731
    preds = {"labels": labels, "cls": onehot([0, 1, 2, 1]), "dist": onehot([0, 2, 2, 2]),
             "teacher": onehot([0, 2, 2, 1])}
    report = distill.head_report(preds)
    assert report["CLS head"]["accuracy"] == 75.0 and report["DIST head"]["accuracy"] == 50.0
    assert report["DIST head"]["agrees_with_teacher"] == 75.0 and report["teacher"]["accuracy"] == 50.0
    mistakes = distill.on_teacher_mistakes(preds)  # the teacher is wrong on images 1 and 3
    assert mistakes["images"] == 2
    assert mistakes["dist"] == {"copies_teacher": 50.0, "correct": 0.0}
    assert mistakes["cls"] == {"copies_teacher": 50.0, "correct": 50.0}


def test_average_of_logits_and_average_of_softmax_can_disagree():
    # CLS is sure of class 1 (softmax ~1); DIST prefers class 0 by 6 logits (softmax ~0.998):
    # logits sum to [6, 0, 0] -> class 0, softmax sums to about [1.0, 1.0 + 5e-5, 0] -> class 1.
    preds = {"labels": torch.tensor([1]), "teacher": torch.tensor([[1.0, 0.0, 0.0]]),
             "cls": torch.tensor([[0.0, 10.0, 0.0]]), "dist": torch.tensor([[6.0, -10.0, 0.0]])}
    report = distill.head_report(preds)
    assert report["average of logits"] == {"accuracy": 0.0, "agrees_with_teacher": 100.0}
    assert report["average of softmax"] == {"accuracy": 100.0, "agrees_with_teacher": 0.0}


def test_collect_predictions_gives_both_heads_and_the_teacher_on_normalized_images():
    from helpers.augment import normalize
    from helpers.data import CIFAR10Arrays

    torch.manual_seed(0)
    arrays = CIFAR10Arrays(torch.randint(0, 256, (7, 32, 32, 3), dtype=torch.uint8), torch.arange(7) % 10)
    student = build_vit(distilled=True, **TINY_STUDENT).train()
    teacher = losses.FrozenTeacher(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)))
    preds = distill.collect_predictions(student, teacher, arrays, batch_size=3)  # batches of 3, 3, 1
    assert student.training  # the caller's mode is restored
    x = normalize(arrays.images.permute(0, 3, 1, 2))
    with torch.no_grad():
        cls, dist = student(x)
        torch.testing.assert_close((preds["cls"], preds["dist"], preds["teacher"]), (cls, dist, teacher(x)))
    assert torch.equal(preds["labels"], arrays.labels)


def test_collect_predictions_runs_the_student_in_eval_mode():
    """With stochastic depth, train mode would drop blocks at random: the heads must be eval mode's."""
    from helpers.data import CIFAR10Arrays

    torch.manual_seed(0)
    student = build_vit(distilled=True, drop_path_rate=0.5, **TINY_STUDENT).train()
    arrays = CIFAR10Arrays(torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8), torch.arange(6))
    teacher = losses.FrozenTeacher(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)))
    first, second = (distill.collect_predictions(student, teacher, arrays, batch_size=3) for _ in range(2))
    assert student.training
    torch.testing.assert_close(first["cls"], second["cls"])
    student.eval()
    images = next(distill.eval_batches(arrays, batch_size=6))[0]
    torch.testing.assert_close(first["cls"], distill.head_logits(student, images)[0])


def test_reference_teacher_is_the_one_the_distilled_runs_recorded():
    teacher = {"test_acc": 49.55, "epochs": 15, "config": {"layers": [1, 1, 1, 1]}}
    runs = [{"variant": "plain", "teacher": None}, {"variant": "full+hard-distillation", "teacher": teacher},
            {"variant": "full+soft-distillation", "teacher": dict(teacher, seconds=3.0)}]
    assert distill.reference_teacher(runs)["test_acc"] == 49.55
    assert distill.reference_teacher(runs[:1]) is None and distill.reference_teacher([]) is None
    other = dict(teacher, test_acc=60.0)
    with pytest.raises(ValueError, match="different teachers"):
        distill.reference_teacher(runs + [{"variant": "full+hard-distillation", "teacher": other}])
    other = dict(teacher, config={"layers": [2, 2, 2, 2]})  # same accuracy, another teacher
    with pytest.raises(ValueError, match="different teachers"):
        distill.reference_teacher(runs + [{"variant": "full+hard-distillation", "teacher": other}])


def test_committed_cpu_ablation_records_its_teacher():
    """Notebook 03 compares the committed cpu runs with their teacher: every distilled run has it."""
    from helpers.ablate import load_results

    from helpers.ablate import RESULTS
    results = load_results("cpu")
    assert results, f"no committed cpu ablation results in {RESULTS / 'cpu'}: notebook 03 reads them"
    distilled = [r for r in results if r["recipe"]["distillation_type"] != "none"]
    assert distilled, "the committed cpu ablation has no distilled run (variants full+...-distillation)"
    missing = [f"{r['variant']}-seed{r['seed']}" for r in distilled if not r["teacher"]]
    assert not missing, f"these committed distilled runs do not record their teacher: {missing}"
    assert 0 < distill.reference_teacher(results)["test_acc"] <= 100


# --- Exercise checkers ---------------------------------------------------------------------------

def test_checkers_accept_right_answers_and_hint_at_wrong_ones(capsys):
    def right_hard(c, d, y, t):
        return 0.5 * F.cross_entropy(c, y) + 0.5 * F.cross_entropy(d, t.argmax(-1))

    def soft_labels_instead(c, d, y, t):
        return 0.5 * F.cross_entropy(c, y) + 0.5 * F.cross_entropy(d, t.softmax(-1))

    def todo(*args):
        raise NotImplementedError

    assert ex.check_hard_distillation_loss(right_hard)
    assert not ex.check_hard_distillation_loss(soft_labels_instead)
    assert "argmax" in capsys.readouterr().out
    assert not ex.check_hard_distillation_loss(todo)
    assert "NotImplementedError" in capsys.readouterr().out

    def right_soft(d, t, tau):
        return F.kl_div(F.log_softmax(d / tau, -1), F.softmax(t / tau, -1), reduction="sum") * tau**2 / d.numel()

    def batchmean(d, t, tau):
        return F.kl_div(F.log_softmax(d / tau, -1), F.softmax(t / tau, -1), reduction="batchmean") * tau**2

    assert ex.check_soft_distillation_term(right_soft)
    assert not ex.check_soft_distillation_term(batchmean)
    assert "batchmean" in capsys.readouterr().out
    assert not ex.check_soft_distillation_term(lambda d, t, tau: "oops")
    assert ex.check_mistakes_question("b") and not ex.check_mistakes_question("a")
    assert not ex.check_mistakes_question(None)


def test_loss_checkers_refuse_a_right_value_that_cannot_train(capsys):
    """A loss read out as a number, or with a head detached, has the reference's value and trains
    nothing (or not that head): the checkers look at its gradients too."""
    def hard(c, d, y, t):
        return 0.5 * F.cross_entropy(c, y) + 0.5 * F.cross_entropy(d, t.argmax(-1))

    def soft(d, t, tau):
        return F.kl_div(F.log_softmax(d / tau, -1), F.softmax(t / tau, -1), reduction="sum") * tau**2 / d.numel()

    for wrong, says in ((lambda c, d, y, t: hard(c, d, y, t).item(), "no .item()"),
                        (lambda c, d, y, t: hard(c, d.detach(), y, t), "no gradient reaches dist_logits"),
                        (lambda c, d, y, t: hard(c.detach(), d, y, t), "no gradient reaches cls_logits")):
        assert not ex.check_hard_distillation_loss(wrong)
        assert says in capsys.readouterr().out
    with torch.no_grad():
        assert ex.check_hard_distillation_loss(hard)  # the checker's gradients do not depend on the caller's mode
    capsys.readouterr()
    assert not ex.check_soft_distillation_term(lambda d, t, tau: soft(d.detach(), t, tau))
    assert "still connected to the logits" in capsys.readouterr().out
    assert ex.check_soft_distillation_term(lambda d, t, tau: soft(d, t.detach(), tau))  # the teacher's side is constant


@pytest.mark.parametrize("wrong, says", [
    (lambda d, t, tau: F.kl_div(F.softmax(d / tau, -1), F.softmax(t / tau, -1), reduction="sum") * tau**2 / d.numel(),
     "wants input = the student's log_softmax"),
    (lambda d, t, tau: F.kl_div(F.log_softmax(d, -1), F.softmax(t / tau, -1), reduction="sum") * tau**2 / d.numel(),
     "both at temperature tau"),
    (lambda d, t, tau: F.kl_div(F.log_softmax(d / tau, -1), F.log_softmax(t / tau, -1), reduction="sum")
     * tau**2 / d.numel(), "the loss is NaN"),
    (lambda d, t, tau: F.kl_div(F.log_softmax(d / tau, -1), F.softmax(t / tau, -1), reduction="sum") * tau / d.numel(),
     "multiply by tau**2, not tau"),
])
def test_the_soft_term_checker_names_the_usual_misuses_of_kl_div(wrong, says, capsys):
    assert not ex.check_soft_distillation_term(wrong)
    assert says in capsys.readouterr().out


def test_teacher_trains_through_fit_with_sgd_and_its_own_schedule(cifar_train_small, monkeypatch):
    seen = {}
    real_fit = teach.fit

    def spy(model, train_batches, val_batches, config, **kwargs):
        optimizer = kwargs["optimizer_factory"](model, "cpu")
        seen["optimizer"], seen["smoothing"] = optimizer, config.smoothing
        schedule = kwargs["lr_schedule"]
        seen["lrs"] = [schedule(step, 100) for step in (0, 19, 20, 99)]
        return real_fit(model, train_batches, val_batches, config, **kwargs)
    monkeypatch.setattr(teach, "fit", spy)
    _, record = teach.train_teacher("ci", TINY_TEACHER, device="cpu", progress=False,
                                    data=tiny_teacher_data(cifar_train_small))
    optimizer = seen["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [TINY_TEACHER.weight_decay, 0.0]
    assert seen["smoothing"] == TINY_TEACHER.label_smoothing == 0.0  # a smoothed teacher distills worse
    peak = TINY_TEACHER.scaled_lr  # warmup over the first 20 % of the steps, then linear to zero
    assert seen["lrs"] == pytest.approx([peak / 20, peak, peak * 80 / 80, peak / 80])
    assert len(record["history"]) == TINY_TEACHER.epochs and record["val_size"] == 50
    assert record["seconds"] == pytest.approx(sum(r["train_seconds"] for r in record["history"]))


def test_soft_term_checker_accepts_in_place_temperature_and_names_the_right_reduction(capsys):
    def divides_in_place(d, t, tau):  # right value; it divides the caller's logits by tau
        d /= tau
        t /= tau
        return F.kl_div(F.log_softmax(d, -1), F.softmax(t, -1), reduction="sum") * tau**2 / d.numel()

    assert ex.check_soft_distillation_term(divides_in_place)
    assert capsys.readouterr().out.startswith("Correct!")

    def per_element(d, t, tau):
        return F.kl_div(F.log_softmax(d / tau, -1), F.softmax(t / tau, -1), reduction="none") * tau**2

    assert not ex.check_soft_distillation_term(per_element)
    out = capsys.readouterr().out
    assert "average over the batch" not in out and "batch x classes" in out
    assert ex.check_mistakes_question("(b)")
