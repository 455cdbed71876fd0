"""Writing files so that an interrupted write never destroys the previous good copy."""
from __future__ import annotations

import csv
import io
import json
import os
import time
import warnings
from pathlib import Path

import torch

REPLACE_RETRIES_S = (0.1, 0.3, 1.0, None)  # waits between tries of the rename; None: give up


def _write_via_temporary(path, write) -> None:
    """write(tmp_path), then rename over `path`: a crash mid-write leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One temporary name per process: two runs filling the same cache at once must not collide.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
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
    return [read_result(p) for p in sorted(Path(folder).glob("seed*.json"))]


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
