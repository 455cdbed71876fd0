"""How the course's command lines report bad input: one line that names the fix, no traceback.

Each module raises its own error type, a CourseError, with a message that says what to do (DataError,
CheckpointError, TeacherError, ProfileError, FolderError); `reports_errors` turns them into
`error: ...` and exit status 2 at the top of every command that trains or reads data (the
`python -m helpers` commands and the benchmarks), and `make_folder` checks an output
folder before any work, so that a long run never fails at its end for want of a place to write.
"""
from __future__ import annotations

import functools
import os
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


def differences(saved: dict, now: dict) -> str:
    """The settings in which two run identities differ, a line each, for an error that names them;
    within a setting that is a dict (the recipe) only its differing keys, as recipe.<key>."""
    def flat(identity: dict) -> dict:
        return {f"{k}.{sub}" if isinstance(v, dict) else k: x
                for k, v in identity.items() for sub, x in (v.items() if isinstance(v, dict) else [(None, v)])}

    saved, now = flat(saved), flat(now)
    changed = sorted(k for k in now.keys() | saved.keys() if saved.get(k) != now.get(k))
    return f"it differs in {changed}:\n" + "".join(f"  {k}: saved {saved.get(k)!r}, now {now.get(k)!r}\n"
                                                  for k in changed)


def check_same_settings(saved: dict, now: dict, path, fix: str) -> None:
    """A finished result at `path` is reused only if it was made with the settings this call would
    use; else stop with the settings that differ and `fix` (e.g. another results folder)."""
    if saved != now:
        raise SystemExit(f"error: {path} was made with other settings than this call's; "
                         f"{differences(saved, now)}{fix}")


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
    if not os.access(path, os.W_OK | os.X_OK):  # it was there already, read-only: found now, not after the work
        raise FolderError(f"{path} cannot be written (permission denied). {change}.")
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
