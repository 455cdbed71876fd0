"""`python -m helpers prepare`: a class's notebooks trained once, then rehearsed without training."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from helpers.constants import NOTEBOOKS, REPO
from helpers.data import data_root


def command(args) -> list[str]:
    return [sys.executable, "-m", "helpers", "prepare", "--profile", "ci", "--no-progress", *map(str, args)]


def prepare(args, runs, cwd=REPO, **env) -> subprocess.CompletedProcess:
    return subprocess.run(command(args), cwd=cwd, env={**os.environ, "DEIT_RUNS": str(runs), **env},
                          capture_output=True, text=True, timeout=600)


def notebook(path: Path, *sources: str) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    return path


def test_the_first_pass_trains_and_the_rehearsal_reuses_every_run(tmp_path):
    runs, course_notebook = tmp_path / "runs", NOTEBOOKS / "00_the_problem.ipynb"
    stored = course_notebook.read_bytes()
    done = prepare([course_notebook, "--output", tmp_path / "prepare.json"], runs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ready: in the rehearsal no cell trained and none raised" in done.stdout
    assert (runs / "ci" / "baseline" / "last.pt").is_file()  # the first pass trained notebook 00's baseline
    record = json.loads((tmp_path / "prepare.json").read_text())
    passes = record["notebooks"]["00_the_problem"]
    assert record["ready"] and record["profile"] == "ci" and record["commit"]
    assert passes["live"]["retrained"] == [] and "error" not in passes["live"]
    code_cells = [i for i, c in enumerate(nbformat.read(course_notebook, 4).cells)
                  if c.cell_type == "code"]
    assert [c["cell"] for c in passes["live"]["cells"]] == code_cells  # every code cell timed
    copy = nbformat.read(runs / "ci" / "notebooks" / "00_the_problem.ipynb", 4)
    assert sum(len(c.get("outputs", [])) for c in copy.cells) > 0  # the executed copy, outputs kept
    assert course_notebook.read_bytes() == stored  # the course's own notebook keeps its stored outputs


def test_a_cell_that_trains_again_raises_or_hangs_is_named_and_the_class_is_not_ready(tmp_path):
    # Paths relative to where prepare starts, while each kernel runs in its notebook's own folder
    runs, folder = tmp_path / "runs", tmp_path / "notebooks"
    folder.mkdir()
    trains = notebook(folder / "trains_every_time.ipynb",
                      "import os, pathlib, time\n"
                      "run = pathlib.Path(os.environ['DEIT_RUNS']) / 'ci' / 'uncached'\n"
                      "run.mkdir(parents=True, exist_ok=True)\n"
                      "(run / 'last.pt').write_text(str(time.time_ns()))")
    raises = notebook(folder / "raises.ipynb", "print('before')", "1 / 0", "print('never')")
    # 7 s in the first pass, which has no time limit; hangs in the rehearsal, which has
    hangs = notebook(folder / "hangs.ipynb", "import pathlib, time\nagain = pathlib.Path('ran_once')\n"
                                             "time.sleep(600 if again.exists() else 7)\nagain.touch()")
    done = prepare([trains.relative_to(tmp_path), raises, hangs, "--cell-timeout-s", 5], "runs", cwd=tmp_path,
                   DEIT_DATA=os.path.relpath(data_root(), tmp_path))
    assert done.returncode == 1
    assert "TRAINED AGAIN: ci/uncached" in done.stdout
    assert "RAISED: ZeroDivisionError: division by zero" in done.stdout
    assert "RAISED: CellTimeout: ran past --cell-timeout-s 5 s" in done.stdout
    assert re.search(r"^first pass, hangs: \d+ s$", done.stdout, re.M)  # no limit there: its 7 s passed
    assert "NOT READY" in done.stdout
    assert "first pass, raises: " in done.stdout and "raised: ZeroDivisionError" in done.stdout
    copy = nbformat.read(runs / "ci" / "notebooks" / "raises.ipynb", 4)
    assert copy.cells[1].outputs[0]["ename"] == "ZeroDivisionError"  # the copy shows the traceback


def test_missing_data_stops_it_before_any_notebook_runs(tmp_path):
    runs = tmp_path / "runs"
    done = prepare([], runs, DEIT_DATA=str(tmp_path / "no-data"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "python -m helpers data extract" in done.stderr
    assert not runs.exists()


def test_ctrl_c_interrupts_the_running_cell_keeps_the_copy_and_says_how_to_go_on(tmp_path):
    runs = tmp_path / "runs"
    slow = notebook(tmp_path / "slow.ipynb", "import pathlib, time\npathlib.Path('started').touch()\ntime.sleep(120)",
                    "print('never')")
    process = subprocess.Popen(command([slow]), cwd=REPO, env={**os.environ, "DEIT_RUNS": str(runs)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)  # long before the cell's 120 s: the cell was interrupted
    assert process.returncode == 130, out + err
    assert f"Stopped in slow. The epochs finished so far are kept in {runs}" in err
    copy = nbformat.read(runs / "ci" / "notebooks" / "slow.ipynb", 4)
    assert copy.cells[0].outputs[-1]["ename"] == "KeyboardInterrupt" and not copy.cells[1].get("outputs")
