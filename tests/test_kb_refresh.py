"""`kb refresh`: writes the user-cache snapshot atomically and falls back cleanly when offline.
The network is replaced by stand-ins here; nothing reaches PyPI."""

from __future__ import annotations

import gzip
import json
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from compatsolve import pypi, snapshot


def test_offline_refresh_keeps_the_shipped_snapshot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMPATSOLVE_CACHE", str(tmp_path))
    snapshot.load_snapshot.cache_clear()

    def offline(project: str) -> dict[str, Any]:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(pypi, "fetch_index", offline)
    code = pypi.refresh_command(shipped=False, workers=2, root=snapshot.shipped_path().parent.parent)
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot reach PyPI" in err and "keeping the snapshot of" in err
    assert not (tmp_path / snapshot.FILENAME).exists()
    snapshot.load_snapshot.cache_clear()
    assert snapshot.load_snapshot() is not None  # the shipped one still serves


def test_refresh_writes_an_atomic_loadable_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COMPATSOLVE_CACHE", str(tmp_path))
    index = {
        "files": [
            {
                "filename": "demo_pkg-1.0.0-py3-none-any.whl",
                "hashes": {"sha256": "ab" * 32},
                "requires-python": ">=3.9",
                "upload-time": "2024-05-01T00:00:00Z",
                "url": "https://files.example.invalid/demo_pkg-1.0.0-py3-none-any.whl",
                "yanked": False,
            }
        ]
    }
    monkeypatch.setattr(pypi, "fetch_index", lambda project: index)
    monkeypatch.setattr(
        pypi, "read_wheel_metadata", lambda url: b"Name: demo-pkg\nRequires-Dist: numpy>=1\n\n"
    )
    fetched = pypi.fetch_snapshot(projects=["demo-pkg"], since="2023-01-01", workers=1)
    target = tmp_path / snapshot.FILENAME
    snapshot.write_snapshot(fetched, target)
    assert not list(tmp_path.glob(".*.tmp"))
    with gzip.open(target, "rt") as handle:
        doc = json.load(handle)
    loaded = snapshot.from_document(doc)
    release = loaded.project("demo-pkg")["1.0.0"]
    assert release.requires_dist == ("numpy>=1",) and release.requires_python == ">=3.9"
    assert release.files[0].sha256 == "ab" * 32


def test_wheel_members_are_read_by_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zip reader behind both METADATA and the API scan, over a wheel built here and served by
    byte ranges: the member between the two runs (a stand-in for a compiled library) is never
    transferred."""
    import io
    import os
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("demo/__init__.py", "X = 1\n", compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("demo/_C.so", os.urandom(2 * pypi.GAP), compress_type=zipfile.ZIP_STORED)
        archive.writestr("demo/late.py", "def f(): ...\n", compress_type=zipfile.ZIP_STORED)
        archive.writestr("demo-1.0.dist-info/METADATA", "Name: demo\n", compress_type=zipfile.ZIP_DEFLATED)
    data = buffer.getvalue()
    served: list[int] = []

    def ranged(url: str, headers: dict[str, str] | None = None) -> bytes:
        if url.endswith(".metadata"):
            raise urllib.error.HTTPError(url, 404, "not found", None, None)  # type: ignore[arg-type]
        first, _, last = (headers or {})["Range"].removeprefix("bytes=").partition("-")
        chunk = data[int(first) :] if first else data[-int(last) :]
        chunk = chunk[: int(last) - int(first) + 1] if first and last else chunk
        served.append(len(chunk))
        return chunk

    monkeypatch.setattr(pypi, "_get", ranged)
    assert pypi.read_wheel_metadata("https://x/demo.whl") == b"Name: demo\n"
    served.clear()
    entries = [e for e in pypi.wheel_directory("https://x/demo.whl") if e.name.endswith(".py")]
    assert dict(pypi.read_members("https://x/demo.whl", entries)) == {
        "demo/__init__.py": b"X = 1\n",
        "demo/late.py": b"def f(): ...\n",
    }
    assert sum(served) < len(data) - pypi.GAP  # the library in between was skipped
