"""Atomic writes: an interrupted write keeps the old file; two processes may write the same file at once."""
import subprocess
import sys

import pytest

from helpers.files import _write_via_temporary, write_text_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_text_atomically("old", target)

    def crash_midway(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _write_via_temporary(target, crash_midway)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_another_process_writing_the_same_file_meanwhile_does_not_break_this_write(tmp_path):
    target = tmp_path / "cache.pt"
    other_writer = [sys.executable, "-c",
                    "import sys; from helpers.files import write_text_atomically; "
                    "write_text_atomically('theirs', sys.argv[1])", str(target)]

    def write_while_the_other_process_writes(tmp):
        tmp.write_text("ours")
        subprocess.run(other_writer, check=True)  # finishes its whole write between ours and our rename

    _write_via_temporary(target, write_while_the_other_process_writes)
    assert target.read_text() == "ours"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.pt"]


def test_a_write_makes_the_missing_folders_and_json_ends_with_a_newline(tmp_path):
    import json
    from helpers.files import write_json_atomically
    target = tmp_path / "new" / "folder" / "result.json"
    write_json_atomically({"a": 1}, target)
    assert json.loads(target.read_text()) == {"a": 1} and target.read_text().endswith("}\n")


def test_a_result_that_is_not_a_json_object_is_refused_by_name(tmp_path):
    from helpers.files import read_result
    path = tmp_path / "run.json"
    path.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="run.json is not a result"):
        read_result(path)
    path.write_text("{half")
    with pytest.raises(SystemExit, match="run.json cannot be read"):
        read_result(path)
    assert path.read_text() == "{half"


def test_a_csv_has_a_column_for_every_key_of_any_row(tmp_path):
    import csv
    from helpers.files import write_csv_atomically
    path = tmp_path / "rows.csv"
    write_csv_atomically([{"a": 1}, {"a": 2, "b": 3}], path)
    with open(path, newline="") as f:
        assert list(csv.DictReader(f)) == [{"a": "1", "b": ""}, {"a": "2", "b": "3"}]


def test_a_csv_ends_its_lines_with_one_newline(tmp_path):
    """csv's own "\r\n", written through a text file, became "\r\r\n" on Windows: blank rows in Excel."""
    from helpers.files import write_csv_atomically
    write_csv_atomically([{"epoch": 1, "val_acc": 50.0}, {"epoch": 2, "val_acc": 60.0}], tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_bytes().replace(b"\r\n", b"\n") == b"epoch,val_acc\n1,50.0\n2,60.0\n"
    assert b"\r\r" not in (tmp_path / "h.csv").read_bytes()


def held_open(monkeypatch, path, times):
    """os.replace onto `path` fails with PermissionError `times` times, as on Windows while another
    program holds the file; the returned list counts the tries."""
    import os

    from helpers import files
    tries, replace = [], os.replace

    def refuse(source, target):
        if str(target) == str(path):
            tries.append(target)
            if len(tries) <= times:
                raise PermissionError(13, "The process cannot access the file", str(target))
        replace(source, target)
    monkeypatch.setattr(files.os, "replace", refuse)
    monkeypatch.setattr(files.time, "sleep", lambda seconds: None)
    return tries


def test_a_file_held_a_moment_is_written_on_a_later_try(tmp_path, monkeypatch):
    from helpers.files import REPLACE_RETRIES_S, write_json_atomically
    target = tmp_path / "history.json"
    tries = held_open(monkeypatch, target, times=len(REPLACE_RETRIES_S) - 1)
    write_json_atomically({"epoch": 1}, target)
    assert target.read_text(encoding="utf-8") == '{\n "epoch": 1\n}\n' and len(tries) == len(REPLACE_RETRIES_S)
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_a_record_held_open_fails_keeping_its_old_copy_but_a_held_csv_only_warns(tmp_path, monkeypatch):
    from helpers.files import write_csv_atomically, write_json_atomically
    write_json_atomically({"epoch": 1}, tmp_path / "history.json")
    write_csv_atomically([{"epoch": 1}], tmp_path / "history.csv")
    held_open(monkeypatch, tmp_path / "history.json", times=99)
    with pytest.raises(PermissionError):
        write_json_atomically({"epoch": 2}, tmp_path / "history.json")
    assert (tmp_path / "history.json").read_text(encoding="utf-8") == '{\n "epoch": 1\n}\n'
    held_open(monkeypatch, tmp_path / "history.csv", times=99)
    with pytest.warns(UserWarning, match="history.csv was not updated .* open in another program"):
        write_csv_atomically([{"epoch": 1}, {"epoch": 2}], tmp_path / "history.csv")
    assert (tmp_path / "history.csv").read_text(encoding="utf-8") == "epoch\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "history.json"]
