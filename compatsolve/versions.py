"""Lenient version handling for the many version-like strings of the stack.

Drivers (`535.104.05`), compute capabilities (`8.6`), CUDA releases (`12.1`) and PEP 440 package
versions (`2.4.0+cu121`) all compare as `packaging` versions once parsed; anything that does not
parse is `None` and the caller decides what "unknown" means.
"""

from __future__ import annotations

import re
from functools import lru_cache

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

_LEADING_VERSION = re.compile(r"\d+(?:\.\d+)*")


@lru_cache(maxsize=4096)
def parse_version(text: str | int | float | None) -> Version | None:
    """Parse `text` as a version, or return None when it is not one."""
    if text is None or isinstance(text, bool):
        return None
    try:
        return Version(str(text).strip())
    except InvalidVersion:
        return None


def leading_version(text: str) -> str | None:
    """The first dotted number in `text` (`'12.1, V12.1.105'` -> `'12.1'`)."""
    match = _LEADING_VERSION.search(text)
    return match.group(0) if match else None


def public_version(text: str) -> str:
    """`2.4.0+cu121` -> `2.4.0`; leaves unparsable text as it is."""
    version = parse_version(text)
    return version.public if version else text


def local_label(text: str) -> str | None:
    """`2.4.0+cu121` -> `cu121`."""
    version = parse_version(text)
    return version.local if version else None


def major_minor(text: str | None) -> str | None:
    """`12.1.105` -> `12.1`."""
    version = parse_version(text) if text else None
    if version is None:
        return None
    release = (*version.release, 0)
    return f"{release[0]}.{release[1]}"


def cuda_variant(cuda: str) -> str:
    """CUDA release -> torch variant label: `12.1` -> `cu121`."""
    mm = major_minor(cuda)
    if mm is None:
        raise ValueError(f"not a CUDA version: {cuda!r}")
    major, minor = mm.split(".")
    return f"cu{major}{minor}"


def variant_cuda(variant: str) -> str | None:
    """torch variant label -> CUDA release: `cu121` -> `12.1`, `cu118` -> `11.8`, `cpu` -> None."""
    match = re.fullmatch(r"cu(\d+)(\d)", variant)
    return f"{match.group(1)}.{match.group(2)}" if match else None


@lru_cache(maxsize=65536)
def in_range(specifier: str, version: Version) -> bool:
    """Whether `version` lies in the PEP 440 range `specifier` ('>=2.1,<2.4'; '' is any),
    pre-releases included: rules, pins and metadata ask about versions that exist."""
    return _specifier_set(specifier).contains(version, prereleases=True)


@lru_cache(maxsize=4096)
def _specifier_set(text: str) -> SpecifierSet:
    return SpecifierSet(text)
