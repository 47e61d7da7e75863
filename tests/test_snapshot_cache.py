"""The PyPI snapshot's blob cache: a project read back from the cache equals the one parsed from
the shipped document, files (hashes, URLs) included, and a stale or damaged cache is ignored."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from compatsolve import snapshot as snap


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COMPATSOLVE_CACHE", str(tmp_path))
    return tmp_path


def _project(s: snap.Snapshot, name: str) -> dict[str, tuple[object, ...]]:
    return {
        v: (r.uploaded, r.yanked, r.requires_python, r.requires_dist, r.files)
        for v, r in s.project(name).items()
    }


def test_cached_read_equals_document_read(cache_dir: Path) -> None:
    shipped = snap.shipped_path()
    first = snap._read(shipped)  # parses the document and writes the cache
    assert first is not None
    assert list(cache_dir.glob("snapshot-*.cache"))
    second = snap._read(shipped)  # from the cache
    assert second is not None
    for name in ("torch", "transformers", "flash-attn"):
        expected = _project(first, name)
        assert expected, name
        assert _project(second, name) == expected
    torch = next(iter(second.project("torch").values()))
    assert all(len(f.sha256) == 64 and f.url.startswith("https://") for f in torch.files)
    assert second.newest() == first.newest()
    assert second.release_count() == first.release_count()


def test_stale_cache_layout_is_ignored(cache_dir: Path) -> None:
    shipped = snap.shipped_path()
    assert snap._read(shipped) is not None
    (cached,) = cache_dir.glob("snapshot-*.cache")
    whole = cached.read_bytes()
    for broken in (
        pickle.dumps(("2000-01-01", {"torch": b"{}"})),  # an older layout: one pickle
        whole[: len(whole) // 2],  # cut short
    ):
        cached.write_bytes(broken)
        again = snap._read(shipped)
        assert again is not None and again.date != "2000-01-01"
        assert again.project("torch")
