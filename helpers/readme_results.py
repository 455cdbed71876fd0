"""The README's tables of reference results, written from the committed result files.

    python -m helpers readme           # rewrite every marked block in README.md
    python -m helpers readme --check   # exit 1 if a block differs from results/

Each block sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->`; tests/test_readme_results.py
fails when a block no longer matches results/, so a number in those tables always comes from
a committed result file.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from helpers import ablate
from helpers.constants import REPO, RESULTS
from helpers.crossover import SETTINGS, describe_crossover, load_crossover

README = REPO / "README.md"
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.strip() for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ablation_block(profile_name: str, results_dir: Path = ablate.RESULTS) -> str:
    """The summary and the contributions of one profile's ablation, as markdown."""
    found = ablate.load_results(profile_name, results_dir)
    names = list(ablate.variants())
    results = [r for r in found if r["variant"] in names]
    if not results:
        return f"No `results/ablation/{profile_name}/` results yet.\n"
    contributions = ablate.contributions(results)
    table_8 = ablate.table_8_rows(found)
    return "\n\n".join([
        f"{len(results)} of {len(names) * ablate.SEEDS} runs ({len(names)} variants × {ablate.SEEDS} seeds); "
        "final validation and test accuracy (%), mean ± s.e. over seeds:",
        markdown_table(ablate.SUMMARY_HEADER, [ablate.summary_cells(r) for r in ablate.summarize(results, names)]),
        markdown_table(ablate.CONTRIBUTIONS_HEADER, [ablate.contribution_cells(r) for r in contributions]),
        ablate.contributions_footnote(contributions) + ".",
        *(["Other rows of the paper's Table 8, run with the same protocol and seeds beside `full`:",
           markdown_table(ablate.TABLE_8_HEADER, [ablate.table_8_cells(r) for r in table_8]),
           ablate.table_8_footnote(table_8) + "."] if table_8 else []),
    ]) + "\n"


def crossover_block(folder: Path) -> str:
    return "\n".join(f"> {line}" for line in describe_crossover(load_crossover(folder), folder).splitlines()) + "\n"


# benchmarks/notebook_check.py's records: (file, column heading)
NOTEBOOK_CHECKS = (("notebooks_cpu.json", "cpu profile, CPU"), ("notebooks_gpu.json", "ci profile, GPU"))


def notebook_cell(record: dict | None, notebook: str) -> str:
    """One notebook's outcome in one record: whether a cell raised, how long it ran."""
    result = (record or {}).get("notebooks", {}).get(notebook)
    if result is None:
        return "not run yet"
    if "error" in result:
        return "did not finish: " + result["error"].strip().splitlines()[-1][:80]
    failed = result["failed_cells"]
    raised = [c["cell"] for c in failed if c["kind"] == "raised"]
    differ = len(failed) - len(raised)
    outcome = f"**raised** in {', '.join(raised)}" if raised else "ran top to bottom"
    return f"{outcome}, {result['seconds']:.0f} s" + (f"; {differ} checked outputs differ from CI's" if differ else "")


def notebooks_block(results_dir: Path = RESULTS) -> str:
    """Every notebook in each notebook_check record (cpu profile on a CPU, ci profile on a GPU)."""
    from helpers.constants import NOTEBOOKS
    from helpers.files import read_result
    records = [read_result(results_dir / name) if (results_dir / name).exists() else None for name, _ in NOTEBOOK_CHECKS]
    notebooks = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    table = markdown_table(["notebook", *(heading for _, heading in NOTEBOOK_CHECKS)],
                           [[name, *(notebook_cell(r, name) for r in records)] for name in notebooks])
    sources = [source(name, r) for (name, _), r in zip(NOTEBOOK_CHECKS, records) if r]
    return table + "\n\n" + ("; ".join(sources) + "." if sources else "No record yet.") + "\n"


def source(name: str, record: dict) -> str:
    """Where a record in results/ came from, in one line."""
    return f"`results/{name}`: {record['device']}, torch {record['torch']}, commit {record['commit']}, {record['date'][:10]}"


def prepare_block(results_dir: Path = RESULTS, name: str = "prepare_cpu.json") -> str:
    """`python -m helpers prepare`'s record: each notebook's first pass, and its rehearsal."""
    from helpers.files import read_result
    from helpers.prepare import live_summary
    if not (results_dir / name).exists():
        return "No record yet.\n"
    record = read_result(results_dir / name)
    rows = [[notebook, f"{passes['first_pass']['seconds']:.0f} s", f"{passes['live']['seconds']:.0f} s",
             live_summary(passes["live"], slowest=1).replace("|", "/")]
            for notebook, passes in record["notebooks"].items()]
    verdict = ("ready: in the rehearsal no cell trained and none raised" if record["ready"]
               else "**not ready**: see the last column")
    return (markdown_table(["notebook", "first pass (trains)", "live (rehearsal)", "slowest cell live"], rows)
            + f"\n\n{record['profile']} profile, {verdict}. {source(name, record)}.\n")


def per_seed_block(name: str, results: list[dict], describe, timed: str) -> str:
    """A benchmark's per-seed results in results/<name>/: its summary, where they came from, and
    how long a seed took (`timed` says what that covers)."""
    if not results:
        return f"No `results/{name}/` results yet.\n"
    minutes = sorted(r["seconds"] / 60 for r in results)
    return (f"```\n{describe(results)}\n```\n\n" + source(f"{name}/", results[0])
            + f"; {minutes[0]:.0f}-{minutes[-1]:.0f} min per seed, {timed} (`seconds`).\n")


def finetune_block(results_dir: Path = RESULTS, profile_name: str = "cpu") -> str:
    """benchmarks/finetune_resolution.py's seeds: fine-tuning at 48 px against 32 px."""
    from helpers.resolution import describe_finetuning, finetune_results
    return per_seed_block(f"finetune_resolution/{profile_name}",
                          finetune_results(profile_name, results_dir / "finetune_resolution"),
                          describe_finetuning, "training and fine-tuning")


def weight_average_block(results_dir: Path = RESULTS, profile_name: str = "cpu") -> str:
    """benchmarks/weight_average.py's seeds: the model against averages of its weights."""
    from helpers.weight_average import describe_weight_averages, weight_average_results
    return per_seed_block(f"weight_average/{profile_name}",
                          weight_average_results(profile_name, results_dir / "weight_average"),
                          describe_weight_averages, "training with the three averages")


def blocks(results_dir: Path = RESULTS) -> dict[str, callable]:
    """Block name -> the function that writes it."""
    return {"notebooks": lambda: notebooks_block(results_dir), "prepare-cpu": lambda: prepare_block(results_dir),
            "ablation-cpu": lambda: ablation_block("cpu", results_dir / "ablation"),
            "ablation-full": lambda: ablation_block("full", results_dir / "ablation"),
            "finetune-cpu": lambda: finetune_block(results_dir),
            "weight-average-cpu": lambda: weight_average_block(results_dir),
            **{block_name(folder): (lambda folder=folder: crossover_block(results_dir / folder.relative_to(RESULTS)))
               for folder in SETTINGS}}


def block_name(crossover_folder: Path) -> str:
    """results/crossover -> "crossover", results/crossover/50pc-800ep -> "crossover-50pc-800ep"."""
    return "-".join(crossover_folder.relative_to(RESULTS).parts)


def rewrite(text: str, writers: dict[str, callable]) -> str:
    """`text` with every marked block's body written afresh; an unknown block name is an error."""
    def body(match):
        name = match["name"]
        if name not in writers:
            raise ValueError(f"README block 'results:{name}' has no writer; known: {', '.join(writers)}")
        return match[1] + writers[name]() + match[4]
    return BLOCK.sub(body, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers readme", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether README.md is up to date")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    new = rewrite(text, blocks())
    if args.check:
        if new != text:
            print("README.md's result tables differ from results/: run python -m helpers readme")
            return 1
        print("README.md's result tables match results/")
        return 0
    README.write_text(new, encoding="utf-8")
    print("README.md: result tables", "rewritten" if new != text else "already up to date")
    return 0
