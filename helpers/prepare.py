"""Prepare a class: run the notebooks once in a profile, so that no cell trains on stage.

    python -m helpers prepare --profile cpu                  # the day before, on the class's machine
    python -m helpers prepare --profile cpu notebooks/03_distillation.ipynb

Every training run in the notebooks is checkpointed under the runs folder, and a finished run
returns at once. So the first pass trains what the notebooks train (on 2 CPU cores in the cpu
profile, about 35 minutes: results/prepare_cpu.json) and leaves it there; Ctrl-C interrupts the
running cell, and the same command goes on where it stopped. The second pass, the rehearsal,
runs each notebook again as the class will see it and times every cell. A file it writes under
the runs folder means a cell trained again, and the run is named. The executed notebooks are
saved in runs/<profile>/notebooks/ (under DEIT_RUNS when set), to open if something goes wrong live.

The data are checked before any kernel starts: a missing or incomplete copy stops it at once,
with the fix. `--output FILE` keeps the timings as JSON with provenance.
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from helpers.constants import RUNS, RUNS_ENV
from helpers.errors import make_folder, reports_errors
from helpers.notebooks import NotebookPathError, read_notebook

SLOW_CELLS = 3  # the rehearsal's slowest cells, per notebook, in the report


def first_line(cell) -> str:
    """What a cell is, in one line: its first line that is not an nbval marker."""
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("# NBVAL")]
    return lines[0][:70] if lines else ""


class Stopped(Exception):
    """Ctrl-C during a notebook: its running cell was interrupted, as by Jupyter's stop button."""


def execute_timed(path: Path, save_to: Path, cell_timeout_s: float | None, progress: bool) -> dict:
    """Run one notebook top to bottom in the environment's profile and save the executed copy;
    {"seconds", "cells": [{"cell", "seconds", "line"}], "error"?}. Stopped after Ctrl-C."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError
    from tqdm import tqdm

    nb = read_notebook(path)
    started, cells, interrupted = {}, [], []
    bar = tqdm(total=sum(c.cell_type == "code" for c in nb.cells), desc=path.stem, unit="cell",
               disable=not progress, leave=False)

    def interrupt():
        interrupted.append(True)
        reply = client.km.interrupt_kernel()
        if inspect.isawaitable(reply):
            asyncio.ensure_future(reply)

    def on_start(cell, cell_index, **_):
        started[cell_index] = time.perf_counter()
        try:  # Ctrl-C interrupts the cell (training keeps its finished epochs); nbclient's own handler
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupt)  # kills the kernel
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            pass

    def on_done(cell, cell_index, **_):
        cells.append({"cell": cell_index, "seconds": round(time.perf_counter() - started[cell_index], 1),
                      "line": first_line(cell)})
        bar.update()

    # A cell past the time limit is interrupted and fails, as after Ctrl-C; the kernel is not killed
    late = ({"ename": "CellTimeout", "evalue": f"ran past --cell-timeout-s {cell_timeout_s:g} s", "traceback": []}
            if cell_timeout_s else None)
    client = NotebookClient(nb, timeout=cell_timeout_s, interrupt_on_timeout=True, error_on_timeout=late,
                            kernel_name="python3", on_cell_execute=on_start, on_cell_executed=on_done,
                            extra_arguments=["--log-level=ERROR"],  # no start-up warnings between the bars
                            resources={"metadata": {"path": str(path.parent)}})
    record, start = {}, time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:  # the executed copy keeps the traceback
        record["error"] = f"{err.ename}: {(err.evalue.strip().splitlines() or [''])[0]}"[:200]
    except DeadKernelError as err:
        record["error"] = str(err).strip().splitlines()[0][:200]
    finally:
        bar.close()
        nbformat.write(nb, save_to)
    if interrupted:
        raise Stopped(path.stem)
    record.update(seconds=round(time.perf_counter() - start, 1), cells=cells)
    return record


def files_under(folder: Path, leave_out: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under `folder`, except under `leave_out`."""
    if not folder.exists():
        return {}
    stats = {p: p.stat() for p in folder.rglob("*") if p.is_file() and leave_out not in p.parents}
    return {str(p.relative_to(folder)): (st.st_size, st.st_mtime_ns) for p, st in stats.items()}


def runs_written(before: dict, after: dict) -> list[str]:
    """The run folders (a file's parent) where a file appeared or changed between two snapshots."""
    return sorted({str(Path(name).parent) for name, stamp in after.items() if before.get(name) != stamp})


def live_summary(live: dict, slowest: int = SLOW_CELLS) -> str:
    """What went wrong in a notebook's rehearsal, else its slowest cells."""
    problems = ([f"RAISED: {live['error']}"] if "error" in live else []) + (
        [f"TRAINED AGAIN: {', '.join(live['retrained'])}"] if live["retrained"] else [])
    slow = sorted(live["cells"], key=lambda c: -c["seconds"])[:slowest]
    return " | ".join(problems) or "; ".join(f"cell {c['cell']} {c['seconds']:.0f} s ({c['line']})" for c in slow)


def report_line(name: str, first: dict, live: dict) -> str:
    return f"{name:<22} {first['seconds']:>9.0f} s {live['seconds']:>7.0f} s   {live_summary(live)}"


def main(argv=None) -> int:
    from helpers.profiles import PROFILES
    from helpers.cli import output_file, positive_float

    parser = argparse.ArgumentParser(prog="python -m helpers prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    parser.add_argument("--profile", choices=sorted(PROFILES), required=True,
                        help="the profile the class will use (start Jupyter with the same DEIT_PROFILE)")
    parser.add_argument("--cell-timeout-s", type=positive_float, default=None,
                        help="in the rehearsal, a cell that runs longer fails (default: no limit; the first "
                             "pass, which trains, has none)")
    parser.add_argument("--output", type=output_file, help="also write the timings here as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over each notebook's cells")
    return prepare(parser.parse_args(argv))


@reports_errors
def prepare(args) -> int:
    from helpers.data import DATA_ENV, check_data
    from helpers.files import write_json_atomically
    from helpers.notebooks import notebook_files, pythonpath_with_this_checkout
    from helpers.profiles import ENV_VAR

    notebooks = notebook_files(args.notebooks)
    same_name = sorted(stem for stem, n in Counter(p.stem for p in notebooks).items() if n > 1)
    if same_name:
        raise NotebookPathError(f"Two notebooks are called {same_name[0]}: their results and copies would mix. "
                                "Name each notebook once (two of the same name: prepare them in two calls).")
    # The kernels run in their notebooks' folders: they get absolute paths, and the profile
    for name in (RUNS_ENV, DATA_ENV):
        if os.environ.get(name):
            os.environ[name] = str(Path(os.environ[name]).expanduser().absolute())
    os.environ[ENV_VAR] = args.profile
    os.environ["PYTHONPATH"] = pythonpath_with_this_checkout()
    runs = RUNS.expanduser().absolute()
    sizes = check_data()
    copies = make_folder(runs / args.profile / "notebooks", f"Set {RUNS_ENV} to a folder that can be written")
    print(f"Profile {args.profile}; data: {sizes['train']:,} training and {sizes['test']:,} test images; "
          f"runs in {runs}; executed copies in {copies}", flush=True)
    run = lambda path, timeout: execute_timed(path.absolute(), copies / path.name, timeout, not args.no_progress)
    try:
        first = {}
        for path in notebooks:  # no time limit: this pass trains
            first[path.stem] = run(path, None)
            print(f"first pass, {path.stem}: {first[path.stem]['seconds']:.0f} s"
                  + (f", raised: {first[path.stem]['error']}" if "error" in first[path.stem] else ""), flush=True)
        live = {}
        for path in notebooks:
            before = files_under(runs, copies)
            live[path.stem] = run(path, args.cell_timeout_s)
            live[path.stem]["retrained"] = runs_written(before, files_under(runs, copies))
    except (Stopped, KeyboardInterrupt) as stop:
        print(f"\nStopped{f' in {stop}' if str(stop) else ''}. The epochs finished so far are kept in {runs}: "
              "the same command goes on from there.", file=sys.stderr)
        return 130

    print(f"\n{'notebook':<22} {'first pass':>11} {'live':>9}   slowest cells live (or what went wrong)")
    for name in first:
        print(report_line(name, first[name], live[name]))
    ready = not any("error" in r or r["retrained"] for r in live.values())
    print(f"\nReady: in the rehearsal no cell trained and none raised. For the class, start Jupyter with "
          f"{ENV_VAR}={args.profile}" + (f" and {RUNS_ENV}={runs}" if os.environ.get(RUNS_ENV) else "") + "."
          if ready else
          "\nNOT READY: see the rows above; the executed copies show each error.")
    if args.output:
        from helpers.provenance import provenance
        write_json_atomically({"benchmark": "prepare", "profile": args.profile, "ready": ready,
                               "notebooks": {name: {"first_pass": first[name], "live": live[name]} for name in first},
                               **provenance()}, args.output)
    return 0 if ready else 1
