"""Shared test fixtures: an isolated cache, the repository's knowledge base, fixture paths."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never write the knowledge pickle (or anything else) into the user's real cache."""
    cache = tmp_path_factory.getbasetemp() / "compatsolve-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("COMPATSOLVE_CACHE", str(cache))
    monkeypatch.delenv("COMPATSOLVE_KNOWLEDGE", raising=False)
    return cache


@pytest.fixture(scope="session")
def kb():
    """The repository's knowledge base, parsed directly (no pickle cache involved)."""
    from compatsolve.knowledge import parse_knowledge

    return parse_knowledge(REPO / "knowledge")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
