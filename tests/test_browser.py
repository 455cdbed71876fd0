"""The notebooks as a student meets them: JupyterLab in headless Chromium, each notebook with
widgets run top to bottom (Run All), then every control moved: each dropdown choice, each slider
to both ends and back.

After each move the image under the widget must change, and no traceback and no text longer than
a few lines may appear under it. nbval runs the widget cells too, but never draws or moves a widget.

Needs Chromium and chromedriver (Debian: `sudo apt-get install chromium chromium-driver`; .ci/run
installs them) and selenium (requirements.txt). Where they are missing the test fails and says
so: CI has them, so it must run there, not skip. `pytest -s` prints how long the moves took.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LONG_TEXT_LINES = 5  # more lines than this under a widget: a leaked return value or a debug print
RENDER_TIMEOUT = 90  # seconds for one re-draw on a loaded 2-core machine
INSTALL = ("Install them: `sudo apt-get install chromium chromium-driver` (Debian/Ubuntu), "
           "`brew install --cask chromium chromedriver` (macOS), or put Chrome/Chromium "
           "and the matching chromedriver on PATH; then `pip install -r requirements.txt` for selenium.")


def widget_notebooks(folder: Path) -> list[Path]:
    """The notebooks whose code cells call ipywidgets' interact(...)."""
    return [path for path in sorted(folder.glob("*.ipynb"))
            if any(cell["cell_type"] == "code" and "interact(" in "".join(cell["source"])
                   for cell in json.loads(path.read_text())["cells"])]


def find_chromium() -> tuple[str, str]:
    """(browser, driver) paths; a test failure that says how to install them where one is missing."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    packaged = ("/usr/lib/chromium/chromedriver", "/usr/lib/chromium-browser/chromedriver")
    driver = shutil.which("chromedriver") or next((p for p in packaged if Path(p).exists()), None)
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("The browser test needs selenium. " + INSTALL)
    if not browser or not driver:
        pytest.fail(f"The browser test needs Chromium and chromedriver; found browser={browser}, "
                    f"driver={driver}. " + INSTALL)
    return browser, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lab_settings(folder: Path) -> None:
    """Every cell kept in the page (no virtual scrolling), no news or update checks (CI is offline)."""
    settings = {"notebook-extension/tracker": {"windowingMode": "none"},
                "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}
    for name, values in settings.items():
        path = folder / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def stop(process: subprocess.Popen | None) -> None:
    """Stop a process we started, by its id: with its process group where it leads one (the
    server, whose kernels are in its group)."""
    if process is None or process.poll() is not None:
        return
    kill = os.killpg if os.getpgid(process.pid) == process.pid else os.kill
    kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


COURSE_NOTEBOOKS = [f"notebooks/{p.name}" for p in widget_notebooks(REPO / "notebooks")]
SYNTHETIC = "synthetic.ipynb"  # written by write_synthetic_notebook


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The browser driver, on JupyterLab at 127.0.0.1 serving a copy of notebooks/ plus the
    synthetic notebook, in one page, with every notebook the tests check already running: in
    parallel, so that one kernel's imports overlap another's work."""
    with running_lab(tmp_path_factory.mktemp("browser")) as (driver, served):
        write_synthetic_notebook(served / SYNTHETIC)
        for path in COURSE_NOTEBOOKS + [SYNTHETIC]:
            open_notebook(driver, path)
        for path in COURSE_NOTEBOOKS + [SYNTHETIC]:
            start_run(driver, path)
        yield driver


@contextlib.contextmanager
def running_lab(tmp: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_chromium()
    served = tmp / "served"
    shutil.copytree(REPO / "notebooks", served / "notebooks", ignore=shutil.ignore_patterns("runs", ".*"))
    write_lab_settings(tmp / "settings")
    port, token = free_port(), os.urandom(16).hex()
    # OMP_NUM_THREADS=1: the notebooks' kernels run side by side on two cores, and two multi-threaded
    # PyTorch processes would slow each other many times over.
    env = dict(os.environ, DEIT_PROFILE="ci", OMP_NUM_THREADS="1", DEIT_RUNS=str(tmp / "runs"), JUPYTER_PLATFORM_DIRS="1",
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_CONFIG_DIR=str(tmp / "config"))
    server = driver = None
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={served}",
             "--ServerApp.port_retries=0", "--allow-root",  # CI containers often run as root
             # kernels talk over Unix sockets: TCP ports picked for them can be taken before they
             # bind (seen once in CI: "ZMQError: Address already in use", the kernel dead)
             "--KernelManager.transport=ipc",
             "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: commands and kernel state
             f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}"],
            cwd=REPO, env=env, stdout=(tmp / "server.log").open("w"), stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: stop() also ends the kernels it starts
        base = f"http://127.0.0.1:{port}"
        wait_for_server(base, token, server, tmp / "server.log")
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                         f"--user-data-dir={tmp / 'chromium'}"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        driver.get(f"{base}/lab?reset&token={token}")  # a fresh workspace; the token logs in
        driver.set_script_timeout(120)  # scripts that return a promise wait for it
        wait(lambda: driver.execute_script("return !!window.jupyterapp && "
                                           "window.jupyterapp.commands.hasCommand('notebook:run-cell');"),
             120, "JupyterLab to load in the browser")
        driver.execute_script("return window.jupyterapp.restored.then(() => true);")
        yield driver, served
    finally:
        if driver is not None:
            chromedriver = driver.service.process
            driver.quit()
            stop(chromedriver)  # normally gone already; its browser goes with it
        stop(server)


def wait_for_server(base: str, token: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"jupyter lab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"jupyter lab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


# JavaScript run in the page, on JupyterLab's application object (exposed by expose_app_in_browser).
# arguments[0]: the notebook's path (the panel showing it; the focused one can be another).
NOTEBOOK_JS = """const nb = window.jupyterapp && Array.from(window.jupyterapp.shell.widgets('main'))
    .find(w => w.context && w.context.path === arguments[0]);"""
STATE_JS = NOTEBOOK_JS + """
if (!nb || !nb.sessionContext || !nb.content) { return null; }
const source = c => c.model.sharedModel.getSource();
const kernel = nb.sessionContext.session && nb.sessionContext.session.kernel;
const code = nb.content.widgets.filter(c => c.model.type === 'code' && source(c).trim());
const stderr = nb.node.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
return {kernel: kernel ? kernel.status : 'none',
        pending: code.filter(c => c.model.executionCount === null).length,
        errors: Array.from(stderr).map(e => e.innerText).filter(t => t.includes('Traceback'))};"""


def wait(condition, timeout: float, what: str, poll: float = 0.3):
    """condition() until it returns something truthy; an AssertionError naming `what` at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def kernel_idle(driver, path: str, settle: float = 0.2) -> bool:
    """Idle now and still idle `settle` seconds later (a widget's message may just be on its way)."""
    if (driver.execute_script(STATE_JS, path) or {}).get("kernel") != "idle":
        return False
    time.sleep(settle)
    return driver.execute_script(STATE_JS, path)["kernel"] == "idle"


def open_notebook(driver, path: str) -> None:
    """Open a notebook in the page (its kernel starts; no need to wait for it)."""
    driver.execute_script("return window.jupyterapp.commands.execute('docmanager:open', {path: arguments[0]})"
                          ".then(() => true);", path)


def start_run(driver, path: str) -> None:
    """Start Run All on an open notebook, as a student would. Several notebooks run at once, each
    in its own kernel (one thread each: see running_lab)."""
    wait(lambda: (s := driver.execute_script(STATE_JS, path)) and s["kernel"] == "idle",
         120, f"{path} to open with an idle kernel")
    # Clearing first resets every execution count, so "no count missing" means all cells ran.
    # widgetId: the notebook a command acts on (else the focused one, which may be another).
    driver.execute_script(NOTEBOOK_JS + """return nb.sessionContext.ready.then(async () => {
        const commands = window.jupyterapp.commands, target = {widgetId: nb.id};
        await commands.execute('notebook:clear-all-cell-outputs', target);
        commands.execute('notebook:run-all-cells', target);  // not awaited
        return true; });""", path)


def wait_for_run(driver, path: str, timeout: float) -> None:
    """Until every cell has run; fails at once on a traceback."""
    def finished():
        state = driver.execute_script(STATE_JS, path)
        assert not state["errors"], f"{path}: running it raised:\n" + "\n".join(state["errors"])[-3000:]
        return state["pending"] == 0 and kernel_idle(driver, path)
    try:
        wait(finished, timeout, f"{path} to run all its cells")
    except AssertionError as error:
        if "timed out" not in str(error):
            raise
        state = driver.execute_script(STATE_JS, path)
        raise AssertionError(f"{error}: {state['pending']} code cells not run yet, "
                             f"kernel {state['kernel']}") from None


def close(driver, path: str) -> None:
    """Shut the notebook's kernel down and close it unsaved (the served copy stays as it was)."""
    driver.execute_script(NOTEBOOK_JS + """if (!nb) { return true; }
        nb.context.model.dirty = false;
        return nb.sessionContext.shutdown().then(() => { nb.dispose(); return true; });""", path)


# One call reads the whole output, so a redraw half-way cannot leave us holding stale elements.
CELL_STATE_JS = NOTEBOOK_JS + """const node = nb.content.widgets[arguments[1]].node;
const image = node.querySelector('.widget-output img');
const texts = node.querySelectorAll('.jp-OutputArea-output .jp-RenderedText');
return {image: image ? image.src : null, texts: Array.from(texts).map(e => e.innerText)};"""


def widget_state(driver, path: str, index: int) -> dict:
    """What widget cell `index` shows now: its image (the src), tracebacks, and long texts."""
    state = driver.execute_script(CELL_STATE_JS, path, index)
    texts = state["texts"]
    errors = [t for t in texts if "Traceback" in t or "Error" in t]
    return {"image": state["image"], "errors": errors,
            "long": [t for t in texts if len(t.splitlines()) > LONG_TEXT_LINES and t not in errors]}


def controls(cell) -> list[tuple[str, object, object]]:
    """(label, control, readout) of each dropdown and slider of the widget in `cell`."""
    from selenium.webdriver.common.by import By

    found = []
    for box in cell.find_elements(By.CSS_SELECTOR, ".widget-interact > .widget-dropdown, "
                                                   ".widget-interact > .widget-slider"):
        label = box.find_element(By.CSS_SELECTOR, ".widget-label").text or "(no label)"
        if "widget-dropdown" in box.get_attribute("class"):
            found.append((label, box.find_element(By.CSS_SELECTOR, "select"), None))
        else:
            found.append((label, box.find_element(By.CSS_SELECTOR, ".noUi-handle"),
                          box.find_element(By.CSS_SELECTOR, ".widget-readout")))
    return found


def moves(driver, label: str, control, readout):
    """Each move of a control, as (description, action, slider value it should reach or None):
    every other dropdown choice and back to the first; a slider to its maximum, its minimum, and
    back to where it was (so that a later control is not tried at an extreme of this one, e.g.
    seeds at drop rate 0)."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    if readout is None:
        select = Select(control)
        choices = [o.text for o in select.options]
        current = choices.index(select.first_selected_option.text)
        for index in [i for i in range(len(choices)) if i != current] + [current]:
            yield f"{label} = {choices[index]}", lambda index=index: select.select_by_index(index), None
        return
    start, shown = slider_value(control), readout.text

    def press(key):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", control)
        control.send_keys(key)

    def type_start():  # the readout is editable: type the value, Enter
        readout.click()
        readout.send_keys(Keys.CONTROL, "a")
        readout.send_keys(shown, Keys.ENTER)
    yield f"{label} at its maximum", lambda: press(Keys.END), float(control.get_attribute("aria-valuemax"))
    yield f"{label} at its minimum", lambda: press(Keys.HOME), float(control.get_attribute("aria-valuemin"))
    yield f"{label} back at {shown}", type_start, start


def slider_value(control) -> float:
    return float(control.get_attribute("aria-valuenow"))


def check_widgets(driver, path: str, run_timeout: float = 240) -> list[str]:
    """Wait for a started notebook to run all its cells, then move every control of its
    widgets; the problems found."""
    try:
        wait_for_run(driver, path, run_timeout)
        driver.execute_script(NOTEBOOK_JS + "window.jupyterapp.shell.activateById(nb.id);", path)  # visible
        cells = driver.execute_script(NOTEBOOK_JS + "return nb.content.widgets.map((c, i) => c.node"
                                      ".querySelector('.widget-interact') ? i : -1).filter(i => i >= 0);", path)
        assert cells, f"{path}: running it drew no widget (is the ipywidgets JupyterLab extension installed?)"
        return [problem for index in cells for problem in move_every_control(driver, path, index)]
    finally:
        close(driver, path)


def move_every_control(driver, path: str, index: int) -> list[str]:
    """The problems seen while moving each control of the widget in cell `index`, one move at a time."""
    cell = driver.execute_script(NOTEBOOK_JS + "return nb.content.widgets[arguments[1]].node;", path, index)
    before = widget_state(driver, path, index)
    where = f"{path}, cell {index}"
    problems = describe(where, "as drawn", before)
    started, done = time.monotonic(), 0
    for label, control, readout in controls(cell):
        for move, act, target in moves(driver, label, control, readout):
            if target is not None and math.isclose(slider_value(control), target):
                continue  # the slider already sits there
            act()
            try:
                if target is not None:  # a move that did not happen must not pass for one that changed nothing
                    wait(lambda: math.isclose(slider_value(control), target), 10, f"{move} to take effect")
                redrawn = lambda: (now := widget_state(driver, path, index))["image"] != before["image"] or now["errors"]
                wait(redrawn, RENDER_TIMEOUT, f"the image under the widget to change after {move}", poll=0.1)
                wait(lambda: kernel_idle(driver, path), RENDER_TIMEOUT, "the kernel to go idle", poll=0.1)
            except AssertionError as error:
                problems.append(f"{where}: {error}")
            before = widget_state(driver, path, index)
            problems += describe(where, move, before)
            done += 1
    print(f"{where}: {done} moves in {time.monotonic() - started:.0f} s")  # shown with -s or on failure
    if not done:  # else a widget whose controls the selectors miss would pass untested
        problems.append(f"{where}: no control of this widget was found and moved")
    return problems


def describe(where: str, when: str, state: dict) -> list[str]:
    """One line per traceback (its last line) and per long text under a widget."""
    return ([f"{where}, {when}: {t.strip().splitlines()[-1] if t.strip() else 'an error'}"
             for t in state["errors"]]
            + [f"{where}, {when}: {len(t.splitlines())} lines of text under the widget, starting {t[:60]!r}"
               for t in state["long"]])


def test_the_course_has_widget_notebooks_to_check():
    assert "notebooks/01_augmentation.ipynb" in COURSE_NOTEBOOKS, COURSE_NOTEBOOKS


@pytest.mark.parametrize("path", COURSE_NOTEBOOKS)
def test_every_widget_control_redraws_its_image_without_error_or_long_text(lab, path):
    problems = check_widgets(lab, path)
    assert not problems, "\n".join(problems)


DRAW = """import ipywidgets
import matplotlib.pyplot as plt


def draw(kind="line", points=3):
    if kind == "broken":
        raise ValueError("this choice is broken")
    fig, ax = plt.subplots(figsize=(2, 2))
    (ax.plot if kind == "line" else ax.bar)(range(points), range(points))
    plt.show()
    return list(range(100)) if kind == "chatty" else None  # IPython shows a long list one item a line
"""
WIDGET = """_ = ipywidgets.interact(draw, kind=ipywidgets.Dropdown(options={choices!r}),
                        points=ipywidgets.IntSlider(3, min=2, max=6))"""


def write_synthetic_notebook(path: Path) -> None:
    """Three widgets: one that works, one that raises for one choice, one that leaks a return value."""
    import nbformat

    cells = [DRAW] + [WIDGET.format(choices=["line", kind]) for kind in ("bar", "broken", "chatty")]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_the_check_catches_a_broken_or_chatty_widget(lab):
    """On the synthetic notebook (much faster than breaking a copy of a course notebook)."""
    problems = check_widgets(lab, SYNTHETIC, run_timeout=60)
    assert len(problems) == 2, problems  # nothing from the working widget (cell 1)
    assert problems[0] == f"{SYNTHETIC}, cell 2, kind = broken: ValueError: this choice is broken"
    assert problems[1].startswith(f"{SYNTHETIC}, cell 3, kind = chatty: 100 lines of text under the widget,")
