"""The cache directory is platformdirs' answer (on Linux computed without importing it)."""

from __future__ import annotations

import sys
from pathlib import Path

import platformdirs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compatsolve.cachedir import cache_dir


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG rule is computed on Linux only")
@given(st.one_of(st.none(), st.sampled_from(["", "  ", "/tmp/xdg", "/tmp/xdg/", "rel/x", "~/c", " /tmp/sp"])))
def test_linux_default_matches_platformdirs(xdg: str | None) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("COMPATSOLVE_CACHE", raising=False)
        if xdg is None:
            mp.delenv("XDG_CACHE_HOME", raising=False)
        else:
            mp.setenv("XDG_CACHE_HOME", xdg)
        assert cache_dir() == Path(platformdirs.user_cache_dir("compatsolve"))


def test_override_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COMPATSOLVE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
