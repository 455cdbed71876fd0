"""How the course's command lines report bad input: one line that names the fix, no traceback.

Each module raises its own error type, a CourseError, with a message that says what to do (DataError,
CheckpointError, TeacherError, ProfileError, FolderError); `reports_errors` turns them into
`error: ...` and exit status 2 at the top of every command that trains or reads data (the
`python -m helpers` commands and the benchmarks), and `make_folder` checks an output
folder before any work, so that a long run never fails at its end for want of a place to write.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path


class CourseError(Exception):
    """The base of the course's own errors: their messages say what to do (DataError,
    CheckpointError, TeacherError, ProfileError, FolderError)."""


class FolderError(CourseError, RuntimeError):
    """A folder the command must write into cannot be made; the message names the path to change."""


def check_choice(name: str, value, choices: tuple) -> None:
    """A setting that must be one of a few values: otherwise a ValueError that lists them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, not {value!r}.")


def make_folder(path, change: str = "Choose another path") -> Path:
    """mkdir -p path, or FolderError naming what is in the way and `change` (e.g. the flag to fix)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        raise FolderError(f"{path} cannot be a folder: {blocking} is a file. {change}.") from None
    except PermissionError:
        raise FolderError(f"{path} cannot be made or written here (permission denied). "
                          f"{change}.") from None
    return path


def reports_errors(main=None, *, also: tuple[type[Exception], ...] = (), hint=None):
    """Decorator for a command's main(argv): the course's errors (and the types in `also`) print as
    `error: message` on stderr and return 2; hint(err) may add a line for this command."""
    def decorate(main):
        @functools.wraps(main)
        def wrapped(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except (CourseError, *also) as err:
                extra = hint(err) if hint else ""
                print(f"error: {err}" + (f"\n{extra}" if extra else ""), file=sys.stderr)
                return 2
        return wrapped
    return decorate(main) if main else decorate
