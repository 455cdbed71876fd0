"""Every notebook top to bottom on this machine, checked by nbval as CI checks, in a chosen profile.

    python -m benchmarks.notebook_check --output results/notebooks_gpu.json [NOTEBOOK ...]
    python -m benchmarks.notebook_check --profile cpu --cell-timeout-s 7200 --output /tmp/cpu.json

Students run the notebooks on a laptop CPU or on one cloud GPU, and CI only runs the ci profile
on CPUs. This runs each notebook through nbval as CI does (lax mode: the stored outputs of
`# NBVAL_CHECK_OUTPUT` cells are compared), on the device helpers.train.pick_device picks (the
GPU plan's notebooks_gpu stage: on a GPU, in the ci profile, so that all of them take minutes).
In another profile the stored ci outputs are expected to differ: there, the cells that raised
are the finding. Each notebook's record (cells passed and failed, and for each failed cell
whether it raised or printed other output, with the end of nbval's report) is written as soon
as it ends; a notebook already recorded in the output file is not run again, so a run cut
short goes on where it stopped. It exits 0 once every notebook has a record, failed or not:
the records are the measurement.

On the GPU machines of the course's windows nbval and Jupyter's kernel are not installed:
`bash benchmarks/device_wheels.sh` fetches them beforehand (see the README's GPU window).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from helpers.cli import output_file, positive_float
from helpers.constants import NOTEBOOKS, REPO
from helpers.notebooks import pythonpath_with_this_checkout
from helpers.profiles import PROFILES

NEEDED = ("nbval", "ipykernel", "ipywidgets", "nbclient")  # importable in this Python, for the kernel too
REPORT_CHARS = 2000  # of each failed cell's report: its end holds the error or the differing output
# Terminal colours, as escapes or as JUnit XML writes them (it cannot hold the escape character)
COLOURS = re.compile(r"(\x1b|#x1B)\[[0-9;]*m")


def missing_packages() -> list[str]:
    import importlib.util
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def failure_kind(report: str) -> str:
    """nbval's two kinds of failed cell: it raised (or timed out), or its checked output differs."""
    return "output differs" if "Cell outputs differ" in report else "raised"


def cell_records(junit_xml: Path) -> tuple[int, list[dict]]:
    """(cells passed, [{cell, kind, report} for each failed cell]) from pytest's JUnit XML."""
    passed, failed = 0, []
    for case in ElementTree.parse(junit_xml).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            passed += case.find("skipped") is None
            continue
        report = COLOURS.sub("", problem.text or problem.get("message") or "")
        failed.append({"cell": case.get("name"), "kind": failure_kind(report), "report": report[-REPORT_CHARS:]})
    return passed, failed


def run_notebook(path: Path, runs: Path, timeout_s: float, profile: str = "ci", cell_timeout_s: float = 600) -> dict:
    """One notebook through nbval in `profile`; its record."""
    with tempfile.TemporaryDirectory(prefix="nbval_") as scratch:
        junit = Path(scratch) / "cells.xml"
        # TQDM_DISABLE: no progress bars (helpers.train.bars_wanted; the ci profile has none). nbval
        # reads a cell's messages only once the cell has ended, and it then missed the end of a cell
        # that had drawn 120 bars: "Timeout of 5 seconds exceeded waiting for output" (notebook 02
        # in the cpu profile; 120 bars of tqdm alone in one cell do the same). JupyterLab reads
        # them as they come.
        env = {**os.environ, "DEIT_PROFILE": profile, "DEIT_RUNS": str(runs), "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1",
               "PYTHONIOENCODING": "utf-8",  # what the pipe is read as, whatever the system's code page
               "PYTHONPATH": pythonpath_with_this_checkout()}
        # -c: the repository's pytest settings (nbval's lax mode, sanitizers), for a notebook anywhere;
        # --noconftest: the tests' conftest.py would set the ci profile
        command = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--noconftest", "-q", str(path),
                   f"--junitxml={junit}", f"--nbval-cell-timeout={cell_timeout_s:.0f}"]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, encoding="utf-8",
                                  errors="replace", timeout=timeout_s)
            tail = (done.stdout + done.stderr)[-REPORT_CHARS:]
        except subprocess.TimeoutExpired:
            return {"passed": False, "seconds": round(time.perf_counter() - started, 1),
                    "error": f"stopped after {timeout_s:.0f} s"}
        seconds = round(time.perf_counter() - started, 1)
        if not junit.exists():  # pytest itself failed before any cell ran
            return {"passed": False, "seconds": seconds, "error": tail}
        cells_passed, failed = cell_records(junit)
    return {"passed": done.returncode == 0 and not failed, "seconds": seconds, "cells_passed": cells_passed,
            "failed_cells": failed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notebook_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    parser.add_argument("--output", type=output_file, required=True, help="the JSON record (added to, if it exists)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci", help="DEIT_PROFILE for the notebooks (default ci)")
    parser.add_argument("--cell-timeout-s", type=positive_float, default=600, help="for each cell (default 600)")
    parser.add_argument("--timeout-s", type=positive_float, help="for each notebook (default: 3 x --cell-timeout-s)")
    args = parser.parse_args(argv)
    missing = missing_packages()
    if missing:
        print(f"Not installed here: {', '.join(missing)}. Install requirements.txt, or on a GPU window's "
              "machine carry the wheels that `bash benchmarks/device_wheels.sh` fetches (README, A GPU window).")
        return 2
    notebooks = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    absent = [str(p) for p in notebooks if not p.is_file()]
    if absent:
        parser.error(f"no such notebook: {', '.join(absent)}")

    from helpers.files import read_result, write_json_atomically
    from helpers.provenance import provenance
    from helpers.readme_results import notebook_cell
    from helpers.train import pick_device

    record = read_result(args.output) if args.output.exists() else {"notebooks": {}}
    with tempfile.TemporaryDirectory(prefix="nbval_runs_") as runs:  # a fresh clone's empty runs folder
        for path in notebooks:
            if path.stem in record["notebooks"]:
                print(f"{path.stem}: recorded already", flush=True)
                continue
            result = run_notebook(path.absolute(), Path(runs), args.timeout_s or 3 * args.cell_timeout_s,
                                  args.profile, args.cell_timeout_s)
            record["notebooks"][path.stem] = result
            record["complete"] = all(p.stem in record["notebooks"] for p in notebooks)
            record.update(benchmark="notebook_check", profile=args.profile, device_type=pick_device().type, **provenance())
            write_json_atomically(record, args.output)
            print(f"{path.stem}: {notebook_cell(record, path.stem).replace('**', '')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
