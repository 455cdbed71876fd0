"""Bad input from a user ends in one line that names the fix, and nothing is lost."""
import json
import tarfile
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from helpers import ablate, cli, data
from helpers.data import find_source, load_cifar10
from helpers.recipe import Recipe
from test_data import write_image_folder


@pytest.fixture(scope="module")
def few_images():
    return load_cifar10("test", n_per_class=2)


def test_an_archive_with_one_top_folder_unpacks_where_the_loader_looks(tmp_path, few_images, monkeypatch):
    src = tmp_path / "src" / "cifar10-jpeg"
    write_image_folder(src, few_images, "train")
    write_image_folder(src, few_images, "test")
    archive = tmp_path / "nested.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(src, "cifar10-jpeg")
    monkeypatch.setenv("DEIT_DATA", str(tmp_path / "data"))  # extract's default destination
    folder = data.extract_archive(archive)
    assert folder == tmp_path / "data" / "cifar10-jpeg" and find_source(tmp_path / "data") == ("folder", folder)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cifar10-jpeg"]  # no temporary folder left
    assert len(load_cifar10("test", root=tmp_path / "data")) == 20


def test_data_check_fails_on_an_incomplete_copy(tmp_path, few_images, monkeypatch, capsys):
    write_image_folder(tmp_path / "cifar10-jpeg", few_images, "train")
    write_image_folder(tmp_path / "cifar10-jpeg", few_images, "test")
    monkeypatch.setenv("DEIT_DATA", str(tmp_path))
    assert data.main(["check"]) == 2
    assert "holds 20 images, not CIFAR-10's 50,000: the copy in" in capsys.readouterr().err


def test_resuming_on_other_training_data_is_refused_and_names_the_difference(tmp_path, capsys):
    run = ["--profile", "ci", "--epochs", "1", "--output-dir", str(tmp_path), "--no-progress", "--aa", ""]
    assert cli.main(run + ["--train-per-class", "10"]) == 0
    before = (tmp_path / "last.pt").read_bytes()
    assert cli.main(run + ["--train-per-class", "20", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train_images: saved 100, now 200" in err and (tmp_path / "last.pt").read_bytes() == before


def test_a_checkpoint_from_before_the_data_size_was_recorded_still_resumes(tmp_path):
    import torch
    run = ["--profile", "ci", "--epochs", "1", "--train-per-class", "10", "--output-dir", str(tmp_path),
           "--no-progress", "--aa", ""]
    assert cli.main(run) == 0
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    del state["metadata"]["train_images"]
    torch.save(state, tmp_path / "last.pt")
    assert cli.main(run + ["--resume"]) == 0


def test_the_ablation_refuses_to_reuse_runs_of_another_budget_and_names_a_damaged_result(tmp_path, monkeypatch):
    def fake_run(name, recipe, profile, seed, *, results_dir, epochs=None, **kwargs):
        config = ablate.run_config(profile, recipe, seed, epochs, compile=False)
        return ablate.write_result(name, recipe, profile, seed, config, [{"val_acc": 1, "test_acc": 1, "seconds": 1}],
                                   teacher=None, results_dir=results_dir, wall_clock_s=1.0)
    monkeypatch.setattr(ablate, "run_variant", fake_run)
    run = dict(seeds=1, profile=ablate.get_profile("ci"), results_dir=tmp_path, progress=False)
    ablate.run_ablation(["plain"], epochs=1, **run)
    assert ablate.run_ablation(["plain"], epochs=1, **run)[0]["config"]["epochs"] == 1  # the same budget: reused
    with pytest.raises(SystemExit, match=r"(?s)differs in \['epochs'\]:\n  epochs: saved 1, now 2\n.*Use another --results-dir"):
        ablate.run_ablation(["plain"], epochs=2, **run)
    damaged = ablate.result_path(tmp_path, run["profile"], "plain", 0)
    damaged.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot be read as a result .* Restore it"):
        ablate.load_results("ci", tmp_path)
    assert damaged.read_text() == "{not json"  # left as it was


@pytest.mark.parametrize("flags, says", [
    (["--reprob", "2"], "reprob must lie in [0, 1], not 2.0"),
    (["--mixup", "-1"], "mixup must lie in [0, inf], not -1.0"),
    (["--smoothing", "1.5"], "smoothing must lie in [0, 0.99], not 1.5"),
    (["--distillation-type", "hard", "--distillation-alpha", "2"], "distillation_alpha must lie in [0, 1], not 2.0"),
    (["--distillation-type", "soft", "--distillation-tau", "0"], "distillation_tau must be above 0, not 0.0"),
])
def test_recipe_settings_out_of_range_end_in_one_line_before_any_work(tmp_path, capsys, flags, says):
    assert cli.main(["--profile", "ci", "--output-dir", str(tmp_path / "run"), *flags]) == 2
    assert capsys.readouterr().err.strip() == f"error: {says}."
    assert not (tmp_path / "run").exists()  # nothing was trained or written


@pytest.mark.parametrize("flag, value", [("--clip-grad", "-1"), ("--lr", "0"), ("--depth", "0"), ("--num-heads", "0")])
def test_sizes_and_rates_below_their_range_are_refused_by_the_parser(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit):
        cli.main(["--profile", "ci", "--output-dir", str(tmp_path), flag, value])
    assert f"argument {flag}: must be" in capsys.readouterr().err


def test_the_recipe_checks_its_ranges_from_python_too():
    with pytest.raises(ValueError, match="drop_path must lie in"):
        Recipe(drop_path=1.5)
    with pytest.raises(ValueError, match="drop_path must lie in"):
        Recipe(drop_path=1.0)  # every block dropped: refused now, not when the model is built
    with pytest.raises(ValueError, match="distillation_kl must be"):
        Recipe(distillation_kl="sum")
    edges = Recipe.plain().but(mixup=0.0, drop_path=0.0, smoothing=0.0)  # the edges are allowed
    assert edges.mixup == edges.drop_path == edges.smoothing == 0.0


def test_the_teacher_command_names_a_bad_profile_in_one_line(capsys):
    from helpers import teacher
    assert teacher.main(["--profile", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bogus" in err and "Traceback" not in err


@pytest.mark.parametrize("module, args, flag", [
    ("benchmarks.together", ["--models", "0"], "--models"), ("benchmarks.throughput", ["--steps", "0"], "--steps"),
    ("benchmarks.crossover", ["--seen-every", "0"], "--seen-every"), ("benchmarks.teacher", ["--epochs", "0"], "--epochs"),
    ("helpers.ablate", ["--together", "0"], "--together"), ("helpers.cli", ["--warmup-epochs", "-1"], "--warmup-epochs"),
])
def test_benchmarks_and_runners_refuse_sizes_below_their_range(capsys, module, args, flag):
    import importlib
    with pytest.raises(SystemExit):
        importlib.import_module(module).main(args)
    assert f"argument {flag}: must be at least" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["benchmarks.throughput", "benchmarks.teacher", "benchmarks.time_to_accuracy",
                                    "benchmarks.together", "benchmarks.protocol_time"])
def test_benchmarks_refuse_an_output_they_could_not_write_before_any_work(tmp_path, capsys, module):
    import importlib
    (tmp_path / "a_file").write_text("")
    for where, says in [(tmp_path, "is a folder; give a file name inside it"),
                        (tmp_path / "a_file" / "out.json", "is a file, so")]:
        with pytest.raises(SystemExit):
            importlib.import_module(module).main(["--output", str(where)])
        assert f"argument --output: {tmp_path}" in (err := capsys.readouterr().err) and says in err


def test_a_stray_world_size_without_torchrun_names_the_fix(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(SystemExit, match="LOCAL_RANK is not set: start several processes with torchrun"):
        cli.start_distributed()


@pytest.mark.parametrize("command", [["notebooks"], ["prepare", "--profile", "ci"]])
def test_the_notebook_commands_name_a_file_that_is_not_a_notebook(tmp_path, capsys, command):
    from helpers.__main__ import main
    (tmp_path / "notes.md").write_text("# not a notebook")
    assert main([*command, str(tmp_path / "notes.md")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'notes.md'} is not a notebook file (.ipynb); give a "
                                       "path such as notebooks/00_the_problem.ipynb.\n")


def test_a_cache_made_from_an_incomplete_copy_is_rebuilt_when_the_copy_is_completed(tmp_path, few_images):
    root = tmp_path / "cifar10-jpeg"
    write_image_folder(root, few_images, "train")
    write_image_folder(root, few_images, "test")
    next((root / "test" / "truck").iterdir()).unlink()  # the copy has not reached the last image yet
    assert len(load_cifar10("test", root=tmp_path)) == 19
    write_image_folder(root, few_images, "test")  # the copy finishes
    assert len(load_cifar10("test", root=tmp_path)) == 20


def test_resuming_with_another_model_names_the_setting_not_a_list_of_weights(tmp_path, capsys):
    run = ["--profile", "ci", "--epochs", "1", "--train-per-class", "10", "--output-dir", str(tmp_path),
           "--no-progress", "--aa", ""]
    assert cli.main(run + ["--depth", "2"]) == 0
    assert cli.main(run + ["--depth", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "differs in ['model.depth']" in err and "model.depth: saved 2, now 1" in err and "blocks.1" not in err


def test_distillation_settings_without_a_distillation_type_are_not_silently_ignored(tmp_path, capsys):
    assert cli.main(["--profile", "ci", "--output-dir", str(tmp_path / "run"), "--distillation-alpha", "0.3"]) == 2
    assert "--distillation-alpha set how a student learns from its teacher: add --distillation-type" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert cli.main(["--profile", "ci", "--output-dir", str(tmp_path / "run"), "--teacher-path", "nothere.pt"]) == 2
    assert "--teacher-path set how a student learns from its teacher: add --distillation-type" in capsys.readouterr().err


def test_empty_evaluation_data_and_a_negative_subset_size_name_the_problem(few_images, monkeypatch):
    from helpers.data import stratified_indices
    from helpers.models import build_vit
    from helpers.train import evaluate
    from helpers.data import TensorBatches
    from helpers.together import Member, StackedAdamW, fit_together
    from helpers.train import TrainConfig, fit
    model = build_vit(embed_dim=48, depth=1, num_heads=3)
    with pytest.raises(ValueError, match="No images to evaluate: the batches were empty"):
        evaluate(model, [])
    batches, config = TensorBatches(few_images, 10), TrainConfig(epochs=1, batch_size=10)
    with monkeypatch.context() as patched:  # refused before any training step
        for optimizer in (torch.optim.AdamW, StackedAdamW):
            patched.setattr(optimizer, "step", lambda *a, **k: pytest.fail("trained before refusing"))
        with pytest.raises(ValueError, match="No images to evaluate"):
            fit(model, batches, [], config, progress=False)
        with pytest.raises(ValueError, match="No images to evaluate"):
            fit_together([Member(model, batches, config)], [])
    with pytest.raises(ValueError, match="n_per_class must be at least 0, not -1"):
        stratified_indices(few_images.labels, -1)


def test_the_gpu_plan_refuses_a_results_file_or_an_archive_folder_before_any_stage(tmp_path, capsys):
    from benchmarks import gpu_plan
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit):
        gpu_plan.main(["--list", "--results-dir", str(tmp_path / "a_file")])
    assert "is a file; give a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the archive is all that travels back from a GPU window
        gpu_plan.main(["--dry-run", "--archive", str(tmp_path)])
    assert "argument --archive" in capsys.readouterr().err


def test_every_command_reports_the_courses_errors_in_one_line(capsys):
    """Each command's main is wrapped, and a wrapped main turns the course's errors (and only them) into one line."""
    import importlib
    from helpers.errors import FolderError, reports_errors
    for module in ("helpers.cli", "helpers.teacher", "helpers.ablate", "helpers.data", "benchmarks.teacher",
                   "benchmarks.time_to_accuracy", "benchmarks.protocol_time", "benchmarks.crossover",
                   "benchmarks.throughput", "benchmarks.together", "benchmarks.augment_calls", "benchmarks.data_loading"):
        main = importlib.import_module(module).main
        assert module == "helpers.cli" or hasattr(main, "__wrapped__"), module  # cli wraps its run() itself

    @reports_errors
    def fails(kind):
        raise kind("Choose another path.")
    assert fails(FolderError) == 2 and capsys.readouterr().err == "error: Choose another path.\n"
    with pytest.raises(KeyError):  # a bug is not dressed up as bad input
        fails(KeyError)


def test_a_benchmark_and_the_ablation_name_unusable_data_without_a_traceback(tmp_path, few_images, monkeypatch, capsys):
    from benchmarks import teacher as teacher_benchmark
    write_image_folder(tmp_path / "cifar10-jpeg", few_images, "train")
    write_image_folder(tmp_path / "cifar10-jpeg", few_images, "test")
    monkeypatch.setenv("DEIT_DATA", str(tmp_path))
    from helpers import profile_runs
    for module, trainer in ((teacher_benchmark, "train_teacher"), (profile_runs, "fit")):  # refused before training
        monkeypatch.setattr(module, trainer, lambda *a, **k: pytest.fail("trained on data it should have refused"))
    assert teacher_benchmark.main(["--profile", "ci", "--epochs", "1"]) == 2
    assert ablate.main(["--profile", "ci", "--only", "plain", "--seeds", "1", "--epochs", "1", "--no-progress",
                        "--results-dir", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("error: Class 0 (airplane) has 2 training images") == 2 and "Traceback" not in err
    assert "it is incomplete: copy or extract it again" in err  # the fix


def test_resume_without_a_run_and_settings_that_cannot_work_are_refused_before_any_work(tmp_path, capsys):
    run = ["--profile", "ci", "--epochs", "1", "--output-dir", str(tmp_path / "typo"), "--no-progress", "--aa", ""]
    assert cli.main(run + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "no run to continue in" in err and "--resume continues a run" not in err  # no hint that contradicts it
    assert not (tmp_path / "typo").exists()
    assert cli.main(run + ["--warmup-epochs", "2"]) == 2
    assert "--warmup-epochs 2 is more than the run's 1 epochs" in capsys.readouterr().err
    for flag in ("--weight-decay", "--min-lr"):
        with pytest.raises(SystemExit):
            cli.main(run + [flag, "-1"])
        assert f"argument {flag}: must be at least 0" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_a_file_where_a_run_folder_must_go_is_named_before_any_training(tmp_path, capsys, monkeypatch):
    from helpers import teacher
    (tmp_path / "a_file").write_text("keep me")
    assert cli.main(["--profile", "ci", "--epochs", "1", "--no-progress", "--aa", "",
                     "--output-dir", str(tmp_path / "a_file" / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a_file'} is a file" in err and "--output-dir" in err and "epoch 1" not in err
    monkeypatch.setattr(teacher, "RUNS", tmp_path / "a_file")  # as DEIT_RUNS=a_file would set it
    monkeypatch.setattr(teacher, "train_teacher", lambda *a, **k: pytest.fail("trained before checking the folder"))
    assert teacher.main(["--profile", "ci"]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "a_file").read_text() == "keep me"


def test_checkpoints_of_the_wrong_kind_are_named_not_crashed_on(tmp_path, capsys):
    run = ["--profile", "ci", "--epochs", "1", "--train-per-class", "10", "--no-progress", "--aa", ""]
    torch.save(torch.zeros(3), tmp_path / "last.pt")
    assert cli.main(run + ["--output-dir", str(tmp_path), "--resume"]) == 2
    assert "is not a training checkpoint of this course (it holds a Tensor)" in capsys.readouterr().err
    assert cli.main(["--eval", str(tmp_path / "last.pt")]) == 2
    assert "it holds a Tensor" in capsys.readouterr().err
    torch.save({"model": {}, "metadata": {}}, tmp_path / "teacher.pt")  # weights without a run's model config
    assert cli.main(["--eval", str(tmp_path / "teacher.pt")]) == 2
    err = capsys.readouterr().err
    assert "is not a run of `python -m helpers train`" in err and "`python -m helpers teacher`" in err
    assert cli.main(run + ["--output-dir", str(tmp_path / "good")]) == 0
    state = torch.load(tmp_path / "good" / "last.pt", weights_only=False)
    state["metadata"]["model"]["embed_dim"] *= 2  # a config that its weights do not fit
    torch.save(state, tmp_path / "good" / "last.pt")
    assert cli.main(["--eval", str(tmp_path / "good" / "last.pt")]) == 2
    assert "weights do not fit the model its metadata describes" in capsys.readouterr().err


def test_another_ablation_budget_keeps_its_own_checkpoints():
    root, ci = ablate.RUNS / "ablation", ablate.get_profile("ci")
    assert ablate.runs_folder(root, ci, None) == ablate.runs_folder(root, ci, ci.epochs) == root / "ci"
    assert ablate.runs_folder(root, ci, ci.epochs + 1) == root / f"ci-{ci.epochs + 1}ep"


def test_an_ablation_summary_of_nothing_says_where_it_looked(tmp_path, capsys):
    with pytest.raises(SystemExit, match=f"no ci-profile results of this protocol in {tmp_path / 'ci'}"):
        ablate.main(["--profile", "ci", "--summary", "--results-dir", str(tmp_path)])


def test_a_damaged_gpu_plan_record_stops_the_plan_and_is_kept(tmp_path):
    from benchmarks import gpu_plan
    record = tmp_path / gpu_plan.TIMINGS
    for text in ('{"stages": {"teacher": {"status": "done"}}}', "{not json"):
        record.write_text(text)
        with pytest.raises(SystemExit, match="Restore it"):
            gpu_plan.main(["--dry-run", "--only", "teacher", "--results-dir", str(tmp_path)])
        assert record.read_text() == text


def test_saving_a_teacher_keeps_the_one_it_replaces(tmp_path, capsys):
    from helpers.teacher import TEACHERS, build_teacher, save_teacher
    model = build_teacher(TEACHERS["ci"])
    save_teacher(model, {"test_acc": 50.0}, tmp_path / "teacher.pt")
    save_teacher(model, {"test_acc": 10.0}, tmp_path / "teacher.pt")
    assert "kept as teacher.pt.prev" in capsys.readouterr().out
    kept = torch.load(tmp_path / "teacher.pt.prev", weights_only=True)
    assert kept["test_acc"] == 50.0 and torch.load(tmp_path / "teacher.pt", weights_only=True)["test_acc"] == 10.0


def test_a_teacher_that_fails_to_save_leaves_the_old_one_in_place(tmp_path, monkeypatch):
    from helpers import teacher
    model = teacher.build_teacher(teacher.TEACHERS["ci"])
    teacher.save_teacher(model, {"test_acc": 50.0}, tmp_path / "teacher.pt")

    def disk_full(obj, path):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(teacher, "save_atomically", disk_full)
    with pytest.raises(OSError):
        teacher.save_teacher(model, {"test_acc": 10.0}, tmp_path / "teacher.pt")
    assert torch.load(tmp_path / "teacher.pt", weights_only=True)["test_acc"] == 50.0
    assert not (tmp_path / "teacher.pt.prev").exists()


def test_a_teacher_of_another_profile_names_that_profile_not_a_retraining(tmp_path, capsys, monkeypatch):
    from helpers import teacher
    monkeypatch.setattr(teacher, "RUNS", tmp_path / "runs")
    other = tmp_path / "cpu_teacher.pt"
    cpu = teacher.TEACHERS["cpu"]
    teacher.save_teacher(teacher.build_teacher(cpu), {"test_acc": 50.0, "config": asdict(cpu)}, other)
    with pytest.raises(teacher.TeacherError) as err:
        teacher.load_teacher("ci", path=other)
    assert "with that --profile" in str(err.value) and "--retrain" not in str(err.value)


def test_an_existing_folder_that_cannot_be_written_is_named_before_any_work(tmp_path, capsys, monkeypatch):
    from helpers import errors
    (tmp_path / "locked").mkdir()
    # read-only for a user (root, who runs CI here, may write anywhere, so its answer is replaced)
    monkeypatch.setattr(errors.os, "access", lambda path, mode: Path(path).name != "locked")
    assert cli.main(["--profile", "ci", "--epochs", "1", "--train-per-class", "10", "--no-progress", "--aa", "",
                     "--output-dir", str(tmp_path / "locked")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'locked'} cannot be written" in err and "--output-dir" in err and "epoch 1" not in err
    assert list((tmp_path / "locked").iterdir()) == []
    monkeypatch.setattr(ablate, "run_variant", lambda *a, **k: pytest.fail("trained before checking the folder"))
    assert ablate.reports_errors(ablate.main)(["--profile", "ci", "--only", "plain", "--seeds", "1",
                                               "--results-dir", str(tmp_path / "locked")]) == 2
    assert "cannot be written" in capsys.readouterr().err


def test_a_folder_with_a_runs_history_but_no_checkpoint_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "history.json").write_text('{"history": ["an earlier run"]}')
    assert cli.main(["--profile", "ci", "--epochs", "1", "--train-per-class", "10", "--no-progress", "--aa", "",
                     "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds a run's history.json but no last.pt" in err and "nothing was overwritten" in err
    assert (tmp_path / "history.json").read_text() == '{"history": ["an earlier run"]}'


def test_unknown_variants_are_refused_before_a_results_folder_is_made(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        ablate.main(["--profile", "ci", "--only", "fast", "--results-dir", str(tmp_path / "new")])
    assert exit_.value.code == 2 and "error: unknown variants ['fast']" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_result_missing_what_the_tables_read_is_named(tmp_path):
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "plain-seed0.json").write_text(json.dumps({"protocol": ablate.PROTOCOL, "variant": "plain",
                                                                  "seed": 0}))
    with pytest.raises(SystemExit, match=r"plain-seed0.json lacks \['final_val_acc', 'test_acc'\].*Restore"):
        ablate.main(["--profile", "ci", "--summary", "--results-dir", str(tmp_path)])


def test_a_damaged_notebook_is_named_before_any_notebook_runs(tmp_path, capsys):
    from helpers import notebooks, prepare
    damaged = tmp_path / "00_x.ipynb"
    damaged.write_text('{"cells": [\n<<<<<<< HEAD\n')
    for main, args in ((notebooks.main, []), (prepare.main, ["--profile", "ci"])):
        assert main([*args, str(damaged)]) == 2
        err = capsys.readouterr().err
        assert f"error: {damaged} cannot be read as a notebook" in err and "git checkout" in err
    assert damaged.read_text() == '{"cells": [\n<<<<<<< HEAD\n'


def test_a_checkpoint_given_to_eval_or_finetune_is_never_to_be_deleted(tmp_path, capsys):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    for flag in (["--eval"], ["--profile", "ci", "--output-dir", str(tmp_path / "ft"), "--finetune"]):
        assert cli.main([*flag, str(tmp_path / "last.pt")]) == 2
        err = capsys.readouterr().err
        assert "cannot be read" in err and "delete" not in err and "--resume continues" not in err


def test_a_checkpoint_from_a_newer_course_says_to_update(tmp_path, capsys):
    run = ["--profile", "ci", "--epochs", "1", "--train-per-class", "10", "--no-progress", "--aa", ""]
    assert cli.main(run + ["--output-dir", str(tmp_path)]) == 0
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    state["metadata"]["recipe"]["warp_drive"] = 0.5
    torch.save(state, tmp_path / "last.pt")
    assert cli.main(["--eval", str(tmp_path / "last.pt")]) == 2
    assert "newer version of this course" in capsys.readouterr().err


def test_a_device_that_is_not_there_is_refused_by_the_parser(capsys):
    from benchmarks import teacher as teacher_benchmark
    with pytest.raises(SystemExit):
        teacher_benchmark.main(["--device", "tpu9"])
    assert "argument --device: 'tpu9' is not a device" in capsys.readouterr().err


def test_files_of_another_protocol_are_left_out_with_a_note(tmp_path, capsys):
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "old-seed0.json").write_text(json.dumps({"protocol": 1, "variant": "plain", "seed": 0}))
    assert ablate.load_results("ci", tmp_path) == []
    assert "1 file(s) in" in capsys.readouterr().err


def test_the_loading_benchmark_names_the_users_damaged_file_not_its_temporary_link(tmp_path, few_images, capsys):
    from benchmarks import data_loading
    write_image_folder(tmp_path / "cifar10-jpeg", few_images, "train")
    write_image_folder(tmp_path / "cifar10-jpeg", few_images, "test")
    damaged = sorted((tmp_path / "cifar10-jpeg" / "train" / "cat").iterdir())[0]
    damaged.write_bytes(damaged.read_bytes()[:20])
    assert data_loading.main(["--root", str(tmp_path)]) == 2
    assert f"{damaged} is not a readable image" in capsys.readouterr().err


def test_the_loading_benchmark_copies_the_data_where_no_link_may_be_made(tmp_path, few_images, capsys, monkeypatch):
    """Windows lets only administrators, or Developer Mode, make symbolic links (WinError 1314)."""
    from benchmarks import data_loading
    write_image_folder(tmp_path / "cifar10-jpeg", few_images, "train")
    write_image_folder(tmp_path / "cifar10-jpeg", few_images, "test")

    def refused(self, target, target_is_directory=False):
        raise OSError(22, "A required privilege is not held by the client")
    monkeypatch.setattr(Path, "symlink_to", refused)
    assert data_loading.main(["--root", str(tmp_path)]) in (None, 0)
    out = capsys.readouterr().out
    assert "copying" in out and out.splitlines()[-2].startswith("train") and out.splitlines()[-1].startswith("test")
    assert not (tmp_path / ".cache").exists()  # the user's own cache was left alone
