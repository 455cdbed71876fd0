"""The GPU plan: its budget logic, and every stage run for real at tiny size on the CPU (--dry-run)."""
import json
import re
import sys
import tarfile
import time

import pytest

from benchmarks import gpu_plan, time_to_accuracy
from benchmarks.gpu_plan import Plan, Stage, run_plan


def _stage(name, guess_s, seconds=0.0):
    """A stage that sleeps, then writes its one result file."""
    def args(plan):
        out = plan.results / f"{name}.json"
        return ["-c", f"import time, pathlib; time.sleep({seconds}); pathlib.Path(r'{out}').write_text('{{}}')"]
    return Stage(name, name, [], [f"{name}.json"], guess_s, args)


def test_budget_runs_what_fits_skips_what_is_done_and_what_does_not_fit(tmp_path, capsys):
    (tmp_path / "finished.json").write_text("{}")
    stages = [_stage("finished", 1), _stage("quick", 1), _stage("long", 1000), _stage("after", 1)]
    made = run_plan(Plan(tmp_path, budget_s=60, dry_run=False), stages=stages)
    out = capsys.readouterr().out
    assert "[finished] done already" in out and "[long] skipped: expected 1000 s" in out
    assert {p.name for p in made} == {"quick.json", "after.json", gpu_plan.TIMINGS}
    assert not (tmp_path / "long.json").exists()  # the window's rest went to the shorter stage after it
    timings = json.loads((tmp_path / gpu_plan.TIMINGS).read_text())["stages"]
    assert list(timings) == ["quick", "after"] and timings["quick"]["status"] == "done"
    assert {"seconds", "device", "commit", "date", "gpu"} <= set(timings["quick"])


def test_the_archive_is_brought_up_to_date_after_every_stage(tmp_path):
    packed = []

    def after_each(files):
        gpu_plan.archive(files, tmp_path, tmp_path / "out" / "results.tar.gz")
        with tarfile.open(tmp_path / "out" / "results.tar.gz") as tar:
            packed.append(sorted(tar.getnames()))
    run_plan(Plan(tmp_path, budget_s=60, dry_run=False), stages=[_stage("first", 1), _stage("second", 1)],
             after_each=after_each)
    assert packed == [sorted([gpu_plan.TIMINGS, "first.json"]), sorted([gpu_plan.TIMINGS, "first.json", "second.json"])]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.tar.gz"]  # no partial copy left


def test_a_stage_stopped_at_its_limit_takes_the_processes_it_started_with_it(tmp_path):
    import subprocess
    started, late = tmp_path / "started.txt", tmp_path / "late.txt"
    grandchild = (f"import time, pathlib; pathlib.Path(r'{started}').write_text('up'); time.sleep(3); "
                  f"pathlib.Path(r'{late}').write_text('still running')")
    stage = ["-c", f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); "
                   f"time.sleep(30)"]
    with pytest.raises(subprocess.TimeoutExpired):
        gpu_plan.run_in_own_group([sys.executable, *stage], None, timeout=2)
    assert started.exists()  # it ran before the limit, so what follows says something
    time.sleep(4)
    assert not late.exists()  # the notebook kernel of a stopped stage does not run on beside the next stage


def test_a_stage_waits_for_the_stages_it_needs(tmp_path, capsys):
    sizing, sized, other = _stage("sizing", 1000), _stage("sized", 1), _stage("other", 1)
    sized.needs = ("sizing",)
    plan = Plan(tmp_path, budget_s=60, dry_run=False)
    run_plan(plan, stages=[sizing, sized, other])
    assert "[sized] waits until sizing is done" in capsys.readouterr().out
    assert not (tmp_path / "sized.json").exists() and (tmp_path / "other.json").exists()
    (tmp_path / "sizing.json").write_text("{}")  # a later window measured it
    run_plan(Plan(tmp_path, budget_s=60, dry_run=False), stages=[sizing, sized, other])
    assert (tmp_path / "sized.json").exists()


def test_a_stage_that_stops_part_way_ends_the_plan_so_the_next_window_goes_on_with_it(tmp_path, capsys):
    partial = Stage("partial", "", [], ["partial.json"], 1, lambda plan: ["-c", "pass"])  # exit 0, no result
    run_plan(Plan(tmp_path, budget_s=60, dry_run=False), stages=[partial, _stage("after", 1)])
    assert "[partial] partial: the next window goes on with it" in capsys.readouterr().out
    assert not (tmp_path / "after.json").exists()
    assert json.loads((tmp_path / gpu_plan.TIMINGS).read_text())["stages"]["partial"]["status"] == "partial"


def test_the_ten_minute_run_comes_last_after_the_stages_a_window_can_decide():
    """Only the fp16 check comes after it: it decides no target, so it may not delay it."""
    names = [s.name for s in gpu_plan.STAGES]
    assert names[-2:] == ["time_to_accuracy_10min", "throughput_fp16"] and names.index("ablation") == len(names) - 3
    needs = {s.name: s.needs for s in gpu_plan.STAGES if s.needs}
    assert needs == {"ablation": ("together",), "time_to_accuracy_10min": ("ablation",)}


def test_expected_time_is_the_last_gpu_measurement(tmp_path):
    stage = _stage("quick", 100)
    plan = Plan(tmp_path, None, False)
    plan.timings["stages"]["quick"] = {"status": "done", "seconds": 7.0, "gpu": None}
    assert plan.expected_s(stage) == 100  # measured on a CPU: not a GPU's time
    plan.timings["stages"]["quick"]["gpu"] = "NVIDIA H100"
    assert plan.expected_s(stage) == 7.0


def test_a_failing_or_overrunning_stage_is_recorded(tmp_path, monkeypatch):
    import subprocess
    real_run, timeouts = gpu_plan.run_in_own_group, {}

    def run(command, env, timeout):  # the failing stage runs for real; the slow one overruns its limit
        timeouts[command[-1]] = timeout
        if "slow" in command[-1]:
            raise subprocess.TimeoutExpired(command, timeout)
        return real_run(command, env, timeout)
    monkeypatch.setattr(gpu_plan, "run_in_own_group", run)
    monkeypatch.setattr(gpu_plan, "GRACE_S", 7)
    failing = Stage("failing", "", [], ["failing.json"], 1, lambda plan: ["-c", "raise SystemExit(3)"])
    slow = Stage("slow", "", [], ["slow.json"], 20, lambda plan: ["-c", "slow"])
    plan = Plan(tmp_path, budget_s=50, dry_run=False)
    monkeypatch.setattr(plan, "left_s", lambda: 50.0)  # a fixed clock: 50 s left at every stage
    run_plan(plan, stages=[failing, slow])
    timings = json.loads((tmp_path / gpu_plan.TIMINGS).read_text())["stages"]
    assert timings["failing"]["status"] == "failed (exit 3)"
    assert timings["slow"]["status"] == "timed out"
    # each stage may run until the budget ends (50 s, more than the 1 s or 20 s it is expected to take) + grace
    assert timeouts == {"raise SystemExit(3)": 50.0 + 7, "slow": 50.0 + 7}


def test_a_stage_expected_to_take_all_that_is_left_may_run_its_expected_time_plus_grace(tmp_path, monkeypatch):
    timeouts = []

    def run(command, env, timeout):
        timeouts.append(timeout)
        return 0
    monkeypatch.setattr(gpu_plan, "run_in_own_group", run)
    monkeypatch.setattr(gpu_plan, "GRACE_S", 7)
    plan = Plan(tmp_path, budget_s=50, dry_run=False)
    asked = []

    def left_s():  # the fit check sees 40 s left; by the time the limit is set, only 30 s
        asked.append(1)
        return 40.0 if len(asked) == 1 else 30.0
    monkeypatch.setattr(plan, "left_s", left_s)
    run_plan(plan, stages=[_stage("quick", 35)])
    assert timeouts == [35 + 7]  # max(30 s left, 35 s expected) + grace
    # without a budget there is no limit at all
    run_plan(Plan(tmp_path / "unbounded", budget_s=None, dry_run=False), stages=[_stage("other", 35)])
    assert timeouts[-1] is None


def test_sizes_come_from_earlier_stages_and_the_ablation_budget_is_fixed_once(tmp_path):
    plan = Plan(tmp_path, None, False)
    (tmp_path / "throughput.json").write_text(json.dumps(
        {"images_per_second": {"c ours": 30000.0, "c+ ours with teacher": 20000.0},
         "compile_seconds": {"c+ ours with teacher": 20.0}}))
    (tmp_path / "teacher_full.json").write_text(json.dumps({"rows": [{"seconds": 40.0}]}))
    # 180 s - 40 s teacher - 20 s compile - 20 s start = 100 s at 1.1 * 1.2 * 45,000 / 20,000 = 2.97 s an epoch
    assert plan.student_epochs(180) == 33
    # A measured run is trusted over the estimate: 4 s epochs after a first one of 34 s (30 s compiling).
    timeline = [{"epoch": 0, "seconds": 40.0}] + [{"epoch": e, "seconds": 70.0 + 4 * e} for e in range(1, 11)]
    (tmp_path / "time_to_accuracy_3min.json").write_text(json.dumps({"timeline": timeline}))
    assert plan.student_epochs(180) == int((180 - 40 - 30 - 20) / (1.1 * 4))  # 20
    epochs = plan.ablation_epochs()
    assert epochs >= 1
    (tmp_path / "throughput.json").write_text(json.dumps({"images_per_second": {"c ours": 1.0}}))
    assert plan.ablation_epochs() == epochs  # once chosen, every ablation run keeps it


def test_the_ablation_budget_fits_two_windows_at_the_measured_group_speed(tmp_path):
    """17 variants x 3 seeds, 3 of them distilled (1.5 x the cost: c / c+); 5 s a run for evaluation;
    every window compiles two graphs and trains the teacher again."""
    def plan_with(together_rows):
        folder = tmp_path / str(len(together_rows))
        folder.mkdir()
        (folder / "throughput.json").write_text(json.dumps({
            "images_per_second": {"b model alone": 40000.0, "c ours": 30000.0, "c+ ours with teacher": 20000.0},
            "compile_seconds": {"b model alone": 30.0, "c ours": 0.1}}))  # c reused b's graph
        (folder / "teacher_full.json").write_text(json.dumps({"rows": [{"seconds": 40.0}]}))
        if together_rows:
            (folder / "together.json").write_text(json.dumps({"best_m": 16, "rows": together_rows}))
        return Plan(folder, None, False)
    runs = 3 * (14 + 3 * 1.5)
    # in groups of 16 at 90,000 images/s, times c/b = 0.75 for the recipe's input pipeline; 2 windows
    # of 480 - 20 (start) - 2 x 50 (the group's measured warm-up) - 40 (teacher) seconds
    grouped = plan_with([{"models": 1, "images_per_s": 20000.0},
                         {"models": 16, "images_per_s": 90000.0, "warm_up_s": 50.0}])
    assert grouped.ablation_epochs() == int((2 * 320 - 5 * 51) * 67500 / (runs * 45000)) == 10
    assert grouped.timings["ablation_sizing"] == {"windows": 2, "window_s": 480, "images_per_s": 67500.0,
                                                  "models_together": 16}
    # what the runner is told, to stop before a group that would not fit
    costs = grouped.ablation_costs()
    assert costs == ["--expected-run-s", f"{1.1 * 10 * 45000 / 67500 + 5:.1f}", "--distilled-cost", "1.500",
                     "--compile-s", "50", "--teacher-s", "40"]
    # no together stage yet: one model at a time at row c (compiled in 30 s), 3 windows
    alone = plan_with([])
    assert alone.ablation_epochs() == int((3 * 360 - 5 * 51) * 30000 / (runs * 45000)) == 9


def test_the_ablation_trains_in_groups_as_large_as_the_together_stage_found_best(tmp_path):
    plan = Plan(tmp_path, None, False)
    ablation = next(s for s in gpu_plan.STAGES if s.name == "ablation")
    names = [s.name for s in gpu_plan.STAGES]
    assert names.index("together") < names.index("ablation")  # it sizes the ablation's groups

    def together_arg():
        args = ablation.gpu_args(plan)
        return args[args.index("--together") + 1] if "--together" in args else None
    assert together_arg() is None  # before the together stage has measured groups: one at a time
    (tmp_path / "throughput.json").write_text(json.dumps({"images_per_second": {"b model alone": 40000.0}}))
    rows = [{"models": 1, "images_per_s": 20000.0}, {"models": 16, "images_per_s": 90000.0},
            {"models": 32, "error": "out of GPU memory"}]
    (tmp_path / "together.json").write_text(json.dumps({"best_m": 16, "rows": rows}))
    assert together_arg() == "16"
    rows[1]["images_per_s"] = 30000.0  # together, but slower than one compiled model: one at a time
    (tmp_path / "together.json").write_text(json.dumps({"best_m": 16, "rows": rows}))
    assert together_arg() is None
    # the together stage's own baseline (same GPU, same batch) wins over the throughput stage's row b
    (tmp_path / "together.json").write_text(json.dumps({"best_m": 16, "rows": rows,
                                                        "compiled_one_model": {"images_per_s": 25000.0}}))
    assert together_arg() == "16"
    # where the together stage timed the full recipe (the ablation's work), that decides, and sizes the runs
    full = {"models": 16, "images_per_s": 24000.0, "alone_images_per_s": 26000.0, "warm_up_s": 70.0}
    (tmp_path / "together.json").write_text(json.dumps({"best_m": 16, "rows": rows, "full_recipe": full,
                                                        "compiled_one_model": {"images_per_s": 25000.0}}))
    assert together_arg() is None and plan.ablation_rate() == 26000.0  # augmentation-bound: one at a time
    full["images_per_s"] = 52000.0
    (tmp_path / "together.json").write_text(json.dumps({"best_m": 16, "rows": rows, "full_recipe": full}))
    assert together_arg() == "16" and plan.ablation_rate() == 52000.0
    # compile time: the plain row's warm-up at that M compiled; the full recipe's reused its graph
    rows[1]["warm_up_s"], full["warm_up_s"] = 40.0, 5.0
    (tmp_path / "together.json").write_text(json.dumps({"best_m": 16, "rows": rows, "full_recipe": full}))
    assert plan.ablation_compile_s() == 40.0


def test_the_ablation_groups_leave_memory_headroom(tmp_path):
    from benchmarks.together import group_m
    rows = [{"models": 8, "images_per_s": 80000.0, "peak_gib": 30.0}, {"models": 16, "images_per_s": 90000.0, "peak_gib": 70.0}]
    assert group_m(rows, 80.0) == 8 and group_m(rows, 140.0) == 16 and group_m(rows, None) == 16  # 70 of 80 GiB: too full
    plan = Plan(tmp_path, None, False)
    (tmp_path / "throughput.json").write_text(json.dumps({"images_per_second": {"b model alone": 40000.0}}))
    (tmp_path / "together.json").write_text(json.dumps({"best_m": 16, "group_m": 8, "rows": rows}))
    assert plan.together_models() == 8


def test_without_a_gpu_only_the_dry_run_is_allowed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_plan, "gpu_name", lambda: None)
    assert gpu_plan.main(["--results-dir", str(tmp_path)]) == 2
    assert "--dry-run" in capsys.readouterr().out


def test_dry_run_runs_every_stage_on_the_cpu_and_archives_its_results(tmp_path, capsys):
    import os
    runs_before = os.environ.get("DEIT_RUNS")
    results, archive = tmp_path / "results", tmp_path / "results.tar.gz"
    assert gpu_plan.main(["--dry-run", "--results-dir", str(results), "--archive", str(archive)]) == 0
    timings = json.loads((results / gpu_plan.TIMINGS).read_text())["stages"]
    assert {name: t["status"] for name, t in timings.items()} == {s.name: "done" for s in gpu_plan.STAGES}
    throughput = json.loads((results / "throughput.json").read_text())
    assert len(throughput["images_per_second"]) == 4 and throughput["timings"]["c ours"]["images"] == 200
    assert "profiler" in (results / "throughput_profile.txt").read_text()
    for name in ("throughput", "teacher_full", "teacher_epochs", "teacher_long", "time_to_accuracy_3min",
                 "time_to_accuracy_10min", "together", "throughput_fp16"):
        record = json.loads((results / f"{name}.json").read_text())
        assert {"device", "torch", "timm", "commit", "command", "date", "precision"} <= set(record), name
    assert json.loads((results / "throughput_fp16.json").read_text())["precision"] == "fp16"  # loss scaling's path
    assert json.loads((results / "throughput.json").read_text())["precision"] == "fp32"  # the dry run's FP32
    together = json.loads((results / "together.json").read_text())
    assert [r["models"] for r in together["rows"]] == [1, 2]
    assert together["best_m"] == max(together["rows"], key=lambda r: r["images_per_s"])["models"]
    assert all(r["images_per_s"] > 0 for r in together["rows"])
    assert together["compiled_one_model"]["images_per_s"] > 0 and together["compiled_one_model"]["compiled"]
    assert all(r["x_compiled_alone"] > 0 for r in together["rows"])
    assert together["complete"] and together["compile"] and all(r["compiled"] for r in together["rows"])  # bf16 vmap, compiled
    full = together["full_recipe"]  # the ablation's work, at the best M and alone
    assert full["models"] == together["best_m"] and full["images_per_s"] > 0 and full["alone_images_per_s"] > 0
    assert full["compiled"] and full["alone_compiled"]
    profile = (results / "together_profile.txt").read_text()  # three recorded steps, compiled, no compile trial
    assert f"{together['group_m']} models together" in profile and "CompiledFunction" in profile
    assert re.search(r"ProfilerStep\*\s.*\s3\s*$", profile, re.MULTILINE), profile[:2000]
    first_steps = (results / "teacher_profile.txt").read_text()  # three profiled steps of a new teacher
    assert "The first 3 training steps of a new ci-profile teacher" in first_steps and "CPU total" in first_steps
    long_teacher = json.loads((results / "teacher_long.json").read_text())["rows"][0]
    assert len(long_teacher["epoch_seconds"]) == len(long_teacher["val_acc_by_epoch"]) == long_teacher["epochs"] == 2
    tta = json.loads((results / "time_to_accuracy_3min.json").read_text())
    assert tta["teacher"].startswith("trained earlier") and tta["timeline"][-1]["epoch"] == 1
    assert tta["compile"] is True  # fit's torch.compile path, as on the GPU
    assert not tta["stopped_at_time_limit"] and tta["epochs_done"] == tta["epochs"] == 1
    tta = json.loads((results / "time_to_accuracy_10min.json").read_text())
    assert tta["stopped_at_time_limit"] and (tta["epochs_done"], tta["epochs"]) == (1, 2)
    notebooks = json.loads((results / "notebooks_gpu.json").read_text())  # the dry run's one notebook
    assert notebooks["complete"] and notebooks["notebooks"]["00_the_problem"]["passed"], notebooks
    assert notebooks["notebooks"]["00_the_problem"]["cells_passed"] > 10 and notebooks["device_type"] == "cpu"
    ablation = {p.name: json.loads(p.read_text()) for p in (results / "ablation" / "ci").glob("*.json")}
    assert sorted(ablation) == ["full+hard-distillation-seed0.json", "plain-seed0.json"]
    assert all(r["together"] == 1 for r in ablation.values())  # trained through fit_together, one shape a group
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"throughput.json", "teacher_full.json", gpu_plan.TIMINGS, "ablation/ci/plain-seed0.json"} <= names
    assert not any(n.startswith(("/", "..")) or "runs/" in n for n in names)  # no checkpoints travel
    capsys.readouterr()
    # A second window finds everything done and makes nothing new.
    assert gpu_plan.main(["--dry-run", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert all(f"[{s.name}] done already" in out for s in gpu_plan.STAGES)
    assert os.environ.get("DEIT_RUNS") == runs_before  # the scratch runs folder was the stages' alone


def test_time_to_accuracy_stops_before_an_epoch_that_would_end_past_the_limit():
    timeline = [{"epoch": 0, "seconds": 40.0, "test_acc": None}, {"epoch": 1, "seconds": 100.0, "test_acc": 50.0},
                {"epoch": 2, "seconds": 110.0, "test_acc": 60.0}]
    assert not time_to_accuracy.out_of_time(timeline, None)
    assert not time_to_accuracy.out_of_time(timeline[:2], 170)  # 100 s + a 60 s epoch (compiling) = 160 s
    assert time_to_accuracy.out_of_time(timeline[:2], 150)
    assert not time_to_accuracy.out_of_time(timeline, 120) and time_to_accuracy.out_of_time(timeline, 119)
    # A run stopped early, below a target before its deadline, leaves that target undecided.
    assert time_to_accuracy.verdict(timeline[1:], 90.0, 180.0) == "undecided"
    assert time_to_accuracy.verdict(timeline[1:], 55.0, 105.0) == "missed"
    assert time_to_accuracy.verdict(timeline[1:], 55.0, 110.0) == "met"


def test_the_together_stage_fits_its_table_and_the_full_recipe_into_its_time_limit(tmp_path, capsys):
    from benchmarks import together
    out = tmp_path / "together.json"
    run = ["--batch-size", "4", "--steps", "1", "--models", "1", "2", "--full-recipe", "--output", str(out)]
    assert together.main(run + ["--time-limit-s", "0.001"]) == 0
    record = json.loads(out.read_text())
    assert [r["models"] for r in record["rows"]] == [1] and record["stopped_before_m"] == 2  # the first M always runs
    assert record["complete"] and record["full_recipe"]["error"].startswith("not timed")
    assert "stopping before M = 2" in capsys.readouterr().out
    assert not Plan(tmp_path, None, False).full_recipe()  # the plan sizes from the plain rows then
    assert together.main(run + ["--time-limit-s", "600"]) == 0
    record = json.loads(out.read_text())
    assert [r["models"] for r in record["rows"]] == [1, 2] and record["full_recipe"]["images_per_s"] > 0


def test_a_together_table_cut_short_is_measured_again(tmp_path):
    stage = next(s for s in gpu_plan.STAGES if s.name == "together")
    (tmp_path / "together.json").write_text(json.dumps({"rows": [{"models": 1, "images_per_s": 1.0}], "complete": False}))
    assert not Plan(tmp_path, None, False).done(stage)
    (tmp_path / "together.json").write_text(json.dumps({"rows": [{"models": 1, "images_per_s": 1.0}], "complete": True}))
    assert Plan(tmp_path, None, False).done(stage)


def test_the_notebook_stage_records_each_failed_cell_and_goes_on_where_it_stopped(tmp_path, capsys):
    import nbformat
    from benchmarks import notebook_check
    cells = [nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nimport os\nprint(os.environ['DEIT_PROFILE'])", execution_count=1),
             nbformat.v4.new_code_cell("raise ValueError('a planted error')", execution_count=2),
             nbformat.v4.new_code_cell("print('after it')", execution_count=3)]
    cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="cpu\n")]  # stored: the cpu profile's
    broken = tmp_path / "broken.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}}),
                   broken)
    out = tmp_path / "notebooks_gpu.json"
    assert notebook_check.main([str(broken), "--output", str(out)]) == 0  # failures are the record, not an error
    record = json.loads(out.read_text())
    result = record["notebooks"]["broken"]
    assert not result["passed"] and result["cells_passed"] == 1 and record["complete"]
    assert [(c["cell"], c["kind"]) for c in result["failed_cells"]] == [("Cell 0", "output differs"), ("Cell 1", "raised")]
    assert "'cpu\\n' == 'ci\\n'" in result["failed_cells"][0]["report"]  # the ci profile by default
    assert "ValueError: a planted error" in result["failed_cells"][1]["report"] and "\x1b" not in result["failed_cells"][1]["report"]
    assert {"device", "torch", "commit", "command", "date"} <= set(record)
    capsys.readouterr()
    assert notebook_check.main([str(broken), "--output", str(out)]) == 0  # recorded already: not run again
    assert "broken: recorded already" in capsys.readouterr().out
    in_cpu = tmp_path / "cpu.json"  # the profile chosen reaches the kernel (the tests' conftest sets ci)
    assert notebook_check.main([str(broken), "--profile", "cpu", "--output", str(in_cpu)]) == 0
    result = json.loads(in_cpu.read_text())["notebooks"]["broken"]
    assert [(c["cell"], c["kind"]) for c in result["failed_cells"]] == [("Cell 1", "raised")] and result["cells_passed"] == 2
    stage = next(s for s in gpu_plan.STAGES if s.name == "notebooks_gpu")
    assert Plan(tmp_path, None, False).done(stage)
    out.write_text(json.dumps({**record, "complete": False}))  # cut short by the window's end: made again
    assert not Plan(tmp_path, None, False).done(stage)


def test_on_a_gpu_only_the_fp16_stage_chooses_a_precision(tmp_path, monkeypatch):
    """The others train in what the GPU picks (bf16 on the H100s and H200s of the windows)."""
    monkeypatch.delenv("DEIT_PRECISION", raising=False)
    plan = Plan(tmp_path, budget_s=480, dry_run=False)
    chosen = {stage.name: gpu_plan.stage_command(plan, stage)[1].get("DEIT_PRECISION") for stage in gpu_plan.STAGES}
    assert chosen.pop("throughput_fp16") == "fp16" and set(chosen.values()) == {None}
    command, env = gpu_plan.stage_command(plan, next(s for s in gpu_plan.STAGES if s.name == "throughput_fp16"))
    assert command[1:] == ["benchmarks/throughput.py", "--output", str(tmp_path / "throughput_fp16.json")]
    assert env["DEIT_PROFILE"] == "full"


def test_a_stage_runs_if_it_fits_the_time_left_exactly(tmp_path, monkeypatch):
    plan = Plan(tmp_path, budget_s=50, dry_run=False)
    monkeypatch.setattr(plan, "left_s", lambda: 50.0)
    run_plan(plan, stages=[_stage("fits", 50), _stage("too_long", 51)])
    assert (tmp_path / "fits.json").exists() and not (tmp_path / "too_long.json").exists()


def test_only_the_stages_asked_for_run(tmp_path):
    run_plan(Plan(tmp_path, None, False), only=["second"], stages=[_stage("first", 1), _stage("second", 1)])
    assert not (tmp_path / "first.json").exists() and (tmp_path / "second.json").exists()


def test_the_time_left_counts_from_the_plan_start(tmp_path):
    plan = Plan(tmp_path, budget_s=100, dry_run=False)
    plan.started -= 30  # the plan began 30 s ago
    assert 69 < plan.left_s() <= 70


def test_a_gpu_run_that_did_not_finish_does_not_set_the_expected_time(tmp_path):
    stage = _stage("quick", 100)
    plan = Plan(tmp_path, None, False)
    for status in ("timed out", "failed (exit 1)", "partial"):
        plan.timings["stages"]["quick"] = {"status": status, "seconds": 7.0, "gpu": "NVIDIA H100"}
        assert plan.expected_s(stage) == 100, status
    # the 10-minute run is sized to the time left: it only needs MIN_LONG_RUN_S, whatever it took last
    long_run = next(s for s in gpu_plan.STAGES if s.name == "time_to_accuracy_10min")
    plan.timings["stages"][long_run.name] = {"status": "done", "seconds": 615.0, "gpu": "NVIDIA H100"}
    assert plan.expected_s(long_run) == gpu_plan.MIN_LONG_RUN_S


def test_the_ablation_is_done_only_with_every_variant_at_every_seed(tmp_path):
    from helpers.ablate import variants
    stage = next(s for s in gpu_plan.STAGES if s.name == "ablation")
    plan = Plan(tmp_path, None, False)
    folder = tmp_path / "ablation" / "full"
    folder.mkdir(parents=True)
    for v in variants():
        for k in range(2):
            (folder / f"{v}-seed{k}.json").write_text("{}")
    assert not plan.done(stage)  # seed 2 of each is missing
    for v in variants():
        (folder / f"{v}-seed2.json").write_text("{}")
    assert plan.done(stage)


def test_the_long_run_and_the_ablation_are_limited_to_the_time_left_less_the_start_up(tmp_path, monkeypatch):
    plan = Plan(tmp_path, budget_s=300, dry_run=False)
    monkeypatch.setattr(plan, "left_s", lambda: 300.0)
    stages = {s.name: s for s in gpu_plan.STAGES}

    def value(stage, flag):
        args = stages[stage].gpu_args(plan)
        return float(args[args.index(flag) + 1])
    assert value("time_to_accuracy_10min", "--time-limit-s") == 300 - 20
    assert value("time_to_accuracy_3min", "--time-limit-s") == 180
    assert value("ablation", "--time-limit-s") == 300 - 20
    monkeypatch.setattr(plan, "left_s", lambda: 2000.0)
    assert value("time_to_accuracy_10min", "--time-limit-s") == 600  # ten minutes at most


def test_student_epochs_trust_a_run_of_two_epochs_and_are_at_least_one(tmp_path):
    plan = Plan(tmp_path, None, False)
    (tmp_path / "throughput.json").write_text(json.dumps(
        {"images_per_second": {"c+ ours with teacher": 20000.0}, "compile_seconds": {"c+ ours with teacher": 20.0}}))
    (tmp_path / "teacher_full.json").write_text(json.dumps({"rows": [{"seconds": 40.0}]}))
    # epoch 1 ends 64 s after the start (6 s of it training, 58 s compiling), epoch 2 at 6 s more
    timeline = [{"epoch": 0, "seconds": 40.0}, {"epoch": 1, "seconds": 104.0}, {"epoch": 2, "seconds": 110.0}]
    (tmp_path / "time_to_accuracy_3min.json").write_text(json.dumps({"timeline": timeline}))
    assert plan.student_epochs(180) == int((180 - 40 - 58 - 20) / (1.1 * 6))  # 9
    assert plan.student_epochs(50) == 1  # less than the teacher and compiling take: still one epoch


def test_the_ablation_budget_is_at_least_one_epoch(tmp_path):
    (tmp_path / "teacher_full.json").write_text(json.dumps({"rows": [{"seconds": 1000.0}]}))  # longer than a window
    assert Plan(tmp_path, None, False).ablation_epochs() == 1


def test_group_speed_is_never_scaled_up_by_the_input_pipeline_and_compile_time_is_the_longer_warm_up(tmp_path):
    plan = Plan(tmp_path, None, False)
    # a recipe pipeline measured faster than the model alone (c > b) does not make the groups faster
    (tmp_path / "throughput.json").write_text(json.dumps(
        {"images_per_second": {"b model alone": 40000.0, "c ours": 50000.0}}))
    rows = [{"models": 1, "images_per_s": 20000.0}, {"models": 16, "images_per_s": 90000.0, "warm_up_s": 40.0}]
    (tmp_path / "together.json").write_text(json.dumps({"best_m": 16, "rows": rows}))
    assert plan.ablation_rate() == 90000.0
    full = {"models": 16, "images_per_s": 52000.0, "alone_images_per_s": 26000.0, "warm_up_s": 70.0}
    (tmp_path / "together.json").write_text(json.dumps({"best_m": 16, "rows": rows, "full_recipe": full}))
    assert plan.ablation_compile_s() == 70.0


def test_a_gpu_plan_record_with_one_damaged_entry_stops_the_plan(tmp_path):
    (tmp_path / gpu_plan.TIMINGS).write_text(json.dumps(
        {"stages": {"teacher": {"status": "done", "seconds": 80.0}, "throughput": {"status": "done"}}}))
    with pytest.raises(SystemExit, match="damaged"):
        Plan(tmp_path, None, False)


def test_a_failed_stage_fails_the_dry_run_but_not_a_gpu_window(tmp_path, monkeypatch):
    real_run = gpu_plan.run_in_own_group

    def run(command, env, timeout):  # the teacher's profile stage fails at once
        return 3 if "benchmarks/teacher.py" in command else real_run(command, env, timeout)
    monkeypatch.setattr(gpu_plan, "run_in_own_group", run)
    assert gpu_plan.main(["--dry-run", "--only", "teacher_profile", "--results-dir", str(tmp_path / "dry")]) == 1
    monkeypatch.setattr(gpu_plan, "gpu_name", lambda: "NVIDIA H100")
    assert gpu_plan.main(["--only", "teacher_profile", "--results-dir", str(tmp_path / "gpu")]) == 0
    assert json.loads((tmp_path / "gpu" / gpu_plan.TIMINGS).read_text())["stages"]["teacher_profile"]["status"] == "failed (exit 3)"


def test_the_dry_run_keeps_the_outputs_in_its_folders_and_each_stage_its_precision(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIT_PRECISION", "bf16")
    stages = {s.name: s for s in gpu_plan.STAGES}
    gpu = Plan(tmp_path, None, False)
    assert gpu_plan.stage_command(gpu, stages["throughput_fp16"])[1]["DEIT_PRECISION"] == "fp16"  # not the shell's
    dry = Plan(tmp_path, None, True)
    dry.runs = str(tmp_path / "runs")
    command, env = gpu_plan.stage_command(dry, stages["ablation"])
    assert command[command.index("--results-dir") + 1] == str(tmp_path / "ablation") and "full" not in command
    assert env["DEIT_RUNS"] == str(tmp_path / "runs") and env["DEIT_PROFILE"] == "ci"
    assert env["DEIT_PRECISION"] == "fp32"
    assert gpu_plan.stage_command(dry, stages["throughput_fp16"])[1]["DEIT_PRECISION"] == "fp16"
    command, _ = gpu_plan.stage_command(dry, stages["throughput"])
    assert command[-4:] == ["--output", str(tmp_path / "throughput.json"), "--trace", str(tmp_path / "throughput_profile.txt")]
