"""Committed notebooks open cleanly in JupyterLab, trusted or not: no saved widget state."""
import json
from pathlib import Path

import pytest

from helpers.figure_check import WARNING
from helpers.notebooks import RUN_TO_SHOW, WIDGET_VIEW, execute, strip_widget_state

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
FIX = ("Re-execute it with `python -m helpers notebooks {path}`, which strips the widget state "
       "and gives every cell an id.")


def widget_state_problems(nb: dict) -> list[str]:
    """What in a notebook would show a Python repr, or saved state, instead of a widget."""
    problems = ["metadata.widgets (saved widget state)"] if "widgets" in nb.get("metadata", {}) else []
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                problems.append(f"cell {index}: a saved widget view")
            if "interactive(children=" in "".join(data.get("text/plain", "")):
                problems.append(f"cell {index}: the `interactive(children=...` repr as its text")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_shows_no_figure_readability_problem(path):
    """notebook_setup() checks every figure after each cell (helpers.figure_check)."""
    cells = json.loads(path.read_text())["cells"]
    found = [line for index, cell in enumerate(cells) for output in cell.get("outputs", [])
             for line in "".join(output.get("text", "")).splitlines() if WARNING in line]
    assert not found, f"{path.name}: {found}. Fix the figure, then re-execute the notebook."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_cell_of_a_committed_notebook_has_an_id(path):
    """nbformat 4.5: cells without ids draw warnings now and errors in later nbformat versions."""
    cells = json.loads(path.read_text())["cells"]
    assert all(cell.get("id") for cell in cells), f"{path.name}: " + FIX.format(path=f"notebooks/{path.name}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_cell_prints_only_blank_lines(path):
    """A cell meant to print (a command's help, a table) that printed nothing but blank lines failed
    quietly, e.g. a subprocess whose output went to stderr."""
    cells = json.loads(path.read_text())["cells"]
    blank = [index for index, cell in enumerate(cells)
             if any(o["output_type"] == "stream" for o in cell.get("outputs", []))
             and not "".join("".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream").strip()]
    assert not blank, f"{path.name}: cells {blank} printed only blank lines; fix them and re-execute."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_holds_no_widget_state(path):
    problems = widget_state_problems(json.loads(path.read_text()))
    assert not problems, f"{path.name}: {'; '.join(problems)}. " + FIX.format(path=f"notebooks/{path.name}")


def test_strip_widget_state_leaves_a_run_me_text_and_keeps_other_outputs():
    image = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": ["<Figure>"]}}
    widget = {"output_type": "display_data", "metadata": {},
              "data": {WIDGET_VIEW: {"model_id": "06fa", "version_major": 2, "version_minor": 0},
                       "text/plain": ["interactive(children=(Dropdown(description='op', ..."]}}
    nb = {"metadata": {"kernelspec": {}, "widgets": {"application/vnd.jupyter.widget-state+json": {}}},
          "cells": [{"cell_type": "code", "source": "", "outputs": [image, widget]},
                    {"cell_type": "markdown", "source": "text"}]}
    assert len(widget_state_problems(nb)) == 3
    strip_widget_state(nb)
    assert widget_state_problems(nb) == []
    assert nb["metadata"] == {"kernelspec": {}}
    assert widget["data"] == {"text/plain": RUN_TO_SHOW}
    assert image["data"] == {"image/png": "iVBOR", "text/plain": ["<Figure>"]}


def test_the_repository_command_writes_notebooks_without_widget_state(tmp_path):
    """`python -m helpers notebooks` runs execute(): a live widget must come out as the run-me text."""
    import nbformat

    path = tmp_path / "widget.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import ipywidgets\nipywidgets.interact(lambda x: None, x=ipywidgets.IntSlider())")])
    nbformat.write(nb, path)
    execute(path, timeout=120)
    executed = json.loads(path.read_text())
    assert widget_state_problems(executed) == []
    data = executed["cells"][0]["outputs"][0]["data"]
    assert list(data) == ["text/plain"] and "".join(data["text/plain"]) == RUN_TO_SHOW


def test_kernels_import_this_checkouts_helpers_whatever_else_is_on_the_path(tmp_path, monkeypatch):
    """`pip install -e .` in another clone (CI's, say) moves the editable install there; stored
    outputs made with that copy's helpers would not be this checkout's. A `helpers` earlier on
    PYTHONPATH stands in for it here."""
    import nbformat

    from helpers.constants import REPO
    other = tmp_path / "other-copy" / "helpers"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("raise ImportError('the other copy was imported')\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(other.parent))
    path = tmp_path / "which.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import helpers\nprint(helpers.__file__)")]),
                   path)
    execute(path, timeout=120)
    printed = nbformat.read(path, as_version=4).cells[0].outputs[0]["text"].strip()
    assert printed == str(REPO / "helpers" / "__init__.py")
