"""Atomic, no-clobber writes and user-file reads (compatsolve/fileio.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from compatsolve.errors import InputError
from compatsolve.fileio import read_text_input, write_atomic


def test_write_new_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_atomic(target, "hello\n", force=False)
    assert target.read_text() == "hello\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(InputError, match="--force"):
        write_atomic(target, "new", force=False)
    assert target.read_text() == "old"


def test_force_replaces_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    write_atomic(target, "new", force=True)
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        write_atomic(tmp_path / "no" / "out.json", "x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only directories")
def test_unwritable_directory(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot write"):
            write_atomic(tmp_path / "out.json", "x")
    finally:
        tmp_path.chmod(0o700)


def test_newlines_are_lf_and_utf8(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_atomic(target, "a\nb — ü\n")
    assert target.read_bytes() == "a\nb — ü\n".encode()


def test_read_text_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.txt"
    path.write_bytes(b"torch==2.4.0\n\xff\n")
    assert read_text_input(str(path), "report").startswith("torch==2.4.0\n")  # bad bytes replaced
    with pytest.raises(InputError, match="cannot read report"):
        read_text_input(str(tmp_path / "missing"), "report")
    with pytest.raises(InputError, match="cannot read report"):
        read_text_input(str(tmp_path), "report")
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin"))
    assert read_text_input("-", "report") == "from stdin"


def test_prune_caches_keeps_the_most_recent(tmp_path: Path) -> None:
    from compatsolve.fileio import prune_caches

    for age in range(6):
        path = tmp_path / f"knowledge-{age}.pickle"
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))
    (tmp_path / "other.txt").write_text("kept")
    prune_caches(tmp_path, "knowledge-*.pickle", keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "knowledge-0.pickle",
        "knowledge-1.pickle",
        "knowledge-2.pickle",
        "other.txt",
    ]
