"""personas.infra.files.write_whole: the one way every output file is written."""

from __future__ import annotations

import pytest

from personas.infra.files import files_digest, write_whole
from tests.cli_fixtures import full_disk


def test_text_bytes_and_writer_function_land_whole_with_no_temporary_left(tmp_path):
    write_whole(tmp_path / "a.json", "é\n")
    write_whole(tmp_path / "b.bin", b"\x00\x01")
    write_whole(tmp_path / "c.gguf", lambda tmp: tmp.write_bytes(b"GGUF" + tmp.name.encode()))
    assert (tmp_path / "a.json").read_bytes() == "é\n".encode("utf-8")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "c.gguf").read_bytes() == b"GGUFc.gguf.tmp"  # the writer was handed the temporary name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "c.gguf"]


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "calibration.json"
    target.write_text("old")
    full_disk(tmp_path / "calibration.json.tmp")
    with pytest.raises(OSError, match="No space left") as caught:
        write_whole(target, "new" * 10_000)
    assert caught.value.filename == str(target)  # the error line names the file that was not written
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.json"]


@pytest.mark.parametrize("error", [RuntimeError("writer broke"), KeyboardInterrupt()])
def test_a_writer_that_fails_half_way_leaves_the_old_file(tmp_path, error):
    target = tmp_path / "adapter.gguf"
    target.write_bytes(b"old")

    def half(tmp):
        tmp.write_bytes(b"half a fi")
        raise error

    with pytest.raises(type(error)):
        write_whole(target, half)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.gguf"]


def test_a_missing_folder_is_an_error_not_a_silent_mkdir(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_whole(tmp_path / "nope" / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_files_digest_reads_names_and_bytes(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "b.txt").write_text("one")
    first = files_digest([tmp_path / "a.txt"], tmp_path)
    assert first == files_digest([tmp_path / "a.txt"], tmp_path)
    assert first != files_digest([tmp_path / "b.txt"], tmp_path)  # same bytes, other name
    (tmp_path / "a.txt").write_text("two")
    assert first != files_digest([tmp_path / "a.txt"], tmp_path)
