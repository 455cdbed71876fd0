"""Writing files so that an interrupted write never destroys the previous good copy."""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from helpers.errors import CourseError

REPLACE_RETRIES_S = (0.1, 0.3, 1.0, None)  # waits between tries of the rename; None: give up
NEARLY_FULL_BYTES = 64 * 2 ** 20  # free space below which a failed write is put down to a full disk


class DiskFullError(CourseError, OSError):
    """A file could not be written for want of disk space; its previous copy is kept."""


def _temporary(path: Path, pid: int | str) -> Path:
    # One temporary name per process: two runs filling the same cache at once must not collide.
    return path.with_name(f"{path.name}.{pid}.tmp")


def _explain_full_disk(path: Path, err: Exception) -> None:
    """Raise DiskFullError for `err` if the disk holding `path` is full: torch.save reports it as a
    RuntimeError about stream positions, a text write as OSError ENOSPC."""
    free = shutil.disk_usage(path.parent).free
    full = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))  # no disk quotas on Windows
    if getattr(err, "errno", None) in full or free < NEARLY_FULL_BYTES:
        kept = "Its previous copy was kept. " if path.exists() else ""
        raise DiskFullError(
            f"{path} could not be written: its disk is full ({free / 2 ** 20:.0f} MB free; {type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}). {kept}Free some space and run the same command again: a "
            f"training run resumes from its last checkpoint.") from err


def remove_leftover_temporaries(folder, names) -> None:
    """Delete the temporaries of `names` in `folder` that a process killed mid-save left there (each a
    whole checkpoint, perhaps), and say so; call it where only this process writes."""
    left = [tmp for name in names for tmp in Path(folder).glob(_temporary(Path(name), "*").name)
            if tmp.name.split(".")[-2].isdigit()]
    if left:
        size = sum(tmp.stat().st_size for tmp in left)
        for tmp in left:
            tmp.unlink(missing_ok=True)
        print(f"Removed {len(left)} unfinished file(s) ({size / 2 ** 20:.1f} MB) left in {folder} by a save "
              f"that was cut short; the finished copies beside them are used.", flush=True)


def _write_via_temporary(path, write) -> None:
    """write(tmp_path), then rename over `path`: a crash mid-write leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, os.getpid())
    try:
        try:
            write(tmp)
            with open(tmp, "rb+") as written:  # on the disk before the rename: a power cut keeps one whole copy
                os.fsync(written.fileno())
        except (OSError, RuntimeError) as err:
            _explain_full_disk(path, err)
            raise
        for wait in REPLACE_RETRIES_S:
            try:
                os.replace(tmp, path)
                break
            except PermissionError:  # Windows: a virus scanner or an indexer holds `path` a moment
                if wait is None:
                    raise
                time.sleep(wait)
    finally:
        tmp.unlink(missing_ok=True)


def save_atomically(obj, path) -> None:
    _write_via_temporary(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomically(text: str, path) -> None:
    _write_via_temporary(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomically(obj, path) -> None:
    write_text_atomically(json.dumps(obj, indent=1) + "\n", path)


def read_result(path) -> dict:
    """One JSON result file, or an error that names it (a damaged file is left as it is)."""
    try:
        found = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {path} cannot be read as a result ({type(err).__name__}: {err}). "
                         f"Restore it (git checkout) or delete it to train that run again.") from None
    if not isinstance(found, dict):
        raise SystemExit(f"error: {path} is not a result (a JSON object). Restore it or delete it.")
    return found


def seed_results(folder) -> list[dict]:
    """A per-seed benchmark's results, folder/seed<k>.json, in seed order (none yet: an empty list)."""
    # by length first: seed2 before seed10, which a plain sort of the names puts first
    return [read_result(p) for p in sorted(Path(folder).glob("seed*.json"), key=lambda p: (len(p.name), p.name))]


def write_missing_seeds(seeds, folder, run_seed, check_finished=None) -> None:
    """folder/seed<k>.json = run_seed(k) for each seed without one yet. A finished seed is kept, once
    check_finished(its result, k, its path) has not refused it (as made with other settings)."""
    for seed in seeds:
        path = Path(folder) / f"seed{seed}.json"
        if path.exists():
            if check_finished:
                check_finished(read_result(path), seed, path)
            print(f"seed {seed}: {path} exists, skipped")
            continue
        write_json_atomically(run_seed(seed), path)
        print(f"seed {seed}: written to {path}", flush=True)


def write_csv_atomically(rows: list[dict], path) -> None:
    """A spreadsheet's copy of a history whose JSON is the record: if the file is held open (Excel
    locks the files it shows, on Windows), a warning says so and the run goes on."""
    buffer = io.StringIO()
    columns = list(dict.fromkeys(key for row in rows for key in row))  # rows written by older code may lack some
    # "\n": the text file's own newline translation makes it "\r\n" on Windows, not "\r\r\n".
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    try:
        write_text_atomically(buffer.getvalue(), path)
    except PermissionError as err:
        warnings.warn(f"{path} was not updated ({err}): is it open in another program, such as a spreadsheet? "
                      f"The JSON beside it holds every epoch; close the file and the next epoch writes it.")
