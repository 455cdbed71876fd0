"""Re-execute notebooks in the CI profile and store their outputs in place.

    python -m helpers notebooks                 # every notebook in notebooks/
    python -m helpers notebooks notebooks/00_the_problem.ipynb

Run it before committing a changed notebook: the stored outputs of `# NBVAL_CHECK_OUTPUT`
cells are then exactly what CI reproduces. Like CI's fresh clone, the notebooks start from an
empty runs folder (a temporary one, shared by the notebooks of one call), so no checkpoint left
by earlier work changes what they print.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from helpers.constants import NOTEBOOKS


def execute(path: Path, timeout: int = 600) -> float:
    """Run one notebook top to bottom under DEIT_PROFILE=ci; save it; return seconds taken."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["DEIT_PROFILE"] = "ci"  # the kernel inherits this environment
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:  # execution counts and timings only add noise to diffs
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    import tempfile

    paths = [Path(p) for p in argv or []] or sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(f"No notebook at {missing[0]}.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="deit-notebook-runs-") as runs:
        os.environ["DEIT_RUNS"] = runs  # the kernels inherit it
        for path in paths:
            print(f"{path.name}: {execute(path):.0f} s", flush=True)
    return 0
