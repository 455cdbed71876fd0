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


def test_a_full_disk_is_named_with_the_fix_and_the_previous_copy_is_kept(tmp_path, monkeypatch):
    import errno
    from collections import namedtuple

    from helpers import files
    target = tmp_path / "last.pt"
    files.save_atomically({"epoch": 1}, target)

    def runs_out(tmp):  # as torch.save reports a disk that filled up mid-write
        tmp.write_bytes(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 878912 vs 878800")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 4096, 4096))
    with pytest.raises(files.DiskFullError, match=r"last.pt could not be written: its disk is full \(0 MB free; "
                                                  r"RuntimeError: .*unexpected pos.*previous copy was kept. Free some"):
        files._write_via_temporary(target, runs_out)
    assert files.torch.load(target) == {"epoch": 1} and [p.name for p in tmp_path.iterdir()] == ["last.pt"]

    def no_space(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage(10 ** 9, 0, 10 ** 9))  # freed since
    with pytest.raises(files.DiskFullError, match=r"history.json could not be written.*No space left"):
        files._write_via_temporary(tmp_path / "history.json", no_space)
    with pytest.raises(RuntimeError, match="unexpected pos") as raised:  # plenty of space: another fault, as it is
        files._write_via_temporary(target, runs_out)
    assert not isinstance(raised.value, files.DiskFullError)


def test_unfinished_files_of_a_killed_save_are_removed_and_reported(tmp_path, capsys):
    from helpers.files import remove_leftover_temporaries
    for name in ("last.pt.4242.tmp", "history.json.17.tmp", "last.pt", "notes.1.txt", "last.pt.mine.tmp"):
        (tmp_path / name).write_bytes(b"x" * 1000)
    remove_leftover_temporaries(tmp_path, ["last.pt", "history.json", "history.csv"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.mine.tmp", "notes.1.txt"]
    assert "Removed 2 unfinished file(s)" in capsys.readouterr().out
    remove_leftover_temporaries(tmp_path, ["last.pt"])
    assert capsys.readouterr().out == ""  # nothing left: nothing said


def test_the_new_copy_is_on_the_disk_before_it_replaces_the_old(tmp_path, monkeypatch):
    """After a power cut, a rename that reached the disk before the data would leave an empty file."""
    import os

    from helpers import files
    events, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: events.append("fsync") or fsync(fd))
    monkeypatch.setattr(files.os, "replace", lambda a, b: events.append("replace") or replace(a, b))
    files.save_atomically({"epoch": 1}, tmp_path / "last.pt")
    assert events == ["fsync", "replace"]


def test_seed_results_come_in_seed_order_and_finished_seeds_are_not_run_again(tmp_path, capsys):
    from helpers.files import seed_results, write_missing_seeds

    ran = []

    def run_seed(seed):
        ran.append(seed)
        return {"seed": seed}

    write_missing_seeds([10, 2], tmp_path, run_seed)
    before = (tmp_path / "seed2.json").read_bytes()
    write_missing_seeds([0, 2, 1, 10], tmp_path, run_seed)
    assert ran == [10, 2, 0, 1]  # 2 and 10 were not run a second time
    assert (tmp_path / "seed2.json").read_bytes() == before
    assert "seed 2:" in capsys.readouterr().out
    assert [r["seed"] for r in seed_results(tmp_path)] == [0, 1, 2, 10]
