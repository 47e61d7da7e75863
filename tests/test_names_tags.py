"""The start-up-cheap stand-ins for packaging helpers give packaging's own answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name as packaging_canonicalize_name
from packaging.version import Version

from compatsolve.names import canonicalize_name
from compatsolve.resolve import platform_tags, supported_tags


@given(st.text(alphabet="abcXYZ019-_. ", max_size=20))
def test_canonicalize_name_matches_packaging(name: str) -> None:
    assert canonicalize_name(name) == packaging_canonicalize_name(name)


@pytest.mark.parametrize("python", [(3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13), (3, 14)])
@pytest.mark.parametrize(
    ("os_name", "arch", "glibc"),
    [
        ("linux", "x86_64", "2.31"),
        ("linux", "aarch64", "2.17"),
        ("linux", "x86_64", None),
        ("windows", "x86_64", None),
        ("macos", "aarch64", None),
    ],
)
def test_supported_tags_match_packaging(
    python: tuple[int, int], os_name: str, arch: str, glibc: str | None
) -> None:
    platforms = tuple(platform_tags(os_name, arch, Version(glibc) if glibc else None))
    interp = f"cp{python[0]}{python[1]}"
    expected = {str(t) for t in cpython_tags(python, abis=[interp, "abi3", "none"], platforms=platforms)}
    expected |= {str(t) for t in compatible_tags(python, interp, platforms=platforms)}
    assert supported_tags(python, platforms) == expected
