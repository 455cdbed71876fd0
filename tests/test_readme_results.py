"""The README's result tables are written from results/ and must match them."""
import json

import pytest

from helpers import ablate, readme_results


def test_readme_tables_match_the_committed_results():
    text = readme_results.README.read_text(encoding="utf-8")
    names = [m["name"] for m in readme_results.BLOCK.finditer(text)]
    crossovers = {readme_results.block_name(folder) for folder in readme_results.SETTINGS}
    assert {"notebooks", "prepare-cpu", "ablation-cpu", "finetune-cpu", "weight-average-cpu", *crossovers} <= set(names)
    assert readme_results.rewrite(text, readme_results.blocks()) == text, \
        "README.md's result tables are stale: run python -m helpers readme"


def write_results(folder, values: dict[str, dict[int, float]]):
    folder.mkdir(parents=True)
    for variant, by_seed in values.items():
        for seed, acc in by_seed.items():
            record = {"protocol": ablate.PROTOCOL, "variant": variant, "seed": seed,
                      "final_val_acc": acc, "test_acc": acc - 1.0}
            (folder / f"{variant}-seed{seed}.json").write_text(json.dumps(record))


def test_ablation_block_states_means_paired_differences_and_what_is_missing(tmp_path):
    write_results(tmp_path / "cpu", {"plain": {0: 50.0, 1: 52.0, 2: 54.0},
                                     "+randaugment": {0: 53.0, 1: 55.1, 2: 56.9}})
    block = readme_results.ablation_block("cpu", tmp_path)
    assert block.startswith("6 of 51 runs")
    assert "| plain | 3 | 52.00 ± 1.15 | 51.00 ± 1.15 |" in block
    # paired differences 3.0, 3.1, 2.9: mean 3.00, s.e. 0.06, clearly not zero
    assert "| randaugment | +3.00 ± 0.06*† | - |" in block  # one test: Holm's correction changes nothing
    assert "full" not in block.split("| ingredient |")[0]  # variants without results are left out
    assert "Other rows" not in block  # no run of Table 8's other rows


def test_ablation_block_adds_table_8_rows_apart_from_the_protocols_count(tmp_path):
    write_results(tmp_path / "cpu", {"full": {0: 80.0, 1: 81.0}, "full+dropout": {0: 79.0, 1: 80.5}})
    block = readme_results.ablation_block("cpu", tmp_path)
    assert block.startswith("2 of 51 runs")  # the protocol's runs only
    assert "| with dropout | full+dropout | 2 | -0.75 ± 0.25 | -0.5 |" in block


def test_an_empty_profile_says_so(tmp_path):
    assert readme_results.ablation_block("full", tmp_path) == "No `results/ablation/full/` results yet.\n"


def test_rewrite_replaces_only_the_block_bodies_and_is_idempotent():
    text = "intro\n<!-- results:a -->\nold\n<!-- /results:a -->\nmiddle\n<!-- results:b -->\n<!-- /results:b -->\nend\n"
    writers = {"a": lambda: "new a\n", "b": lambda: "new b\n"}
    once = readme_results.rewrite(text, writers)
    assert once == "intro\n<!-- results:a -->\nnew a\n<!-- /results:a -->\nmiddle\n<!-- results:b -->\nnew b\n<!-- /results:b -->\nend\n"
    assert readme_results.rewrite(once, writers) == once


def test_an_unknown_block_is_a_clear_error():
    with pytest.raises(ValueError, match="results:nope.*known: a"):
        readme_results.rewrite("<!-- results:nope -->\n<!-- /results:nope -->\n", {"a": lambda: ""})


def test_check_mode_reports_a_stale_readme(tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:crossover -->\nstale\n<!-- /results:crossover -->\n")
    monkeypatch.setattr(readme_results, "README", readme)
    assert readme_results.main(["--check"]) == 1
    assert "python -m helpers readme" in capsys.readouterr().out
    assert readme_results.main([]) == 0 and readme_results.main(["--check"]) == 0


def test_notebooks_block_says_which_cells_raised_and_what_was_not_run(tmp_path):
    cell = {"cell": "Cell 7", "kind": "raised", "report": "ValueError"}
    differs = {"cell": "Cell 2", "kind": "output differs", "report": "mismatch"}
    record = {"notebooks": {"00_the_problem": {"passed": False, "seconds": 251.0, "cells_passed": 15, "failed_cells": [differs]},
                            "03_distillation": {"passed": False, "seconds": 12.0, "cells_passed": 3, "failed_cells": [cell, differs]},
                            "04_fast_gpu_training": {"passed": False, "seconds": 600.0, "error": "stopped after 600 s"}},
              "device": "cpu (x86_64, 2 threads)", "torch": "2.14.1", "commit": "abc1234", "date": "2026-11-28T10:00:00+00:00"}
    (tmp_path / "notebooks_cpu.json").write_text(json.dumps(record))
    block = readme_results.notebooks_block(tmp_path)
    assert "| 00_the_problem | ran top to bottom, 251 s; 1 checked outputs differ from CI's | not run yet |" in block
    assert "| 03_distillation | **raised** in Cell 7, 12 s; 1 checked outputs differ from CI's | not run yet |" in block
    assert "| 04_fast_gpu_training | did not finish: stopped after 600 s | not run yet |" in block
    assert "| 05_ablations | not run yet | not run yet |" in block
    assert "`results/notebooks_cpu.json`: cpu (x86_64, 2 threads), torch 2.14.1, commit abc1234, 2026-11-28." in block
    assert readme_results.notebooks_block(tmp_path / "none").endswith("No record yet.\n")


def test_prepare_block_shows_each_notebooks_live_time_and_what_went_wrong(tmp_path):
    cells = [{"cell": 3, "seconds": 0.4, "line": "import torch"}, {"cell": 9, "seconds": 12.6, "line": "plot(results)"}]
    record = {"profile": "cpu", "ready": False,
              "notebooks": {"00_the_problem": {"first_pass": {"seconds": 230.2}, "live": {"seconds": 20.5, "cells": cells, "retrained": []}},
                            "03_distillation": {"first_pass": {"seconds": 1100.0},
                                                "live": {"seconds": 300.0, "cells": cells, "retrained": ["cpu/teacher"]}}},
              "device": "cpu (x86_64, 2 threads)", "torch": "2.14.1", "commit": "abc1234", "date": "2026-11-28T10:00:00+00:00"}
    (tmp_path / "prepare_cpu.json").write_text(json.dumps(record))
    block = readme_results.prepare_block(tmp_path)
    assert "| 00_the_problem | 230 s | 20 s | cell 9 13 s (plot(results)) |" in block
    assert "| 03_distillation | 1100 s | 300 s | TRAINED AGAIN: cpu/teacher |" in block
    assert block.endswith("cpu profile, **not ready**: see the last column. `results/prepare_cpu.json`: cpu (x86_64, "
                          "2 threads), torch 2.14.1, commit abc1234, 2026-11-28.\n")
    assert readme_results.prepare_block(tmp_path / "none") == "No record yet.\n"


def test_finetune_block_shows_the_seeds_summary_and_its_source_or_that_none_is_there(tmp_path):
    assert readme_results.finetune_block(tmp_path) == "No `results/finetune_resolution/cpu/` results yet.\n"
    folder = tmp_path / "finetune_resolution" / "cpu"
    folder.mkdir(parents=True)
    for seed, (at_48, control) in enumerate([(38.0, 43.0), (39.0, 43.5)]):
        student = {"own_size": 42.0, "bicubic": {"val_acc": 35.0, "norm_ratio": 0.97},
                   "bilinear": {"val_acc": 33.0, "norm_ratio": 0.84}}
        record = {"seed": seed, "profile": "cpu", "size": 48, "settings": {"epochs": 6},
                  "before": {"student": student, "teacher": {"own_size": 51.0, "enlarged": 34.0, "enlarged_resized": 50.0}},
                  "finetuned": {"48px": {"val_acc": at_48}, "32px": {"val_acc": control},
                                "48px_teacher_enlarged": {"val_acc": 32.0}},
                  "device": "cpu (x86_64, 2 threads)", "torch": "2.14.1", "commit": "abc1234", "date": "2026-11-29T01:00:00",
                  "seconds": 600.0 + 60 * seed}
        (folder / f"seed{seed}.json").write_text(json.dumps(record))
    block = readme_results.finetune_block(tmp_path)
    assert block.startswith("```\n2 seed(s), profile cpu") and "38.50 ± 0.50" in block
    assert "-4.75 ± 0.25" in block and "commit abc1234" in block and "10-11 min per seed" in block


def test_weight_average_block_shows_the_seeds_summary_and_its_source_or_that_none_is_there(tmp_path):
    assert readme_results.weight_average_block(tmp_path) == "No `results/weight_average/cpu/` results yet.\n"
    folder = tmp_path / "weight_average" / "cpu"
    folder.mkdir(parents=True)
    for seed, (model, average) in enumerate([(30.0, 31.0), (32.0, 34.0)]):
        record = {"seed": seed, "profile": "cpu", "total_steps": 1860,
                  "model": {"val_acc": model, "test_acc": model, "val_acc_per_epoch": [model]},
                  "averages": {"DeiT's share of training": {"decay": 0.9919, "val_acc": average, "test_acc": average,
                                                            "val_acc_per_epoch": [average]}},
                  "device": "cpu (x86_64, 1 threads)", "torch": "2.14.1", "commit": "abc1234",
                  "date": "2026-11-29T04:00:00", "seconds": 540.0 + 60 * seed}
        (folder / f"seed{seed}.json").write_text(json.dumps(record))
    block = readme_results.weight_average_block(tmp_path)
    assert block.startswith("```\n2 seed(s), profile cpu, 1860 steps") and "32.50 ± 1.50" in block
    assert "+1.50 ± 0.50" in block and "commit abc1234" in block and "9-10 min per seed" in block
