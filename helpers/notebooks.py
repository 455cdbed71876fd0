"""Re-execute notebooks in the CI profile and store their outputs in place.

    python -m helpers notebooks                 # every notebook in notebooks/
    python -m helpers notebooks notebooks/00_the_problem.ipynb

Run it before committing a changed notebook: the stored outputs of `# NBVAL_CHECK_OUTPUT`
cells are then exactly what CI reproduces, and no widget state is saved (strip_widget_state).
Like CI's fresh clone, the notebooks start from an empty runs folder (a temporary one, shared by
the notebooks of one call), so no checkpoint left by earlier work changes what they print.

After changing a helper, rerun the notebooks its docstring's "Notebooks:" line names (a test
keeps those lines equal to what the notebooks' code uses directly).
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from helpers.constants import NOTEBOOKS, REPO, RUNS_ENV
from helpers.errors import CourseError, reports_errors

TAG = "Notebooks:"  # the docstring line naming the notebooks that use a helper
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
RUN_TO_SHOW = "Run this cell to show the interactive explorer."


def strip_widget_state(nb) -> None:
    """Drop saved widget state, in place, so a committed notebook opens cleanly.

    JupyterLab draws saved widgets only in a trusted notebook; elsewhere it shows the text
    fallback, which nbclient fills with a Python repr (`interactive(children=(Dropdown(...`).
    The state also holds copies of the widgets' outputs (images), and a re-run recreates it anyway.
    So: no `metadata.widgets`, and every widget output keeps only a short text saying to run it.
    """
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                data["text/plain"] = RUN_TO_SHOW


def pythonpath_with_this_checkout() -> str:
    """PYTHONPATH with this checkout first, for the kernels this process starts: they then import
    its helpers, not another copy's that the editable install may point at (a clone's own
    `pip install -e .`, such as CI's, moves it there)."""
    others = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO)]
    return os.pathsep.join([str(REPO), *others])  # REPO once, however often a process calls it


def execute(path: Path, timeout: int = 600) -> float:
    """Run one notebook top to bottom under DEIT_PROFILE=ci; save it; return seconds taken."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["DEIT_PROFILE"] = "ci"  # the kernel inherits this environment
    os.environ["PYTHONPATH"] = pythonpath_with_this_checkout()
    nb = read_notebook(path)
    for cell in nb.cells:  # nbformat 4.5 wants an id on every cell (a cell pasted in by hand may lack one)
        cell.setdefault("id", uuid.uuid4().hex[:8])
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:  # execution counts and timings only add noise to diffs
        cell.get("metadata", {}).pop("execution", None)
    strip_widget_state(nb)
    nbformat.write(nb, path)
    return seconds


def helpers_used(path: Path) -> set[str]:
    """The helpers functions and classes a notebook's code names directly, as
    "module.name" of the module that defines them (what its stored outputs depend on)."""
    import importlib
    import inspect
    import json
    import re

    code = "\n".join("".join(c["source"]) for c in json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
                     if c["cell_type"] == "code")
    names = set()  # (module, attribute) pairs
    aliases = {}
    for match in re.finditer(r"from helpers import ([\w ,]+)", code):
        for part in match.group(1).split(","):
            module, _, alias = part.strip().partition(" as ")
            aliases[alias or module] = module
    for match in re.finditer(r"from helpers\.(\w+) import ([\w ,]+)", code):
        names |= {(match.group(1), part.split(" as ")[0].strip()) for part in match.group(2).split(",")}
    for alias, module in aliases.items():
        names |= {(module, m) for m in re.findall(r"(?<![\w.])" + alias + r"\.(\w+)", code)}
    names |= set(re.findall(r"helpers\.(\w+)\.(\w+)", code))
    names |= {("__init__", m) for m in re.findall(r"(?<![\w.])helpers\.(\w+)(?![.\w])", code)}
    used = set()
    for module, name in names:
        owner = importlib.import_module("helpers" if module == "__init__" else f"helpers.{module}")
        obj = getattr(owner, name, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("helpers."):
            used.add(f"{obj.__module__.removeprefix('helpers.')}.{obj.__qualname__}")
    return used


def notebooks_using() -> dict[str, list[str]]:
    """{"module.name": ["00", "03"]}: which notebooks' stored outputs a change to a helper touches."""
    users: dict[str, list[str]] = {}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for name in helpers_used(path):
            users.setdefault(name, []).append(path.name[:2])
    return users


class NotebookPathError(CourseError, ValueError):
    """A path given as a notebook is not a notebook file."""


def read_notebook(path: Path):
    """The notebook at path (nbformat 4), or NotebookPathError naming it when it is not valid JSON,
    such as after a merge conflict: read before its kernel starts, and left as it is."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except ValueError as err:  # nbformat's NotJSONError is one
        raise NotebookPathError(f"{path} cannot be read as a notebook ({type(err).__name__}: "
                                f"{str(err).splitlines()[0][:120]}). Restore it (git checkout -- {path}) or "
                                f"mend it (a merge conflict leaves <<<<<<< lines in it).") from None


def notebook_files(paths) -> list[Path]:
    """The notebooks named, or every numbered one in notebooks/ when none is; each one readable."""
    paths = list(paths) or sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
    wrong = [p for p in paths if not Path(p).is_file() or Path(p).suffix != ".ipynb"]
    if wrong:
        raise NotebookPathError(f"{wrong[0]} is not a notebook file (.ipynb); give a path such as "
                                "notebooks/00_the_problem.ipynb.")
    for path in paths:  # a damaged one is named before any runs
        read_notebook(Path(path))
    return [Path(p) for p in paths]


@reports_errors
def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m helpers notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks to run (default: every one in notebooks/)")
    paths = notebook_files(parser.parse_args(argv).paths)
    with tempfile.TemporaryDirectory(prefix="deit-notebook-runs-") as runs:
        os.environ[RUNS_ENV] = runs  # the kernels inherit it
        for path in paths:
            print(f"{path.name}: {execute(path):.0f} s", flush=True)
    return 0
