import pytest
import torch

from helpers.profiles import describe, get_profile, profile_name


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
    assert text.startswith("Profile: ci") and "DEIT_PROFILE=" in text


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
