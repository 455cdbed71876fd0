"""Is a figure readable as a notebook stores it? Text big enough, no two labels on top of each
other, no legend over the data.

notebook_setup() runs readability_problems on every figure a cell leaves open, just before
Jupyter turns it into a PNG, and prints what it finds; tests/test_notebooks_form.py fails when
such a message is stored in a committed notebook. So every figure the course draws is checked
each time the notebooks are executed.
"""
from __future__ import annotations

import numpy as np

MIN_FONT_PT = 7  # smaller text is hard to read in a PNG at the stored size
WARNING = "Figure readability problem"


def overlapping(boxes) -> list[tuple[int, int]]:
    """Pairs (i, j) of display-space boxes that share some area (touching edges do not count)."""
    return [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes[:i])
            if min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)]


def _drawn_texts(fig) -> list:
    """The texts a draw of `fig` really puts on the canvas (not those of hidden axes or of ticks
    outside the view), found by watching Text.draw during one draw."""
    from matplotlib.text import Text

    drawn, original = {}, Text.draw

    def watched(text, renderer):
        original(text, renderer)
        if text.get_visible() and text.get_text().strip():
            drawn[id(text)] = text
    Text.draw = watched
    try:
        fig.canvas.draw()
    finally:
        Text.draw = original
    return list(drawn.values())


def _data_points(ax) -> np.ndarray:
    """Display-space points along every line (also between its vertices), band and marker of `ax`."""
    points = []
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        xy = ax.transData.transform(np.column_stack(line.get_data()).astype(float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) > 1 and line.get_linestyle() not in ("None", " ", ""):
            steps = np.linspace(0, 1, 16)[:, None, None]  # points between consecutive vertices
            xy = (xy[:-1] + steps * (xy[1:] - xy[:-1])).reshape(-1, 2)
        points.append(xy)
    for collection in ax.collections:
        if not collection.get_visible():
            continue
        transform = collection.get_transform()
        for path in collection.get_paths():
            points.append(transform.transform(path.vertices))
        offsets = collection.get_offsets()
        if len(offsets) and collection.get_offset_transform() is not None:
            points.append(collection.get_offset_transform().transform(offsets))
    return np.concatenate(points) if points else np.zeros((0, 2))


def _covers_data(box, ax, renderer) -> bool:
    points = _data_points(ax)
    inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1))
    bars = [p.get_window_extent(renderer) for p in ax.patches if p.get_visible()]
    return bool(inside.any()) or any(overlapping([box, bar]) for bar in bars)


def readability_problems(fig) -> list[str]:
    """What makes `fig` hard to read, drawn as it is: text under MIN_FONT_PT points, text on top of
    other text (tick labels, titles, annotations), and legends that cover lines, bands, markers or bars."""
    texts = _drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    problems = [f"text {t.get_text()!r} is {t.get_fontsize():.1f} pt (at least {MIN_FONT_PT})"
                for t in texts if t.get_fontsize() < MIN_FONT_PT - 1e-9]
    boxes = [t.get_window_extent(renderer) for t in texts]
    problems += [f"text {texts[i].get_text()!r} overlaps {texts[j].get_text()!r}" for i, j in overlapping(boxes)]
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend.get_visible() and _covers_data(legend.get_window_extent(renderer), ax, renderer):
            title = ax.get_title() or f"axes {fig.axes.index(ax)}"
            problems.append(f"the legend of {title!r} covers data")
    return problems


def check_open_figures() -> None:
    """Print a warning for each problem of each open pyplot figure (run after every cell)."""
    import matplotlib.pyplot as plt
    for number in plt.get_fignums():
        for problem in readability_problems(plt.figure(number)):
            print(f"{WARNING} (figure {number}): {problem}")


def install_in_ipython() -> bool:
    """Check the figures after every cell, before the inline backend stores and closes them.
    Returns False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    callbacks = shell.events.callbacks["post_execute"]
    if check_open_figures not in callbacks:
        callbacks.insert(0, check_open_figures)  # first: the inline backend's flush closes the figures
    return True
