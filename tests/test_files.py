"""Tests of common/files.py: atomic writes, reading a run's CSV logs back, setting aside.

The parametrised tests at the end damage each CSV file of a run folder in each way a
file gets damaged, resume the run's logger on it, and check that no saved byte or row
was lost: the damaged file is kept as it was under another name, and its readable
rows go on in the new file.
"""

import os

import pytest

from common.files import (HELDOUT_FIELDS, PROGRESS_FIELDS, first_line, flag_name, read_table,
                          set_aside, write_atomically)
from common.logger import RunLogger
from common.plot import read_run

PROGRESS_ROWS = [f"{100 * game},{game},-21.0,-21.0,1.0,nan,nan,1500.0,{game}.5"
                 for game in range(1, 6)]
HELDOUT_ROWS = ["100,0.01", "200,0.02", "300,0.03", "400,0.04", "500,0.05"]


def test_write_atomically_writes_text_bytes_or_through_a_function(tmp_path):
    path = str(tmp_path / "a.txt")
    write_atomically(path, "text")
    assert open(path).read() == "text"
    write_atomically(path, b"bytes", durable=False)
    assert open(path, "rb").read() == b"bytes"
    write_atomically(path, lambda temporary: open(temporary, "w").write("function"))
    assert open(path).read() == "function"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = str(tmp_path / "a.txt")
    write_atomically(path, "old")

    def disk_full(temporary):
        open(temporary, "w").write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, disk_full)
    assert open(path).read() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_first_line_and_flag_name():
    assert first_line(OSError(28, "No space left on device")) == "No space left on device"
    assert first_line(ValueError("one\ntwo")) == "one"
    assert first_line(KeyError()) == "KeyError"
    import tensorflow as tf

    full = tf.errors.ResourceExhaustedError(None, None, (
        "{{function_node __wrapped__SaveV2_dtypes_45}} /tmp/run/ckpt-600_temp/part-0.data."
        "tempstate1220; No space left on device [Op:SaveV2]"))
    assert first_line(full) == "No space left on device"
    assert flag_name("total_steps") == "--total-steps"


def write_log(path, header, rows, newline="\r\n"):
    path.write_bytes((newline.join([header, *rows]) + newline).encode())


def test_a_sound_log_is_read_whole_and_a_last_line_cut_short_is_no_fault(tmp_path):
    path = tmp_path / "heldout_q.csv"
    write_log(path, "step,heldout_q", HELDOUT_ROWS)
    assert read_table(str(path), HELDOUT_FIELDS) == ([row.split(",") for row in HELDOUT_ROWS],
                                                     None)
    with open(path, "ab") as file:
        file.write(b"600,0.0")  # a kill while the row was written
    rows, problem = read_table(str(path), HELDOUT_FIELDS)
    assert len(rows) == 5 and problem is None


# Each way a log gets damaged: (name, what is done to the file's bytes).
DAMAGES = {
    "cut-header": lambda text: text.replace(text.split(b"\r\n")[0], text.split(b"\r\n")[0][:8],
                                            1),
    "bytes-not-text": lambda text: text + b"\xff\xfe\r\n",
    "other-delimiter": lambda text: text.replace(b",", b";"),
    "missing-column": lambda text: b"\r\n".join(line.rsplit(b",", 1)[0]
                                                for line in text.split(b"\r\n")),
    "other-version-header": lambda text: text.replace(b"step,", b"agent_step,", 1),
    "garbled-line": lambda text: text.replace(b"\r\n", b"\r\n#!garbage\r\n", 2),
}
LOGS = {"progress.csv": (PROGRESS_FIELDS, PROGRESS_ROWS),
        "heldout_q.csv": (HELDOUT_FIELDS, HELDOUT_ROWS)}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("name", LOGS)
def test_a_damaged_log_is_kept_intact_and_its_readable_rows_go_on(tmp_path, capsys, name,
                                                                  damage):
    fields, rows = LOGS[name]
    for other, (other_fields, other_rows) in LOGS.items():
        write_log(tmp_path / other, ",".join(other_fields), other_rows)
    path = tmp_path / name
    damaged = DAMAGES[damage](path.read_bytes())
    path.write_bytes(damaged)
    readable, problem = read_table(str(path), fields)
    assert problem is not None

    RunLogger(str(tmp_path), resume_step=400).close(draw_picture=False)

    warning = capsys.readouterr().err
    assert f"warning: {path} is damaged" in warning and warning.count("\n") == 1
    aside = [entry for entry in os.listdir(tmp_path) if entry.startswith(
        name.replace(".csv", ".damaged-"))]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_bytes() == damaged  # not one byte lost
    kept, problem = read_table(str(path), fields)
    assert problem is None
    assert kept == [row for row in readable if int(row[0]) <= 400]
    if damage in ("cut-header", "bytes-not-text", "garbled-line"):
        assert kept == [row.split(",") for row in rows[:4]]  # every row up to step 400


def test_a_sound_log_is_resumed_without_a_warning_or_a_copy(tmp_path, capsys):
    for name, (fields, rows) in LOGS.items():
        write_log(tmp_path / name, ",".join(fields), rows)
    RunLogger(str(tmp_path), resume_step=300).close(draw_picture=False)
    assert capsys.readouterr().err == ""
    assert sorted(entry for entry in os.listdir(tmp_path) if entry.endswith(".csv")) == [
        "heldout_q.csv", "progress.csv"]
    assert len(read_table(str(tmp_path / "progress.csv"), PROGRESS_FIELDS)[0]) == 3


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_log_is_drawn_from_its_readable_rows_never_a_traceback(tmp_path, capsys,
                                                                        damage):
    write_log(tmp_path / "progress.csv", ",".join(PROGRESS_FIELDS), PROGRESS_ROWS)
    path = tmp_path / "progress.csv"
    path.write_bytes(DAMAGES[damage](path.read_bytes()))
    readable, _ = read_table(str(path), PROGRESS_FIELDS)
    if not readable:
        with pytest.raises(ValueError, match="is damaged .* holds no readable row"):
            read_run(tmp_path)
        return
    curves = read_run(tmp_path)
    assert len(curves.step) == len(readable)
    assert "is damaged" in capsys.readouterr().err


def test_set_aside_never_overwrites(tmp_path):
    first, second = tmp_path / "progress.csv", tmp_path / "again.csv"
    first.write_text("one")
    aside_one = set_aside(str(first))
    first.write_text("two")
    aside_two = set_aside(str(first))
    assert aside_one != aside_two and not first.exists()
    assert open(aside_one).read() == "one" and open(aside_two).read() == "two"
    assert os.path.basename(aside_one).startswith("progress.damaged-")
    assert not second.exists()
