"""The API history of the stack: for each release since the PyPI snapshot's start of the Python
projects in compatsolve/api_scan.py, which modules, top-level names and class members it
defines, stored as spans of consecutive releases (knowledge/snapshot/apis.json.gz, written by
`compatsolve kb refresh --apis`).

It answers the question behind "cannot import name 'X' from 'lib'", "No module named
'lib.sub'", "'C' object has no attribute 'a'" and "C.__init__() got an unexpected keyword
argument 'k'": in which releases of lib does the name exist. A name that exists only in releases
older than the installed one was removed; one that exists only in newer ones was not added yet.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from compatsolve.records import record

SCHEMA = "compatsolve.api-history/1"
FILENAME = "apis.json.gz"
SECTIONS = ("modules", "names", "members")


@record
class ApiScan:
    """What one release defines: dotted module paths, top-level names, and its classes' members
    as `Class.member` (methods, class attributes, `self.x` attributes) and `Class(param`
    (keywords its `__init__` accepts, dataclass fields included)."""

    project: str
    version: str
    modules: frozenset[str]
    names: frozenset[str]
    members: frozenset[str]


def spans_of(scans: Iterable[ApiScan]) -> dict[str, Any]:
    """One project's scans, oldest first, as the stored document: `versions`, and per section a
    map from each name to the flat list of its spans [first, last, first, last, ...] (indexes
    into `versions`, inclusive)."""
    ordered = list(scans)
    stored: dict[str, Any] = {"versions": [s.version for s in ordered]}
    for section in SECTIONS:
        spans: dict[str, list[int]] = {}
        for index, scan in enumerate(ordered):
            for name in getattr(scan, section):
                held = spans.setdefault(name, [])
                if held and held[-1] == index - 1:
                    held[-1] = index
                else:
                    held += [index, index]
        stored[section] = spans
    return stored


@record
class Presence:
    """Where `symbol` exists among the scanned releases of `project`, oldest first."""

    project: str
    symbol: str
    versions: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]

    @property
    def always(self) -> bool:
        return self.spans == ((0, len(self.versions) - 1),)

    @property
    def added_in(self) -> str | None:
        """The first release that has it, when an older scanned release does not."""
        return self.versions[self.spans[0][0]] if self.spans[0][0] > 0 else None

    @property
    def removed_in(self) -> str | None:
        """The first release after the last one that has it, when there is one."""
        last = self.spans[-1][1]
        return self.versions[last + 1] if last + 1 < len(self.versions) else None

    @property
    def last_with(self) -> str:
        return self.versions[self.spans[-1][1]]

    @property
    def first_with(self) -> str:
        return self.versions[self.spans[0][0]]

    def at(self, version: str) -> tuple[bool, int] | None:
        """Whether release `version` has the symbol, with the index of the scanned release it is
        judged by: itself, or the newest scanned one below it (a pre-release or a local build
        of it, or a patch release newer than the snapshot). A release older than every scanned
        one lacks a symbol added after the first (index -1); otherwise None: unknown."""
        try:
            wanted = Version(Version(version).base_version)
        except InvalidVersion:
            return None
        scanned = [Version(v) for v in self.versions]
        if wanted < scanned[0]:
            return (False, -1) if self.spans[0][0] > 0 else None
        index = max(i for i, v in enumerate(scanned) if v <= wanted)
        if index == len(scanned) - 1 and wanted.release[:2] != scanned[-1].release[:2]:
            return None  # a newer minor release than any scanned
        return any(a <= index <= b for a, b in self.spans), index

    def spans_text(self) -> str:
        return ", ".join(
            self.versions[a] if a == b else f"{self.versions[a]} to {self.versions[b]}" for a, b in self.spans
        )


class ApiHistory:
    """The stored document, queried by project and symbol."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.date: str = document.get("date", "")
        self._projects: Mapping[str, Any] = document["projects"]
        self._imports: dict[str, str] = {}
        self._defining: dict[str, list[str]] | None = None
        for project, stored in self._projects.items():
            for module in stored["modules"]:
                top = module.split(".", 1)[0]
                # a wheel may vendor another project's package: its own name wins
                if top not in self._imports or top.replace("_", "-") == project:
                    self._imports[top] = project

    @property
    def projects(self) -> tuple[str, ...]:
        return tuple(self._projects)

    def project_of_module(self, module: str) -> str | None:
        """The project whose releases ship the top-level package of `module` (`peft.tuners` -> peft)."""
        return self._imports.get(module.split(".", 1)[0])

    def defining(self, name: str) -> list[str]:
        """Projects some release of which defines the top-level name `name` (a class)."""
        if self._defining is None:
            index: dict[str, list[str]] = {}
            for project, stored in self._projects.items():
                for defined in stored["names"]:
                    index.setdefault(defined, []).append(project)
            self._defining = index
        return self._defining.get(name, [])

    def _presence(self, project: str, section: str, key: str, symbol: str) -> Presence | None:
        stored = self._projects.get(project)
        if stored is None:
            return None
        flat = stored[section].get(key)
        if not flat:
            return None
        spans = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
        return Presence(project, symbol, tuple(stored["versions"]), spans)

    def module(self, project: str, module: str) -> Presence | None:
        return self._presence(project, "modules", module, module)

    def name(self, project: str, name: str) -> Presence | None:
        return self._presence(project, "names", name, name)

    def member(self, project: str, owner: str, member: str) -> Presence | None:
        return self._presence(project, "members", f"{owner}.{member}", f"{owner}.{member}")

    def keyword(self, project: str, owner: str, keyword: str) -> Presence | None:
        return self._presence(project, "members", f"{owner}({keyword}", f"{owner}({keyword}=...)")

    def scanned(self, project: str) -> tuple[str, ...]:
        stored = self._projects.get(project)
        return tuple(stored["versions"]) if stored else ()


def shipped_path(root: Path | None = None) -> Path:
    base = root if root is not None else Path(__file__).resolve().parent.parent
    return base / "knowledge" / "snapshot" / FILENAME


def read_history(path: Path) -> ApiHistory:
    document = json.loads(gzip.decompress(path.read_bytes()))
    if document.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a {SCHEMA} document")
    return ApiHistory(document)


@cache
def load_history() -> ApiHistory | None:
    """The shipped history; None when it is missing (a source checkout without it)."""
    path = shipped_path()
    return read_history(path) if path.exists() else None
