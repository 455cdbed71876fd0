import re

import pytest
import torch

from helpers.profiles import PROFILES, describe, figure_label, get_profile, profile_name, smoke_test_label


def test_environment_variable_picks_the_profile(monkeypatch):
    monkeypatch.setenv("DEIT_PROFILE", "CPU")
    assert profile_name() == "cpu" and get_profile().epochs == get_profile("cpu").epochs


def test_default_is_full_on_a_gpu_and_cpu_otherwise(monkeypatch):
    monkeypatch.delenv("DEIT_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profile_name() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profile_name() == "full"


def test_unknown_profile_names_the_choices(monkeypatch):
    monkeypatch.setenv("DEIT_PROFILE", "fast")
    with pytest.raises(ValueError, match="ci, cpu, full"):
        profile_name()


def test_profiles_grow_from_ci_to_full():
    ci, cpu, full = (get_profile(n) for n in ("ci", "cpu", "full"))
    assert ci.train_size < cpu.train_size < full.train_size
    assert full.train_size + full.val_size == 50_000  # validation is held out of the training set
    assert full.vit_sizes == dict(embed_dim=192, depth=12, num_heads=3)
    assert full.test_size == 10_000  # CIFAR-10's whole test set


def test_each_profile_is_what_its_description_says():
    from helpers.models import build_vit, count_parameters
    for p in PROFILES.values():
        text = p.description
        assert f"{p.train_size:,} training images" in text and f"{p.epochs} epochs" in text, p.name
        if "held out" in text:
            assert re.search(rf"\({p.val_size:,} (more )?held out\)", text), p.name
        if blocks := re.search(r"(\d+)-block", text):
            assert int(blocks[1]) == p.vit_sizes["depth"], p.name
        if patches := re.search(r"(\d+)x\1 patches", text):
            assert int(patches[1]) == p.vit_sizes["patch_size"], p.name
        if millions := re.search(r"([\d.]+) M parameters", text):
            assert round(count_parameters(build_vit(**p.vit_sizes)) / 1e6, 1) == float(millions[1]), p.name


def test_only_the_ci_profile_is_labelled_a_smoke_test():
    assert smoke_test_label(get_profile("ci")).startswith("SMOKE TEST")
    assert "smoke test" in figure_label(get_profile("ci"))
    for name in ("cpu", "full"):
        assert "SMOKE" not in smoke_test_label(get_profile(name)) and "smoke" not in figure_label(get_profile(name))


def test_every_profile_splits_train_validation_and_test_apart():
    from helpers.profile_runs import profile_data
    for name in ("ci", "cpu"):
        profile = get_profile(name)
        train, val, test = profile_data(profile)
        assert (len(train), len(val), len(test)) == (profile.train_size, profile.val_size, profile.test_size)
        # no image is in two splits (compare the pixels, as the splits are separate tensors)
        seen = {bytes(img.numpy()) for img in train.images}
        assert not any(bytes(img.numpy()) in seen for img in val.images)


def test_description_says_how_to_switch(monkeypatch):
    monkeypatch.setenv("DEIT_PROFILE", "ci")
    text = describe(get_profile())
    assert text.startswith("Profile: ci (set by DEIT_PROFILE)") and "DEIT_PROFILE=" in text
    monkeypatch.delenv("DEIT_PROFILE")
    assert describe(get_profile("cpu")).startswith("Profile: cpu (default: no GPU found)")


def test_time_estimates_are_measured_and_leave_the_random_state_alone():
    from helpers.profile_runs import estimated_time
    from helpers.teacher import estimated_teacher_time

    state = torch.random.get_rng_state()
    student = estimated_time(get_profile("ci"), device="cpu", runs=2)
    teacher = estimated_teacher_time(get_profile("ci"), device="cpu")
    assert torch.equal(torch.random.get_rng_state(), state)  # training after it draws the same
    assert student.startswith("Estimated training time here (cpu, profile ci, 2 run(s))")
    assert teacher.startswith("Estimated the teacher's training time here (cpu, profile ci")
    for line in (student, teacher):  # minutes, or seconds under a minute (a ci run)
        amount, unit = line.split("about ")[1].split(",")[0].split()
        assert unit in ("min", "s") and float(amount) > 0


def test_time_estimates_scale_the_measured_rate_by_images_epochs_and_runs(monkeypatch):
    from helpers import profile_runs, teacher
    ci, cpu = get_profile("ci"), get_profile("cpu")
    # Injected rates (seconds per image), different per profile, so that each estimate must use its own.
    rates = {"ci": 0.006, "cpu": 0.003, "full": 0.001}
    monkeypatch.setattr(profile_runs, "seconds_per_image", lambda p, recipe, device, teacher: rates[p.name])
    line = profile_runs.estimated_time(cpu, device="cpu", runs=2)
    # runs x seconds per image x training images x epochs; cpu: 2 x 0.003 x 4,000 x 60 s = 24.0 min
    here, smaller = (2 * rates[p.name] * p.train_size * p.epochs / 60 for p in (cpu, ci))
    assert f"(cpu, profile cpu, 2 run(s)): about {here:.1f} min" in line and here == 24.0
    assert "smaller profiles - ci: about 36 s." in line and smaller == 0.6  # under a minute: seconds
    assert "torch.compile" not in line
    compiled = profile_runs.estimated_time(cpu, device="cpu", runs=2, compiled=True)  # a run that will compile
    assert compiled.startswith(line.removesuffix(" Finished runs are reused at once."))
    assert "Timed without torch.compile, which this run uses: it first compiles" in compiled
    # the teacher's line: its own rate and its own epochs (cpu: 0.003 x 4,000 x 15 s = 3.0 min)
    monkeypatch.setattr(teacher, "teacher_seconds_per_image", lambda p, d: rates[p.name])
    line = teacher.estimated_teacher_time(cpu, device="cpu")
    here, smaller = (rates[p.name] * p.train_size * teacher.TEACHERS[p.name].epochs / 60 for p in (cpu, ci))
    assert f"about {here:.1f} min" in line and here == 3.0
    assert f"smaller profiles - ci: about {round(smaller * 60)} s." in line and smaller < 1
    # long runs in hours, very long ones in days: 51 runs x 0.003 s x 4,000 x 60 = 612 min = 10.2 h
    assert "about 10.2 h" in profile_runs.estimated_time(cpu, device="cpu", runs=51)
    assert "about 3.5 days" in profile_runs.estimated_time(cpu, device="cpu", runs=420)  # 5,040 min


def test_notebook_runs_compile_on_a_gpu_outside_the_ci_profile(monkeypatch):
    from helpers import profile_runs
    from helpers.profile_runs import compiles_by_default
    assert compiles_by_default(get_profile("full"), "cuda") and compiles_by_default(get_profile("cpu"), "cuda:0")
    assert not compiles_by_default(get_profile("ci"), "cuda")  # 3 epochs would not repay the compile
    assert not any(compiles_by_default(get_profile(p), "cpu") for p in ("ci", "cpu", "full"))
    # train_in_profile hands fit that default, and an explicit compile wins over it
    seen = []

    def fake_fit(model, train, val, config, **kwargs):
        seen.append(config.compile)
        raise StopIteration
    monkeypatch.setattr(profile_runs, "fit", fake_fit)
    monkeypatch.setattr(profile_runs, "compiles_by_default", lambda profile, device: True)
    for explicit in ({}, {"compile": False}):
        with pytest.raises(StopIteration):
            profile_runs.train_in_profile("x", profile=get_profile("ci"), device="cpu", **explicit)
    assert seen == [True, False]
    # the estimate says the run compiles exactly when the run will
    rate = dict(rate=lambda p, d: 0.001)
    assert "Timed without torch.compile" in profile_runs.estimated_time(get_profile("ci"), device="cpu", **rate)
    monkeypatch.setattr(profile_runs, "compiles_by_default", lambda profile, device: False)
    assert "torch.compile" not in profile_runs.estimated_time(get_profile("ci"), device="cpu", **rate)


def test_profile_config_takes_the_profiles_sizes_and_rate_and_the_overrides():
    from helpers.profile_runs import profile_config
    for p in PROFILES.values():
        config = profile_config(p)
        assert (config.epochs, config.batch_size, config.warmup_epochs, config.lr) == \
            (p.epochs, p.batch_size, p.warmup_epochs, p.lr), p.name
    config = profile_config(get_profile("ci"), lr=1e-3, seed=4)
    assert (config.lr, config.seed, config.epochs) == (1e-3, 4, get_profile("ci").epochs)
    with pytest.raises(TypeError, match="learning_rate"):
        profile_config(get_profile("ci"), learning_rate=1e-3)


def test_train_in_profile_trains_with_the_recipes_optimizer_at_the_profiles_settings_for_it(monkeypatch):
    from helpers.recipe import Recipe
    ci = get_profile("ci")
    config = fit_inputs(monkeypatch, recipe=Recipe(opt="sgd"))["config"]
    assert (config.opt, config.lr, config.weight_decay) == ("sgd", ci.sgd_lr, ci.sgd_weight_decay)
    assert fit_inputs(monkeypatch, recipe=Recipe(opt="sgd"), lr=0.5)["config"].lr == 0.5  # an override wins
    assert fit_inputs(monkeypatch, recipe=Recipe())["config"].opt == "adamw"
    with pytest.raises(ValueError, match="contradicts the recipe's opt='adamw'"):
        fit_inputs(monkeypatch, recipe=Recipe(), opt="sgd")


def test_momentum_must_lie_below_one():
    from helpers.train import TrainConfig
    for momentum in (-0.1, 1.0):
        with pytest.raises(ValueError, match="momentum must lie in \\[0, 1\\)"):
            TrainConfig(opt="sgd", momentum=momentum)


def fit_inputs(monkeypatch, **kwargs):
    """What train_in_profile hands fit (ci profile, on the CPU), without training."""
    from helpers import profile_runs
    seen = {}

    def fake_fit(model, train, val, config, **fit_kwargs):
        seen.update(model=model, train=train, val=val, config=config, **fit_kwargs)
        raise StopIteration
    monkeypatch.setattr(profile_runs, "fit", fake_fit)
    with pytest.raises(StopIteration):
        profile_runs.train_in_profile("x", profile=get_profile("ci"), device="cpu", **kwargs)
    return seen


def test_train_in_profile_uses_the_recipes_smoothing_and_loss_with_the_teacher(monkeypatch):
    from helpers.losses import FrozenTeacher
    from helpers.recipe import Recipe
    teacher = FrozenTeacher(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)))
    recipe = Recipe.plain().but(distillation_type="hard")  # no smoothing, unlike TrainConfig's default
    seen = fit_inputs(monkeypatch, recipe=recipe, teacher=teacher)
    assert seen["config"].smoothing == recipe.smoothing == 0.0 and seen["loss_fn"].teacher is teacher
    assert fit_inputs(monkeypatch, recipe=recipe, teacher=teacher, smoothing=0.1)["config"].smoothing == 0.1


@pytest.mark.parametrize("with_recipe", [False, True], ids=["no recipe", "a recipe"])
def test_train_in_profile_orders_the_data_by_the_runs_seed(monkeypatch, with_recipe):
    from helpers.recipe import Recipe
    recipe = Recipe.plain() if with_recipe else None
    orders = [fit_inputs(monkeypatch, recipe=recipe, seed=seed)["train"].indices() for seed in (0, 1, 1)]
    assert not torch.equal(orders[0], orders[1]) and torch.equal(orders[1], orders[2])


def test_train_in_profile_gives_each_process_its_own_share_of_the_validation_images(monkeypatch):
    shares = [fit_inputs(monkeypatch, num_replicas=2, rank=rank)["val"].indices() for rank in (0, 1)]
    assert torch.equal(torch.cat(shares).sort().values, torch.arange(get_profile("ci").val_size))
    assert len(shares[0]) == len(shares[1]) == get_profile("ci").val_size // 2


def test_the_rate_per_image_leaves_out_the_warm_up_step(monkeypatch):
    from helpers import profile_runs
    asked = []

    def step_seconds(*args, img_size=None):
        asked.append(args[-1])
        return [10.0, 1.0, 2.0, 3.0]  # the first step pays the set-up
    monkeypatch.setattr(profile_runs, "step_seconds", step_seconds)
    # 3 timed steps of 4 images: (1 + 2 + 3) s / 12 images
    assert profile_runs.time_training_steps(None, None, None, None, 4, "cpu", steps=3) == pytest.approx(0.5)
    assert asked == [4]


def test_durations_read_in_seconds_minutes_hours_then_days_from_two_days():
    from helpers.profile_runs import _duration
    assert [_duration(m) for m in (0.2, 90, 30 * 60, 47 * 60, 49 * 60)] == \
        ["12 s", "90.0 min", "30.0 h", "47.0 h", "2.0 days"]
