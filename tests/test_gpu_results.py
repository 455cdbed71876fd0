"""How notebooks show the GPU plan's measurements: the together table, utilisation and targets."""
import pytest

from helpers import gpu_results
from helpers.speed import training_flops_per_image
from helpers.models import DEIT_TINY_32

H100 = "NVIDIA H100 80GB HBM3"


def test_utilisation_uses_the_gpus_dense_bf16_peak_and_admits_an_unknown_gpu():
    flops = training_flops_per_image(**DEIT_TINY_32)
    assert gpu_results.utilisation(100_000, flops, H100) == pytest.approx(1e5 * flops / 989.5e12)
    assert gpu_results.utilisation(100_000, flops, "a GPU nobody listed") is None


def test_the_together_table_reports_both_targets_met_or_missed(capsys):
    record = {"device": H100, "torch": "2.11", "commit": "abc1234", "date": "2026-11-27T01:00:00",
              "batch_size_per_model": 1024, "training_flops_per_image": 2.19e9, "peak_tflops": 989.5, "best_m": 16,
              "rows": [{"models": 1, "images_per_s": 30000.0, "x_one_model": 1.0, "mfu": 0.066},
                       {"models": 16, "images_per_s": 150000.0, "x_one_model": 5.0, "mfu": 0.332},
                       {"models": 32, "error": "out of GPU memory"}]}
    gpu_results.print_together(record, {"images_per_second": {"b model alone": 44000.0}})
    out = capsys.readouterr().out
    assert "3.41x one compiled model alone, target >= 3 met" in out
    assert "MFU 33.2%, target >= 30% met" in out and "out of GPU memory" in out
    record["rows"][1].update(images_per_s=90000.0, mfu=0.2)
    gpu_results.print_together(record, {"images_per_second": {"b model alone": 44000.0}})
    out = capsys.readouterr().out
    assert "2.05x one compiled model alone, target >= 3 missed" in out and "target >= 30% missed" in out
    assert "another run" in out
    # A baseline timed in the same run is preferred to the throughput stage's row b.
    record["compiled_one_model"] = {"images_per_s": 30000.0, "compiled": True}
    gpu_results.print_together(record, {"images_per_second": {"b model alone": 44000.0}})
    out = capsys.readouterr().out
    assert "3.00x one compiled model alone, target >= 3 met" in out and "same run" in out
    record["full_recipe"] = {"models": 16, "images_per_s": 60000.0, "alone_images_per_s": 24000.0}
    gpu_results.print_together(record, None)
    assert "full recipe (the ablation's work, augmentation per model): M = 16 together 60,000 images/s, " \
           "one compiled model alone 24,000 images/s (2.50x)" in capsys.readouterr().out


def test_the_teacher_table_gives_each_runs_verdict_and_its_first_epoch_apart(capsys):
    run = {"device": H100, "train_size": 45000}
    old = {"device": H100, "torch": "2.11", "commit": "abc1234", "date": "2026-11-27T01:00:00",  # no epoch times yet
           "rows": [{**run, "epochs": 20, "seconds": 34.0, "test_acc": 88.4, "train_size": 50000}]}
    new = {**old, "rows": [{**run, "epochs": 150, "seconds": 59.5, "test_acc": 94.1, "epoch_seconds": [26.0, 0.2, 0.3, 0.4]},
                           {**run, "epochs": 160, "seconds": 61.0, "test_acc": 95.0, "epoch_seconds": [30.0]}]}
    gpu_results.print_teacher([old, new])
    lines = capsys.readouterr().out.splitlines()
    assert "target >= 94 % in <= 60 s" in lines[0]
    assert "88.40  missed" in lines[1] and "epoch" not in lines[1]
    assert "94.10  met" in lines[2] and "first epoch 26.0 s, then 0.30 s per epoch" in lines[2]
    assert "95.00  missed" in lines[3] and "one epoch, 30.0 s" in lines[3]  # too slow, however accurate
    # Only runs on as many images are timed together: 59.5 s at 150 epochs, 61.0 s at 160.
    assert lines[4:] == [f"a straight line through the 2 runs on {H100} (45,000 training images): "
                         "37.0 s once + 0.15 s per epoch"]


def test_the_time_to_accuracy_figure_is_readable():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.figure_check import readability_problems

    timeline = [{"seconds": 40 + 6 * e, "test_acc": min(95.0, 30 + 3 * e), "epoch": e} for e in range(30)]
    record = {"timeline": timeline, "teacher_seconds": 40.0, "epochs": 30}
    ax = gpu_results.plot_time_to_accuracy({"3-minute run": record, "10-minute run": {**record, "epochs": 31}})
    ax.figure.tight_layout()
    assert readability_problems(ax.figure) == []
    plt.close("all")


PROFILE = """torch.profiler summaries on a GPU

== c ours ==
------------------------------------  ------------  ------------  ------------
                                Name    Self CPU %     Self CUDA   Self CUDA %
------------------------------------  ------------  ------------  ------------
                            aten::mm         4.72%      20.394ms        20.26%
aten::_cudnn_attention_backward              1.43%      13.709ms        13.62%
  nvjet_sm90_tst_192x128_64x5_1x2_h_bz       0.00%       5.804ms         5.77%
                         aten::addmm         2.84%      10.194ms        10.13%
------------------------------------  ------------  ------------  ------------

== c+ ours with teacher ==
------------------------------------  ------------  ------------  ------------
                                Name    Self CPU %     Self CUDA   Self CUDA %
                            aten::mm         4.96%      20.682ms        50.00%
"""


def test_gpu_time_shares_add_up_the_operators_of_one_section_only(tmp_path):
    path = tmp_path / "throughput_profile.txt"
    path.write_text(PROFILE)
    shares = gpu_results.gpu_time_shares("c ours", path)
    assert shares == pytest.approx({"matrix products": 30.39, "attention": 13.62, "everything else": 55.99})
    assert gpu_results.gpu_time_shares("c+ ours with teacher", path)["matrix products"] == 50.0
    assert gpu_results.gpu_time_shares("b model alone", path) is None
    assert gpu_results.gpu_time_shares("c ours", tmp_path / "missing.txt") is None


def test_gpu_ms_per_step_divides_the_kernel_total_by_the_steps_profiled(tmp_path):
    rule = "-" * 40 + "  " + "-" * 12
    path = tmp_path / "throughput_profile.txt"
    path.write_text(f"""== c ours ==
{rule}
                                Name    # of Calls
{rule}
            CompiledFunctionBackward             5
           Optimizer.step#AdamW.step             5
{rule}
Self CPU time total: 238.466ms
Self CUDA time total: 100.672ms


== c+ ours with teacher ==
{rule}
                                Name    # of Calls
            CompiledFunctionBackward             4
{rule}
Self CPU time total: 308.365ms
Self CUDA time total: 1.28164s


== b model alone ==
                                Name    # of Calls
Self CUDA time total: 1.0ms
""")
    assert gpu_results.gpu_ms_per_step("c ours", path) == pytest.approx(20.1344)
    assert gpu_results.gpu_ms_per_step("c+ ours with teacher", path) == pytest.approx(320.41)  # no optimizer row
    assert gpu_results.gpu_ms_per_step("b model alone", path) is None  # no per-step operator to count steps
    assert gpu_results.gpu_ms_per_step("a seed pipeline", path) is None
    assert gpu_results.gpu_ms_per_step("c ours", tmp_path / "missing.txt") is None


def test_the_together_table_says_whether_the_groups_compiled(capsys):
    record = {"device": H100, "torch": "2.11", "commit": "abc1234", "date": "2026-11-27T01:00:00",
              "batch_size_per_model": 1024, "training_flops_per_image": 2.19e9, "peak_tflops": 989.5, "best_m": 2,
              "compile": True, "rows": [{"models": 1, "images_per_s": 30000.0, "x_one_model": 1.0, "compiled": True},
                                        {"models": 2, "images_per_s": 50000.0, "x_one_model": 1.7, "compiled": False}]}
    gpu_results.print_together(record, None)
    assert "with torch.compile; torch.compile failed for M = [2], which ran eagerly" in capsys.readouterr().out
    record.update(compile=False)
    gpu_results.print_together(record, None)
    assert "models together trained eagerly\n" in capsys.readouterr().out


def test_a_text_result_shows_its_first_line_or_says_it_is_missing(tmp_path):
    assert gpu_results.headline("teacher_profile", tmp_path).startswith("results/teacher_profile.txt has not been")
    (tmp_path / "teacher_profile.txt").write_text("The first 20 steps: step 1 9.10 s\n--- table ---\n")
    assert gpu_results.headline("teacher_profile", tmp_path) == "The first 20 steps: step 1 9.10 s"


def test_the_throughput_table_compares_each_row_with_a_and_b_and_meets_a_target_reached_exactly(capsys):
    record = {"device": H100, "torch": "2.11", "commit": "abc1234", "date": "2026-11-27T01:00:00", "batch_size": 1024,
              "compile": True, "images_per_second": {"a seed pipeline": 1000.0, "b model alone": 8000.0, "c ours": 6000.0},
              "ratios": {"c/a": 6.0, "c/b": 0.75}}
    gpu_results.print_throughput(record)
    out = capsys.readouterr().out
    assert f"Measured on {H100}, torch 2.11, commit abc1234, 2026-11-27; batch 1024, compiled" in out
    assert "6.00x  0.75x" in out.splitlines()[4]  # c: 6,000 / 1,000 (a), 6,000 / 8,000 (b)
    assert "c/a = 6.00: target >= 6 met" in out and "c/b = 0.75: target >= 0.9 missed" in out


def test_a_teacher_trained_in_exactly_the_target_time_meets_it_and_runs_of_one_length_get_no_line(capsys):
    record = {"device": H100, "torch": "2.11", "commit": "abc1234", "date": "2026-11-27T01:00:00",
              "rows": [{"device": H100, "train_size": 45000, "epochs": 30, "seconds": 60.0, "test_acc": 94.0},
                       {"device": H100, "train_size": 45000, "epochs": 30, "seconds": 62.0, "test_acc": 94.0}]}
    gpu_results.print_teacher([record])
    lines = capsys.readouterr().out.splitlines()
    assert "94.00  met" in lines[1] and "94.00  missed" in lines[2]
    assert len(lines) == 3  # one epoch count: no straight line to fit


def test_gpu_ms_per_step_counts_steps_by_the_optimizer_where_it_is_listed(tmp_path):
    path = tmp_path / "throughput_profile.txt"
    # two compiled graphs, so two backward calls a step: the optimizer's 5 calls are the steps
    path.write_text("== c ours ==\n      CompiledFunctionBackward             10\n"
                    "      Optimizer.step#AdamW.step             5\nSelf CUDA time total: 100.0ms\n")
    assert gpu_results.gpu_ms_per_step("c ours", path) == pytest.approx(20.0)
