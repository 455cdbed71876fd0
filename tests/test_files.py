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
