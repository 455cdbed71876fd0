"""fit_together trains M models as M separate fit runs would: same histories, same weights."""
import warnings

import pytest
import torch
from torch import nn

from helpers import ablate
from helpers.augment import normalize
from helpers.batch_augment import BatchAugment, apply_drawn
from helpers.data import TensorBatches, load_cifar10
from helpers.losses import FrozenTeacher
from helpers.models import set_fused_attention
from helpers.profiles import get_profile
from helpers.recipe import Recipe
from helpers.together import Member, StackedAdamW, fit_together
from helpers.train import COMPILE_FALLBACK, CheckpointError, TrainConfig, fit
from test_train import InterruptAt  # batches that stop as a user pressing stop

TINY = dict(embed_dim=16, depth=2, num_heads=2)  # two blocks: the second one drops paths
BATCH = 20
# Batched matrix products may sum in another order than single ones: agreement is to float rounding.
WEIGHT_ATOL, METRIC_RTOL = 1e-5, 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: threads only add overhead (conftest.py)


@pytest.fixture(scope="module")
def data():
    return load_cifar10("train", n_per_class=8), load_cifar10("test", n_per_class=3)


def tiny_teacher():
    torch.manual_seed(7)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))


def member(data, recipe, seed, teacher=None, epochs=2, **config):
    """A fresh member: the same initial weights for the same seed, as the ablation runner builds them."""
    torch.manual_seed(seed)
    model = recipe.build_model(**TINY)
    config = TrainConfig(**{**dict(epochs=epochs, batch_size=BATCH, warmup_epochs=1, lr=4e-3, seed=seed,
                                   smoothing=recipe.smoothing, opt=recipe.opt), **config})
    return Member(model, recipe.train_batches(data[0], BATCH, seed=seed), config, recipe.batch_transform(),
                  recipe.loss_fn(teacher))


def val_batches(data):
    return TensorBatches(data[1], 15, shuffle=False)


def one_by_one(data, members):
    # The same attention arithmetic as the trainer's template (spelled out), so the two agree to
    # float rounding; tests/test_models.py checks it against the fused kernel.
    for mb in members:
        set_fused_attention(mb.model, False)
    return [fit(mb.model, mb.train_batches, val_batches(data), mb.config, batch_transform=mb.batch_transform,
                loss_fn=mb.loss_fn, progress=False, device="cpu") for mb in members]


def metrics(history):
    return [{k: r[k] for k in ("epoch", "train_loss", "val_loss", "val_acc", "lr")} for r in history]


def assert_same_training(expected_members, expected_histories, members, histories):
    for k, (a, b) in enumerate(zip(expected_histories, histories)):
        assert len(b) == len(a), f"model {k} trained {len(b)} epochs, not {len(a)}"
        for row_a, row_b in zip(metrics(a), metrics(b)):  # approx compares dicts, not lists of dicts
            assert row_b == pytest.approx(row_a, rel=METRIC_RTOL), f"model {k}'s history differs"
        for (name, p), q in zip(expected_members[k].model.named_parameters(), members[k].model.parameters()):
            torch.testing.assert_close(q, p, atol=WEIGHT_ATOL, rtol=0, msg=lambda s: f"model {k}, {name}: {s}")


def check_group(data, make):
    """make() -> members; trains them one by one with fit and together, and compares."""
    alone = make()
    alone_histories = one_by_one(data, alone)
    together = make()
    assert_same_training(alone, alone_histories, together, fit_together(together, val_batches(data), device="cpu"))


def test_plain_and_full_recipes_with_their_own_seeds_and_schedules(data):
    # Different recipes in one group; model 2 also has its own lr, warmup, decay and no clipping.
    check_group(data, lambda: [member(data, Recipe.plain(), 0), member(data, Recipe(), 1),
                               member(data, Recipe().but(mixup=0.0), 2, lr=1e-3, warmup_epochs=0,
                                      weight_decay=0.1, clip_grad=None)])


def test_a_group_s_batches_are_augmented_in_one_pass_and_a_hook_of_its_own_alone(data, monkeypatch):
    """With the test above, this shows the one pass gives each model what fit gives it."""
    from helpers import together
    seen = []
    monkeypatch.setattr(together, "apply_drawn", lambda drawn, images: (seen.append(len(drawn)),
                                                                        apply_drawn(drawn, images))[1])
    members = [member(data, recipe, k, epochs=1) for k, recipe in enumerate([Recipe.plain(), Recipe(), Recipe()])]
    members[2].batch_transform = BatchAugment(per_image=lambda x: 255 - x)  # draws while it applies: alone
    members.append(Member(Recipe.plain().build_model(**TINY),
                          Recipe.plain().train_batches(data[0], BATCH), members[0].config))  # no transform
    fit_together(members, val_batches(data), device="cpu")
    assert seen == [3] * len(members[0].train_batches)  # models 0, 1 and 3 (normalize only), every step


def test_on_a_cpu_a_group_augments_at_most_cpu_images_at_once(data, monkeypatch):
    from helpers import together
    seen = []
    monkeypatch.setattr(together, "apply_drawn", lambda drawn, images: (seen.append(len(drawn)),
                                                                        apply_drawn(drawn, images))[1])
    monkeypatch.setattr(together, "CPU_IMAGES_AT_ONCE", 2 * BATCH)  # two models' batches at a time
    fit_together([member(data, Recipe(), k, epochs=1) for k in range(3)], val_batches(data), device="cpu")
    assert seen == [2, 1] * len(member(data, Recipe(), 0).train_batches)


def test_a_transform_that_changes_the_batch_size_gets_masks_of_its_size(data):
    def first_half(images, labels):  # draws nothing, returns fewer images
        return normalize(images[: len(images) // 2]), labels[: len(labels) // 2]

    def make():
        members = [member(data, Recipe().but(drop_path=0.5), k, epochs=1) for k in range(2)]
        for mb in members:
            mb.batch_transform, mb.loss_fn = first_half, None
        return members
    check_group(data, make)


def test_autoaugment_beside_randaugment(data):
    # Table 8's "autoaugment instead of randaugment": another op pool, so the group augments in two passes
    check_group(data, lambda: [member(data, Recipe(aa="original"), 0), member(data, Recipe(), 1)])


def test_hard_and_soft_distillation(data):
    teacher = tiny_teacher()
    check_group(data, lambda: [member(data, Recipe(distillation_type="hard"), 0, teacher),
                               member(data, Recipe.plain().but(distillation_type="soft"), 1, teacher)])


def test_the_draws_really_matter(data):
    """The comparison can fail: one seed changed gives another history."""
    history = fit_together([member(data, Recipe(), 1)], val_batches(data), device="cpu")[0]
    other = member(data, Recipe(), 1)
    other.config.seed = 5  # same weights and data order, other augmentation and masks
    assert metrics(fit_together([other], val_batches(data), device="cpu")[0]) != metrics(history)


def test_resume_after_an_interruption_ends_as_an_uninterrupted_run(data, tmp_path):
    def make():
        return [member(data, Recipe(), 0), member(data, Recipe.plain(), 1)]

    straight = make()
    straight_histories = fit_together(straight, val_batches(data), device="cpu")
    interrupted = make()
    interrupted[0].train_batches = InterruptAt(interrupted[0].train_batches, epoch=1, batch=0)
    with pytest.raises(KeyboardInterrupt):
        fit_together(interrupted, val_batches(data), device="cpu", run_dir=tmp_path)
    assert (tmp_path / "model-0" / "history.json").exists()
    resumed = make()
    histories = fit_together(resumed, val_batches(data), device="cpu", run_dir=tmp_path)
    assert_same_training(straight, straight_histories, resumed, histories)


def test_a_checkpoint_of_another_group_is_refused_naming_what_differs(data, tmp_path):
    fit_together([member(data, Recipe.plain(), 0, epochs=1)], val_batches(data), device="cpu", run_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"another group of runs \(run model-0: it differs in \[.smoothing.\]:\n  smoothing: saved 0.0, now 0.1\)"):
        fit_together([member(data, Recipe(), 0, epochs=1)], val_batches(data), device="cpu", run_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"its runs are \['model-0'\], these are \['model-0', 'model-1'\]"):
        fit_together([member(data, Recipe.plain(), 0, epochs=1), member(data, Recipe.plain(), 1, epochs=1)],
                     val_batches(data), device="cpu", run_dir=tmp_path)


def test_models_of_different_shapes_are_refused_with_the_fix(data):
    wide = member(data, Recipe.plain(), 0)
    wide.model = Recipe.plain().build_model(embed_dim=32, depth=2, num_heads=2)
    with pytest.raises(ValueError, match="same parameter shapes.*its own group"):
        fit_together([member(data, Recipe.plain(), 0), wide], val_batches(data), device="cpu")
    distilled = member(data, Recipe(distillation_type="hard"), 1, tiny_teacher())
    with pytest.raises(ValueError, match="dist_token.*distilled student"):
        fit_together([member(data, Recipe.plain(), 0), distilled], val_batches(data), device="cpu")


def test_a_model_with_dropout_is_refused_with_the_fix(data):
    with pytest.raises(ValueError, match="dropout.*helpers.train.fit"):
        fit_together([member(data, Recipe.plain(), 0), member(data, Recipe.plain().but(drop=0.1), 1)],
                     val_batches(data), device="cpu")


def test_a_run_with_sgd_is_refused_with_the_fix(data):
    with pytest.raises(ValueError, match="AdamW only.*helpers.train.fit"):
        fit_together([member(data, Recipe.plain(), 0), member(data, Recipe.plain().but(opt="sgd"), 1)],
                     val_batches(data), device="cpu")


def test_different_epochs_are_refused(data):
    with pytest.raises(ValueError, match="epochs"):
        fit_together([member(data, Recipe.plain(), 0), member(data, Recipe.plain(), 1, epochs=3)],
                     val_batches(data), device="cpu")


def test_different_batch_sizes_or_numbers_of_batches_are_refused(data):
    with pytest.raises(ValueError, match="batch_size"):
        fit_together([member(data, Recipe.plain(), 0), member(data, Recipe.plain(), 1, batch_size=2 * BATCH)],
                     val_batches(data), device="cpu")
    fewer = member(data, Recipe.plain(), 1)
    fewer.train_batches = TensorBatches(load_cifar10("train", n_per_class=4), BATCH)
    with pytest.raises(ValueError, match=r"same number of \(full\) batches"):
        fit_together([member(data, Recipe.plain(), 0), fewer], val_batches(data), device="cpu")


def test_an_interrupted_group_leaves_each_model_with_its_last_saved_weights(data, tmp_path):
    members = [member(data, Recipe.plain(), k) for k in range(2)]
    members[0].train_batches = InterruptAt(members[0].train_batches, epoch=1, batch=0)
    with pytest.raises(KeyboardInterrupt):
        fit_together(members, val_batches(data), device="cpu", run_dir=tmp_path)
    saved = torch.load(tmp_path / "last.pt", weights_only=False)
    assert saved["epoch"] == 1
    for k, mb in enumerate(members):
        for name, p in mb.model.named_parameters():
            assert torch.equal(p, saved["params"][name][k]), f"model {k}, {name}"


def test_drop_path_under_vmap_in_bf16_rounds_as_one_models_drop_path():
    # bf16 is the GPU's training precision; the equivalence tests above run in float32
    from torch.func import functional_call, vmap
    from helpers.together import _GivenDropPath, _keeps
    probs = [[0.1 * 7 / 11], [0.1 * 3 / 11]]  # two blocks' rates with drop_path 0.1, depth 12
    x = torch.randn(2, 8, 65, 192).bfloat16()
    masks = (torch.rand(2, 2, 8, 1, 1) < 0.9).bfloat16()
    given = _GivenDropPath().train()
    out = vmap(lambda m, k, xi: functional_call(given, {"masks": m, "keep": k}, (xi,)))(masks, _keeps(probs, "cpu")[:, 0], x)
    for k, (p,) in enumerate(probs):
        assert torch.equal(out[k], x[k] * masks[k, 0] / (1.0 - p))  # DropPath.forward's arithmetic


def test_the_optimizer_step_makes_as_many_operator_calls_for_32_models_as_for_2():
    # each call costs a GPU machine's CPU microseconds: the step must not loop over models
    from helpers.speed import operator_calls
    from helpers.together import clip_per_model

    def calls(m):
        params = {f"w{i}": torch.zeros(m, 3, 4, requires_grad=True) for i in range(5)}
        for p in params.values():
            p.grad = torch.ones_like(p)
        optimizer = StackedAdamW(params, decay={"w0", "w1"})
        return operator_calls(lambda: (clip_per_model(params, [1.0] * m), optimizer.step([1e-3] * m, [0.05] * m)))[0]
    assert calls(2) == calls(32)


def test_stacked_adamw_is_torch_adamw_per_model():
    torch.manual_seed(0)
    weights = [torch.randn(4, 3, requires_grad=True) for _ in range(2)]
    lrs, decays = [1e-2, 3e-3], [0.05, 0.0]
    singles = [torch.optim.AdamW([w], lr=lr, weight_decay=wd) for w, lr, wd in zip(weights, lrs, decays)]
    stacked = {"w": torch.stack([w.detach().clone() for w in weights]).requires_grad_()}
    optimizer = StackedAdamW(stacked, decay={"w"})
    for _ in range(3):
        grads = torch.randn(2, 4, 3)
        for w, g, single in zip(weights, grads, singles):
            w.grad = g.clone()
            single.step()
        stacked["w"].grad = grads.clone()
        optimizer.step(lrs, decays)
    torch.testing.assert_close(stacked["w"].detach(), torch.stack(weights).detach(), atol=0, rtol=0)


# --- the ablation runner's --together ----------------------------------------------------------

RESULT_METRICS = ("epoch", "train_loss", "val_loss", "val_acc", "lr", "test_loss", "test_acc")


def test_the_ablation_runner_gives_the_same_results_together_as_one_by_one(tmp_path, monkeypatch):
    run = dict(profile=get_profile("ci"), epochs=1, seeds=1, progress=False, runs_dir=tmp_path / "runs")
    single = ablate.run_ablation(["plain", "full"], results_dir=tmp_path / "single", **run)
    grouped = ablate.run_ablation(["plain", "full"], results_dir=tmp_path / "together", together=2, **run)
    assert [(r["variant"], r["seed"]) for r in grouped] == [("plain", 0), ("full", 0)]
    for alone, together in zip(single, grouped):
        assert set(together) == set(alone) | {"together"} and together["together"] == 2
        assert together["final_val_acc"] == pytest.approx(alone["final_val_acc"], abs=1e-4)
        for a, b in zip(alone["history"], together["history"]):
            assert {k: b[k] for k in RESULT_METRICS} == pytest.approx({k: a[k] for k in RESULT_METRICS}, abs=1e-4)
        assert together["train_seconds"] == pytest.approx(together["history"][-1]["seconds"] / 2)
    runs = ablate.runs_folder(tmp_path / "runs", run["profile"], run["epochs"])
    folders = sorted(p.name for p in runs.iterdir() if p.name.startswith("together"))
    assert folders == [ablate.group_folder([("plain", 0), ("full", 0)])]

    # Results lost after the group finished: its checkpoint gives them back without a training step.
    for path in (tmp_path / "together" / "ci").glob("*.json"):
        path.unlink()

    def no_step(*args, **kwargs):
        raise AssertionError("a finished group was trained again")
    monkeypatch.setattr(StackedAdamW, "step", no_step)
    again = ablate.run_ablation(["plain", "full"], results_dir=tmp_path / "together", together=2, **run)
    assert [r["history"] for r in again] == [r["history"] for r in grouped]


def test_a_group_that_runs_out_of_memory_is_trained_again_in_smaller_groups(tmp_path, monkeypatch, capsys):
    real_run_group = ablate.run_group

    def run_group(group, *args, **kwargs):  # as a GPU would: two models do not fit, one does
        if len(group) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_run_group(group, *args, **kwargs)
    monkeypatch.setattr(ablate, "run_group", run_group)
    results = ablate.run_ablation(["plain", "+mixup"], seeds=1, profile=get_profile("ci"), epochs=1, progress=False,
                                  results_dir=tmp_path / "results", runs_dir=tmp_path / "runs", together=2)
    assert [(r["variant"], r["seed"], r["together"]) for r in results] == [("plain", 0, 1), ("+mixup", 0, 1)]
    assert "2 models together ran out of GPU memory: the runs left go on in groups of at most 1" in capsys.readouterr().out


def test_after_running_out_of_memory_only_the_unfinished_runs_are_trained_again(tmp_path, monkeypatch):
    groups = []

    def run_group(group, *args, **kwargs):  # as a GPU would: two distilled students do not fit, the rest does
        groups.append(group)
        if len(group) > 1 and group[0][0].startswith("full+"):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [{"variant": variant, "seed": seed} for variant, seed in group]
    monkeypatch.setattr(ablate, "run_group", run_group)
    monkeypatch.setattr(ablate, "teacher_for", lambda recipes, known, profile, device: None)
    names = ["plain", "full", "full+hard-distillation", "full+soft-distillation"]
    results = ablate.run_ablation(names, seeds=1, profile=get_profile("ci"), progress=False,
                                  results_dir=tmp_path / "r", runs_dir=tmp_path / "runs", together=2)
    assert groups == [[("plain", 0), ("full", 0)], [("full+hard-distillation", 0), ("full+soft-distillation", 0)],
                      [("full+hard-distillation", 0)], [("full+soft-distillation", 0)]]
    assert [r["variant"] for r in results] == names


def test_plain_and_distilled_students_train_in_separate_groups_in_the_runners_order(tmp_path, monkeypatch):
    table = ablate.variants()
    pending = [(v, s) for s in range(2) for v in ("plain", "full+hard-distillation", "full", "full+soft-distillation")]
    # four runs of each shape in groups of at most 3: two groups of 2, not 3 and a tail of 1
    assert ablate.together_groups(pending, table, 3) == [
        [("plain", 0), ("full", 0)], [("full+hard-distillation", 0), ("full+soft-distillation", 0)],
        [("plain", 1), ("full", 1)], [("full+hard-distillation", 1), ("full+soft-distillation", 1)]]
    # 11 runs in groups of at most 4: 4, 4, 3; once the first is done, the rest split as before
    runs = [("plain", s) for s in range(11)]
    assert [len(g) for g in ablate.together_groups(runs, table, 4)] == [4, 4, 3]
    assert ablate.together_groups(runs[4:], table, 4) == ablate.together_groups(runs, table, 4)[1:]

    groups = []

    def record(members, val_batches, **kwargs):
        groups.append([(m.name, m.model.patch_embed.proj.weight.sum().item(), m.loss_fn.teacher) for m in members])
        return [[{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_acc": 50.0, "lr": 0.0, "seconds": 2.0,
                  "train_seconds": 2.0, "together": len(members)}] for _ in members]
    monkeypatch.setattr("helpers.together.fit_together", record)
    teacher = FrozenTeacher(tiny_teacher())
    monkeypatch.setattr(ablate, "teacher_for", lambda recipes, known, profile, device: teacher)
    results = ablate.run_ablation(["plain", "full+hard-distillation", "full"], seeds=1, profile=get_profile("ci"),
                                  results_dir=tmp_path / "r", runs_dir=tmp_path / "runs", progress=False, together=4)
    assert [[name for name, _, _ in group] for group in groups] == [
        ["plain-seed0", "full-seed0"], ["full+hard-distillation-seed0"]]
    weights = {round(w, 5) for group in groups for _, w, _ in group}
    assert len(weights) == 1  # paired seeds: every variant starts from seed 0's weights, as a single run
    assert groups[1][0][2] is teacher and groups[0][0][2] is None
    assert [r["together"] for r in results] == [2, 1, 2] and results[0]["train_seconds"] == 1.0


def compile_group(data, compile):
    return [member(data, Recipe(), 0, compile=compile), member(data, Recipe.plain(), 1, compile=compile)]


def test_a_compiled_group_trains_as_the_eager_one(data):
    # torch.compile takes the stacked forward and backward; augmentation and drop-path masks are
    # drawn eagerly as inputs, so compiled and eager draw the same numbers.
    eager = compile_group(data, False)
    eager_histories = fit_together(eager, val_batches(data), device="cpu")
    compiled = compile_group(data, True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        histories = fit_together(compiled, val_batches(data), device="cpu")
    assert not [w for w in caught if str(w.message).startswith(COMPILE_FALLBACK)], "torch.compile fell back"
    assert_same_training(eager, eager_histories, compiled, histories)


def test_a_group_that_cannot_compile_trains_eagerly_with_a_warning(data, monkeypatch):
    def broken_compile(fn, **options):
        def fails(*args):
            raise RuntimeError("no compiler here")
        return fails
    monkeypatch.setattr(torch, "compile", broken_compile)
    eager = compile_group(data, False)
    eager_histories = fit_together(eager, val_batches(data), device="cpu")
    fallen_back = compile_group(data, True)
    with pytest.warns(UserWarning, match=f"{COMPILE_FALLBACK}.*no compiler here"):
        histories = fit_together(fallen_back, val_batches(data), device="cpu")
    assert_same_training(eager, eager_histories, fallen_back, histories)


def test_members_that_differ_in_compile_are_refused(data):
    with pytest.raises(ValueError, match="compile"):
        fit_together([member(data, Recipe.plain(), 0), member(data, Recipe.plain(), 1, compile=True)],
                     val_batches(data), device="cpu")


def test_clipping_zero_or_none_leaves_gradients_as_fit_does():
    from helpers.together import clip_per_model
    grads = torch.tensor([[3.0, 4.0], [3.0, 4.0], [3.0, 4.0]])  # norm 5 for each of 3 models
    params = {"w": torch.zeros(3, 2, requires_grad=True)}
    params["w"].grad = grads.clone()
    clip_per_model(params, [0.0, None, 1.0])
    assert torch.equal(params["w"].grad[:2], grads[:2])  # fit: `if clip_grad:` skips 0 and None
    assert torch.allclose(params["w"].grad[2].norm(), torch.tensor(1.0), atol=1e-5)


@pytest.mark.parametrize("wrapped", [False, "from err", "from None"])
def test_running_out_of_memory_while_compiling_is_raised_not_taken_for_a_compile_failure(wrapped, monkeypatch):
    from helpers.train import compiled_or_as_is
    cleared = []

    def too_big(x):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    def compiler_that_wraps(fn, **kwargs):  # as torch.compile's backends report what failed inside them
        def compiled(*args):
            try:
                return fn(*args)
            except torch.OutOfMemoryError as err:
                if wrapped == "from None":  # torch/_dynamo/output_graph.py: BackendCompilerFailed(...) from None
                    raise RuntimeError("backend='inductor' raised: OutOfMemoryError") from None
                raise RuntimeError("backend='inductor' raised: OutOfMemoryError") from err
        return compiled
    if wrapped:
        monkeypatch.setattr(torch, "compile", compiler_that_wraps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback would warn
        with pytest.raises(torch.OutOfMemoryError):
            compiled_or_as_is(too_big, (torch.ones(2),), None, lambda: cleared.append(True))
    assert cleared == [True]


def test_the_runner_stops_before_a_group_that_would_not_fit_counting_compile_teacher_and_distillation(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace
    costs = ablate.RunCosts(run_s=10.0, distilled_cost=1.5, compile_s=50.0, teacher_s=40.0)
    assert costs.expected_s(4, False, False) == 4 * 10 + 50  # a new graph compiles
    assert costs.expected_s(4, True, True) == 4 * 15 + 50 + 40  # the teacher's forward, its training
    costs.measured(4, False, 4 * 12 + 50)  # took 12 s a run, after compiling
    assert costs.run_s == 12.0 and costs.expected_s(4, False, False) == 48.0  # that graph is compiled now

    clock, trained = [0.0], []

    def record(group, table, profile, **kwargs):  # a group that takes what RunCosts expects
        trained.append(group)
        clock[0] += 2 * 10 + 50
        return []
    monkeypatch.setattr(ablate, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(ablate, "run_group", record)
    monkeypatch.setattr(ablate, "teacher_for", lambda recipes, known, profile, device: object())
    pending = [("plain", 0), ("full", 0), ("full+hard-distillation", 0), ("full+soft-distillation", 0)]
    # 100 s: the plain pair (2 x 10 + 50 s) fits; the distilled pair (2 x 15 + 50 + 40 s) after it does not
    ablate.run_together(pending, ablate.variants(), get_profile("ci"), 2, started=0.0, time_limit_s=100,
                        costs=ablate.RunCosts(run_s=10.0, distilled_cost=1.5, compile_s=50.0, teacher_s=40.0),
                        device="cpu", results_dir=tmp_path, runs_dir=tmp_path)
    assert trained == [pending[:2]]
    assert "Stopping before the group full+hard-distillation seed 0" in capsys.readouterr().out
    trained.clear()
    clock[0] = 0.0  # 200 s: both fit
    ablate.run_together(pending, ablate.variants(), get_profile("ci"), 2, started=0.0, time_limit_s=200,
                        costs=ablate.RunCosts(run_s=10.0, distilled_cost=1.5, compile_s=50.0, teacher_s=40.0),
                        device="cpu", results_dir=tmp_path, runs_dir=tmp_path)
    assert trained == [pending[:2], pending[2:]]


def test_groups_without_checkpoints_save_nothing_between_epochs(tmp_path, monkeypatch):
    seen = []

    def record(members, val_batches, run_dir=None, **kwargs):
        seen.append(run_dir)
        return [[{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_acc": 50.0, "lr": 0.0, "seconds": 2.0,
                  "train_seconds": 2.0, "together": len(members)}] for _ in members]
    monkeypatch.setattr("helpers.together.fit_together", record)
    run = dict(seeds=1, profile=get_profile("ci"), runs_dir=tmp_path / "runs", progress=False, together=2)
    ablate.run_ablation(["plain", "full"], results_dir=tmp_path / "a", **run)
    ablate.run_ablation(["plain", "full"], results_dir=tmp_path / "b", group_checkpoints=False, **run)
    assert seen[0].parent == tmp_path / "runs" / "ci" and seen[1] is None


def test_under_bf16_autocast_a_group_trains_in_the_dtypes_of_one_model(data, monkeypatch):
    """Under vmap, autocast sees a stacked Linear as a bf16 matmul and an fp32 bias add: without the
    trainer's own cast its outputs, and the attention and MLP after them, would stay fp32 where one
    model's are bf16 (more memory and slower elementwise work on a GPU, and other numbers)."""
    from helpers import together
    monkeypatch.setenv("DEIT_PRECISION", "bf16")  # the GPU's bf16 autocast, on the CPU
    forward, dtypes = together._vmapped_forward, []

    def recording(*args, **kwargs):
        outputs = forward(*args, **kwargs)
        if torch.is_autocast_enabled("cpu"):  # training steps (evaluation runs without autocast)
            dtypes.append(outputs.dtype)
        return outputs
    monkeypatch.setattr(together, "_vmapped_forward", recording)
    plain = Recipe.plain()
    alone = one_by_one(data, [member(data, plain, 0, epochs=1)])[0]
    grouped = fit_together([member(data, plain, 0, epochs=1), member(data, plain, 1, epochs=1)],
                           val_batches(data), device="cpu")[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        one = plain.build_model(**TINY).train()(torch.randn(2, 3, 32, 32))
    assert dtypes and set(dtypes) == {one.dtype} == {torch.bfloat16}
    # The same bf16 arithmetic in other kernels: equal to about bf16's rounding (here 1e-6 apart).
    assert grouped[-1]["train_loss"] == pytest.approx(alone[-1]["train_loss"], rel=1e-3)
