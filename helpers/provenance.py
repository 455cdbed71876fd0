"""Where a result came from: machine, package versions, commit and command."""
from __future__ import annotations

import datetime
import functools
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from helpers.constants import REPO
from helpers.precision import precision_name



@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    """The checkout's commit (-dirty with uncommitted changes), or DEIT_COMMIT when it is set (a
    machine that gets the files without .git, such as a GPU window, is told the commit this way).

    Read once per process, when the code that makes the result has just been loaded: a long run
    must not report a commit made while it was running.
    """
    if os.environ.get("DEIT_COMMIT"):
        return os.environ["DEIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             encoding="utf-8", timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, encoding="utf-8", timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def command_line(argv: list[str], main_module: str | None) -> str:
    """The command as typed, as near as sys.argv and the main module's name tell:
    `python -m helpers ablate ...` rather than `__main__.py ablate ...`."""
    if main_module:
        first = f"python -m {main_module.removesuffix('.__main__')}"
    elif argv[0] == "-c":
        first = "python -c (inline code)"
    else:
        first = Path(argv[0]).name
    return " ".join([first, *argv[1:]])


def main_module_name() -> str | None:
    """The module `python -m` ran, or None for a script or inline code."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec else None


def provenance(command: str | None = None) -> dict:
    import timm
    import torchvision
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "device": gpu or f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "gpu": gpu,
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "precision": precision_name("cuda" if gpu else "cpu"),  # one model's training (helpers.precision)
        "commit": git_commit(),
        "command": command or command_line(sys.argv, main_module_name()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


git_commit()  # read (and cached) as this process loads the code, before anything can change it
