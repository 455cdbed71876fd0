"""The readability check that runs on every figure the notebooks draw."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers.figure_check import WARNING, readability_problems  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def curves(legend_outside: bool):
    fig, ax = plt.subplots(figsize=(5, 3))
    for k in range(3):
        ax.plot(range(10), [k + 0.5 * x for x in range(10)], label=f"run {k}")
    if legend_outside:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(loc="center")  # on top of the lines
    ax.set(xlabel="epoch", ylabel="accuracy %", title="curves")
    fig.tight_layout()
    return fig


def test_a_tidy_figure_has_no_problems():
    assert readability_problems(curves(legend_outside=True)) == []


def test_a_legend_on_the_lines_is_found():
    assert readability_problems(curves(legend_outside=False)) == ["the legend of 'curves' covers data"]


def test_a_legend_on_bars_is_found_and_one_beside_them_is_not():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(range(4), [9, 9, 9, 9], label="accuracy")
    ax.set_ylim(0, 10)
    ax.legend(loc="upper center")
    assert any("covers data" in p for p in readability_problems(fig))
    ax.set_ylim(0, 20)  # room above the bars
    assert readability_problems(fig) == []


def test_overlapping_tick_labels_and_small_text_are_found():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(range(8), range(8))
    ax.set_xticks(range(8), [f"a long variant name {i}" for i in range(8)])
    ax.text(1, 5, "tiny note", fontsize=5)
    problems = readability_problems(fig)
    assert any("overlaps 'a long variant name" in p for p in problems)
    assert "text 'tiny note' is 5.0 pt (at least 7)" in problems
    ax.set_xticks(range(8), [f"v{i}" for i in range(8)])
    ax.texts[0].set_fontsize(8)
    assert readability_problems(fig) == []


def test_a_notebook_prints_the_problem_under_the_cell_that_drew_it(tmp_path):
    """Through the real kernel and inline backend, as `python -m helpers notebooks` runs them:
    the check must see the figure before the backend stores and closes it."""
    import nbformat

    from helpers.notebooks import execute

    path = tmp_path / "figure.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import helpers\nimport matplotlib.pyplot as plt\nprofile = helpers.notebook_setup()"),
        nbformat.v4.new_code_cell("_ = plt.plot([0, 1], [0, 1], label='a line')\n_ = plt.legend(loc='center')"),
        nbformat.v4.new_code_cell("_ = plt.plot([0, 1], [0, 1], label='a line')\n_ = plt.legend(loc='lower right')"),
    ]), path)
    execute(path, timeout=120)
    cells = json.loads(path.read_text())["cells"]
    text = ["".join(o.get("text", "")) for o in cells[1]["outputs"]]
    assert any(WARNING in t and "covers data" in t for t in text)
    assert any("image/png" in o.get("data", {}) for o in cells[1]["outputs"])  # still drawn
    assert not any(WARNING in "".join(o.get("text", "")) for o in cells[2]["outputs"])


def test_live_curves_update_one_figure_and_keep_what_the_cell_printed(tmp_path):
    """A training cell prints its estimate (and any warning) before the first epoch: redrawing the
    curves after every epoch must not erase it, and the cell ends with one figure, the last."""
    import nbformat

    from helpers.notebooks import execute

    path = tmp_path / "live.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from helpers.plots import LiveCurves\n"
                                  "print('estimated time: 1 min')\n"
                                  "live = LiveCurves('a run')\n"
                                  "history = []\n"
                                  "for epoch in range(1, 4):\n"
                                  "    history.append(dict(epoch=epoch, train_loss=2.0 / epoch, val_loss=2.1 / epoch,\n"
                                  "                        val_acc=10.0 * epoch))\n"
                                  "    print(f'epoch {epoch} done')\n"
                                  "    live(history)"),
    ]), path)
    execute(path, timeout=120)
    outputs = json.loads(path.read_text())["cells"][0]["outputs"]
    texts = ["".join(o.get("text", "")) for o in outputs]
    figures = [i for i, o in enumerate(outputs) if "image/png" in o.get("data", {})]
    assert any("estimated time: 1 min" in t for t in texts)
    assert len(figures) == 1  # one figure, updated in place
    # the figure sits where LiveCurves was made, above the epoch lines, which do not push it down
    assert figures[0] < next(i for i, t in enumerate(texts) if "epoch 1 done" in t)
