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
import marshal
import re
from collections.abc import Callable, Iterable, Mapping
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
    map from each name to its spans "first,last,first,last..." (indexes into `versions`,
    inclusive; a string, so that loading makes one object per name, not one per number)."""
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
        stored[section] = {name: ",".join(map(str, held)) for name, held in spans.items()}
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


ProjectReader = Callable[[str], "dict[str, Any] | None"]


class ApiHistory:
    """The stored document, queried by project and symbol; each project's part is read when a
    query first needs it (`read`), so a diagnose pays for the one or two projects it asks about."""

    def __init__(self, date: str, imports: Mapping[str, str], projects: tuple[str, ...], read: ProjectReader):
        self.date = date
        self.projects = projects
        self._imports = imports
        self._read = read
        self._loaded: dict[str, dict[str, Any] | None] = {}
        self._defining: dict[str, str] | None = None
        self._classes: dict[str, frozenset[str]] = {}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ApiHistory:
        stored: Mapping[str, Any] = document["projects"]
        return cls(document.get("date", ""), import_map(stored), tuple(stored), stored.get)

    def _project(self, project: str) -> dict[str, Any] | None:
        if project not in self._loaded:
            self._loaded[project] = self._read(project) if project in self.projects else None
        return self._loaded[project]

    def project_of_module(self, module: str) -> str | None:
        """The project whose releases ship the top-level package of `module` (`peft.tuners` -> peft)."""
        return self._imports.get(module.split(".", 1)[0])

    def defining(self, name: str) -> list[str]:
        """Projects some release of which defines the top-level name `name` (a class)."""
        if self._defining is None:
            stored = self._read(DEFINING)
            self._defining = stored if stored is not None else defining_map(self.projects, self._project)
        found = self._defining.get(name)
        return found.split(",") if found else []

    def has_class_body(self, project: str, owner: str) -> bool:
        """Whether some release of `project` defines the class `owner` itself (its body has a member
        or a keyword), not only imports or re-exports it as `defining` also counts."""
        if project not in self._classes:
            stored = self._project(project)
            keys = stored["members"] if stored else ()
            self._classes[project] = frozenset(re.split(r"[.(]", key, maxsplit=1)[0] for key in keys)
        return owner in self._classes[project]

    def _presence(self, project: str, section: str, key: str, symbol: str) -> Presence | None:
        stored = self._project(project)
        if stored is None:
            return None
        flat = stored[section].get(key)
        if not flat:
            return None
        numbers = [int(n) for n in flat.split(",")]
        spans = tuple((numbers[i], numbers[i + 1]) for i in range(0, len(numbers), 2))
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
        stored = self._project(project)
        return tuple(stored["versions"]) if stored else ()


DEFINING = "\0defining"  # the cache's blob of name -> projects (no project has this name)


def import_map(projects: Mapping[str, Any]) -> dict[str, str]:
    """Top-level import name -> project; a wheel may vendor another project's package, and then
    the project of that name wins."""
    imports: dict[str, str] = {}
    for project, stored in projects.items():
        for module in stored["modules"]:
            top = module.split(".", 1)[0]
            if top not in imports or top.replace("_", "-") == project:
                imports[top] = project
    return imports


def defining_map(projects: Iterable[str], read: ProjectReader) -> dict[str, str]:
    index: dict[str, list[str]] = {}
    for project in projects:
        stored = read(project)
        for name in stored["names"] if stored else ():
            index.setdefault(name, []).append(project)
    return {name: ",".join(found) for name, found in index.items()}


def shipped_path(root: Path | None = None) -> Path:
    """knowledge/snapshot/apis.json.gz under `root`, the knowledge directory."""
    from compatsolve.knowledge import knowledge_dir

    return (root or knowledge_dir()) / "snapshot" / FILENAME


CACHE_LAYOUT = 1


def read_history(path: Path) -> ApiHistory:
    """The history at `path`, through a cache file in the user cache: an index (marshal), then
    one marshal blob per project, read on first use. Parsing the whole JSON document takes about
    half a second; one project's blob, a few milliseconds."""
    from compatsolve.cachedir import cache_dir
    from compatsolve.fileio import cache_key

    stat = path.stat()
    key = f"{stat.st_size}-{stat.st_mtime_ns}-{cache_key(str(path.resolve()).encode())}-{CACHE_LAYOUT}"
    cached = cache_dir() / f"apis-{key}.cache"
    opened = _open_cache(cached)
    if opened is not None:
        return opened
    document = json.loads(gzip.decompress(path.read_bytes()))
    if document.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a {SCHEMA} document")
    stored: Mapping[str, Any] = document["projects"]
    history = ApiHistory(document.get("date", ""), import_map(stored), tuple(stored), stored.get)
    _write_cache(cached, history, stored)
    return history


def _write_cache(cached: Path, history: ApiHistory, stored: Mapping[str, Any]) -> None:
    from compatsolve.fileio import replace_cache

    blobs = {project: marshal.dumps(part) for project, part in stored.items()}
    blobs[DEFINING] = marshal.dumps(defining_map(stored, stored.get))
    index: dict[str, tuple[int, int]] = {}
    offset = 0
    for name, blob in blobs.items():
        index[name] = (offset, len(blob))
        offset += len(blob)
    header = marshal.dumps((history.date, dict(history._imports), history.projects, index))
    replace_cache(cached, [len(header).to_bytes(8, "little"), header, *blobs.values()], "apis-*.cache")


def _open_cache(cached: Path) -> ApiHistory | None:
    try:
        with cached.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            date, imports, projects, index = marshal.loads(handle.read(size))
    except (OSError, EOFError, ValueError, TypeError):
        return None
    base = 8 + size

    def read(name: str) -> dict[str, Any] | None:
        where = index.get(name)
        if where is None:
            return None
        try:
            with cached.open("rb") as handle:
                handle.seek(base + where[0])
                data = handle.read(where[1])
            loaded: dict[str, Any] = marshal.loads(data)
            return loaded
        except (OSError, EOFError, ValueError, TypeError):
            return None

    return ApiHistory(date, imports, projects, read)


@cache
def load_history() -> ApiHistory | None:
    """The shipped history; None when it is missing or unreadable (a source checkout without it)."""
    path = shipped_path()
    try:
        return read_history(path) if path.exists() else None
    except (OSError, ValueError, EOFError):
        return None
