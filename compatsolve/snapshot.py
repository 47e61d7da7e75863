"""The PyPI metadata snapshot of the stack packages: the model, its compact storage, loading.

For every release since SINCE of each stack project: upload date, yanked, requires_python,
requires_dist (from the release's own core metadata, read by compatsolve/pypi.py) and its files
(filename, sha256, URL). Written as gzip'd JSON: the shipped
copy in knowledge/snapshot/, a refreshed copy in the user cache; the newer one is used.
"""

from __future__ import annotations

import gzip
import json
import marshal
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from compatsolve.fileio import cache_key, prune_caches, replace_cache
from compatsolve.names import canonicalize_name
from compatsolve.requirement import parse_line, parsed, remember
from compatsolve.versions import parse_version

SCHEMA = "compatsolve.pypi-snapshot/1"
SINCE = "2023-01-01"
FILENAME = "pypi.json.gz"


# ---------------------------------------------------------------- model


class ReleaseFile(NamedTuple):
    filename: str
    sha256: str
    url: str


FileDetails = Callable[[], Sequence[Sequence[str]]]  # [[sha256, url], ...] in filename order


class Release:
    """One release. Its files' hashes and URLs are the bulk of the snapshot and only the pinned
    releases need them, so they are read on first use of `files`; filenames come eagerly."""

    __slots__ = (
        "_details",
        "_files",
        "filenames",
        "project",
        "requires_dist",
        "requires_python",
        "uploaded",
        "version",
        "yanked",
    )

    def __init__(
        self,
        *,
        project: str,
        version: str,
        uploaded: str,  # YYYY-MM-DD of the first file
        yanked: bool,
        requires_python: str | None,
        requires_dist: tuple[str, ...] | None,  # None: could not be read
        files: tuple[ReleaseFile, ...] | None = None,
        filenames: tuple[str, ...] | None = None,
        details: FileDetails | None = None,
    ) -> None:
        self.project = project
        self.version = version
        self.uploaded = uploaded
        self.yanked = yanked
        self.requires_python = requires_python
        self.requires_dist = requires_dist
        self._files = files
        self._details = details
        if files is not None:
            filenames = tuple(f.filename for f in files)
        if filenames is None:
            raise TypeError("Release needs files or filenames")
        self.filenames: tuple[str, ...] = filenames

    @property
    def files(self) -> tuple[ReleaseFile, ...]:
        if self._files is None:
            details = list(self._details()) if self._details else []
            if len(details) != len(self.filenames):  # a damaged cache: hashes unknown, never guessed
                details = [("", "")] * len(self.filenames)
            self._files = tuple(
                ReleaseFile(name, sha256, url)
                for name, (sha256, url) in zip(self.filenames, details, strict=True)
            )
        return self._files

    @property
    def wheel_names(self) -> tuple[str, ...]:
        return tuple(f for f in self.filenames if f.endswith(".whl"))

    @property
    def wheels(self) -> tuple[ReleaseFile, ...]:
        return tuple(f for f in self.files if f.filename.endswith(".whl"))

    @property
    def sdist_only(self) -> bool:
        return not self.wheel_names

    def __repr__(self) -> str:
        return f"Release({self.project!r}, {self.version!r})"


# A project as stored in the cache file, four marshalled blobs (see _blobs):
#   (distinct Requires-Dist lines, {version: marshalled [uploaded, yanked, requires_python,
#    line numbers, filenames]}), {version: marshalled [[sha256, url], ...]},
#   [marshalled parsed form of each line] (compatsolve/requirement.py),
#   [(version, uploaded)] of the installable releases, newest first.
Blobs = tuple[bytes, bytes, bytes, bytes]
# Where a project's four blobs lie in the cache file: offset and the four lengths.
BlobRef = tuple[int, int, int, int, int]


class Snapshot:
    """Releases by project; a project's records are built on first access (a plan touches a
    dozen of the ~60 projects, so most of the document is never turned into objects)."""

    def __init__(
        self,
        date: str,
        releases: Mapping[str, Mapping[str, Release]] | None = None,
        raw: dict[str, dict[str, Any] | Blobs] | None = None,
        stored: dict[str, BlobRef] | None = None,
        read_blobs: Callable[[BlobRef], Blobs] | None = None,
    ) -> None:
        self.date = date
        self._built: dict[str, Mapping[str, Release]] = dict(releases or {})
        # Per project: the parsed JSON object, or its blobs (from the cache) still to be read.
        self._raw: dict[str, dict[str, Any] | Blobs] = dict(raw or {})
        # Per project: where its blobs lie in the cache file, read when the project is first used.
        self._stored: dict[str, BlobRef] = dict(stored or {})
        self._read_blobs = read_blobs
        self._newest_first: dict[str, list[tuple[str, str]]] = {}

    def _unread(self, name: str) -> dict[str, Any] | Blobs | None:
        if name in self._raw:
            return self._raw[name]
        if name in self._stored and self._read_blobs is not None:
            return self._raw.setdefault(name, self._read_blobs(self._stored.pop(name)))
        return None

    @property
    def releases(self) -> dict[str, Mapping[str, Release]]:
        for name in list(self._raw) + list(self._stored):
            self.project(name)
        return self._built

    def names(self) -> set[str]:
        return set(self._built) | set(self._raw) | set(self._stored)

    def project(self, name: str) -> Mapping[str, Release]:
        key = canonicalize_name(name)
        if key not in self._built:
            raw = self._unread(key)
            if raw is not None:
                self._built[key] = _build_project(key, raw)
                if isinstance(raw, tuple):
                    self._newest_first[key] = [tuple(pair) for pair in marshal.loads(raw[3])]
                del self._raw[key]
        return self._built.get(key, {})

    def newest_first(self, name: str) -> list[tuple[str, str]]:
        """(version, upload date) of the project's installable releases (valid, not yanked, no
        pre- or dev releases), newest first: stored in the cache, so a plan parses and builds
        only the releases it tries."""
        key = canonicalize_name(name)
        releases = self.project(key)
        if key not in self._newest_first:
            pairs = ((v, r.yanked) for v, r in releases.items())
            self._newest_first[key] = [(v, releases[v].uploaded) for v in _newest_first(pairs)]
        return self._newest_first[key]

    def release(self, name: str, version: str) -> Release | None:
        """The release a version string names: `2.5.0+cu121` is 2.5.0, and `4.28` is the release
        published as 4.28.0."""
        wanted = parse_version(version)
        if wanted is None:
            return None
        releases = self.project(name)
        found = releases.get(wanted.public)
        if found is None:
            public = parse_version(wanted.public)
            found = next((r for v, r in releases.items() if parse_version(v) == public), None)
        return found

    def newest(self) -> dict[str, str]:
        out = {}
        for project in sorted(self.names()):
            raw = self._unread(project)
            versions = [
                parse_version(v) for v in (_versions(raw) if raw is not None else self._built[project])
            ]
            final = [v for v in versions if v is not None and not v.is_prerelease]
            pool = final or [v for v in versions if v is not None]
            if pool:
                out[project] = str(max(pool))
        return out

    def release_count(self) -> int:
        for name in list(self._stored):
            self._unread(name)
        raw = sum(len(_versions(v)) for v in self._raw.values())
        return raw + sum(len(v) for v in self._built.values())


def _versions(raw: dict[str, Any] | Blobs) -> list[str]:
    return list(marshal.loads(raw[0])[1] if isinstance(raw, tuple) else raw)


class StoredReleases(Mapping[str, Release]):
    """A project's releases from the cache blobs; each Release is built when first looked up."""

    def __init__(self, project: str, lines: list[str], stored: dict[str, bytes], details: bytes) -> None:
        self._project = project
        self._lines = lines
        self._stored = stored
        self._details_blob = details
        self._details: dict[str, bytes] | None = None
        self._built: dict[str, Release] = {}

    def __getitem__(self, version: str) -> Release:
        if version not in self._built:
            uploaded, yanked, requires_python, deps, names = marshal.loads(self._stored[version])
            self._built[version] = Release(
                project=self._project,
                version=version,
                uploaded=uploaded,
                yanked=yanked,
                requires_python=requires_python,
                requires_dist=None if deps is None else tuple(self._lines[i] for i in deps),
                filenames=tuple(names),
                details=lambda: self._files_of(version),
            )
        return self._built[version]

    def _files_of(self, version: str) -> Sequence[Sequence[str]]:
        if self._details is None:
            self._details = marshal.loads(self._details_blob)
        one = self._details.get(version)
        return () if one is None else marshal.loads(one)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)


def _build_project(project: str, raw: dict[str, Any] | Blobs) -> Mapping[str, Release]:
    if isinstance(raw, tuple):
        lines, stored = marshal.loads(raw[0])
        remember(dict(zip(lines, marshal.loads(raw[2]), strict=True)))
        return StoredReleases(project, lines, stored, raw[1])
    return {
        version: Release(
            project=project,
            version=version,
            uploaded=r["uploaded"],
            yanked=bool(r["yanked"]),
            requires_python=r["requires_python"],
            requires_dist=None if r["requires_dist"] is None else tuple(r["requires_dist"]),
            files=tuple(ReleaseFile(*f) for f in r["files"]),
        )
        for version, r in raw.items()
    }


def _blobs(versions: dict[str, Any]) -> Blobs:
    """A project's cache blobs. Everything is stored per release (or per Requires-Dist line) and
    decoded when first used: a plan looks at a few releases of each project, not at all ~150."""
    # Releases repeat the same Requires-Dist lines (transformers: ~300 lines x 150 releases), so
    # each distinct line is stored once and releases refer to it by number.
    lines = sorted({line for r in versions.values() for line in r["requires_dist"] or ()})
    number = {line: i for i, line in enumerate(lines)}
    releases = {}
    for version, r in versions.items():
        deps = None if r["requires_dist"] is None else [number[line] for line in r["requires_dist"]]
        names = [f[0] for f in r["files"]]
        releases[version] = marshal.dumps(
            [r["uploaded"], bool(r["yanked"]), r["requires_python"], deps, names]
        )
    details = {v: marshal.dumps([[f[1], f[2]] for f in r["files"]]) for v, r in versions.items()}
    parsed = [marshal.dumps(parse_line(line)) for line in lines]
    usable = _newest_first((v, bool(r["yanked"])) for v, r in versions.items())
    order = [(v, versions[v]["uploaded"]) for v in usable]
    return (
        marshal.dumps((lines, releases)),
        marshal.dumps(details),
        marshal.dumps(parsed),
        marshal.dumps(order),
    )


def _newest_first(releases: Iterable[tuple[str, bool]]) -> list[str]:
    """Of (version, yanked) pairs, the installable versions (valid, not yanked, no pre- or dev
    releases), newest first; equal versions spelt differently keep their order (stable sort)."""
    usable = []
    for text, yanked in releases:
        version = parse_version(text)
        if version is not None and not yanked and not version.is_prerelease:
            usable.append((version, text))
    return [text for _, text in sorted(usable, key=lambda pair: pair[0], reverse=True)]


def to_document(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "date": snapshot.date,
        "projects": {
            project: {
                version: {
                    "uploaded": r.uploaded,
                    "yanked": r.yanked,
                    "requires_python": r.requires_python,
                    "requires_dist": None if r.requires_dist is None else list(r.requires_dist),
                    "files": [[f.filename, f.sha256, f.url] for f in r.files],
                }
                for version, r in sorted(releases.items())
            }
            for project, releases in sorted(snapshot.releases.items())
        },
    }


def from_document(doc: dict[str, Any]) -> Snapshot:
    if doc.get("schema") != SCHEMA or not isinstance(doc.get("projects"), dict):
        raise ValueError(f"not a {SCHEMA} document")
    return Snapshot(date=str(doc["date"]), raw=dict(doc["projects"]))


# ---------------------------------------------------------------- locations


def shipped_path(root: Path | None = None) -> Path:
    from compatsolve.knowledge import knowledge_dir

    return (root or knowledge_dir()) / "snapshot" / FILENAME


def cache_path() -> Path:
    from compatsolve.cachedir import cache_dir

    return cache_dir() / FILENAME


_CACHE_LAYOUT = 6  # bump when the blobs' layout changes: older cache files are then rebuilt


def _read(path: Path) -> Snapshot | None:
    """The snapshot at `path`, through a cache file of per-project blobs: a command then reads
    and parses only the projects it touches instead of the whole document. The cache file is an
    index (a pickle) followed by the blobs, each read with one positioned read when first used."""
    try:
        stat = path.stat()
    except OSError:
        return None
    where = cache_key(str(path.resolve()).encode())
    key = f"{stat.st_size}-{stat.st_mtime_ns}-{where}-{_CACHE_LAYOUT}"
    cached = cache_path().parent / f"snapshot-{key}.cache"
    loaded = _open_cache(cached)
    if loaded is not None:
        return loaded
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            snapshot = from_document(json.load(handle))
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    blobs = {name: _blobs(raw) for name, raw in snapshot._raw.items() if isinstance(raw, dict)}
    _write_cache(cached, snapshot.date, blobs)
    return snapshot


def _open_cache(cached: Path) -> Snapshot | None:
    import pickle

    try:
        handle = cached.open("rb", buffering=0)
    except OSError:
        return None
    try:
        size = int.from_bytes(handle.read(8), "little")
        date, index = pickle.loads(handle.read(size))
        if not isinstance(index, dict) or not isinstance(date, str):
            raise ValueError("not a snapshot cache")
        base = 8 + size
        # a file cut short (or written by another layout) is rebuilt, never half-read
        if os.fstat(handle.fileno()).st_size != base + sum(sum(ref[1:]) for ref in index.values()):
            raise ValueError("truncated snapshot cache")
    except (OSError, pickle.PickleError, EOFError, ValueError, TypeError, IndexError):
        handle.close()
        return None

    def read_blobs(ref: BlobRef) -> Blobs:
        offset, *lengths = ref
        handle.seek(base + offset)
        data = handle.read(sum(lengths))
        ends = [sum(lengths[: i + 1]) for i in range(len(lengths))]
        return data[: ends[0]], data[ends[0] : ends[1]], data[ends[1] : ends[2]], data[ends[2] :]

    # The file stays open while the snapshot lives: projects are read from it when first used.
    snapshot = Snapshot(date=date, stored=index, read_blobs=read_blobs)
    weakref.finalize(snapshot, handle.close)
    return snapshot


def _write_cache(cached: Path, date: str, blobs: dict[str, Blobs]) -> None:
    """The index, then the blobs."""
    import pickle

    index: dict[str, BlobRef] = {}
    offset = 0
    for name, parts in blobs.items():
        index[name] = (offset, *(len(part) for part in parts))  # type: ignore[assignment]
        offset += sum(len(part) for part in parts)
    header = pickle.dumps((date, index), protocol=pickle.HIGHEST_PROTOCOL)
    prune_caches(cached.parent, "snapshot-*.pickle", keep=0)  # the layout before the index
    data = (part for blob in blobs.values() for part in blob)
    replace_cache(cached, [len(header).to_bytes(8, "little"), header, *data], "snapshot-*.cache")


def _read_date(path: Path) -> str | None:
    """The snapshot's date without parsing all of it (it is near the start of the document)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            head = handle.read(200)
    except (OSError, EOFError):
        return None
    import re

    match = re.search(r'"date":\s*"(\d{4}-\d{2}-\d{2})"', head)
    return match.group(1) if match else None


@cache
def load_snapshot() -> Snapshot | None:
    """The newer of the user-cache refresh and the shipped snapshot, or None if neither exists."""
    candidates = [(p, _read_date(p)) for p in (cache_path(), shipped_path()) if p.exists()]
    candidates = [(p, d) for p, d in candidates if d]
    for path, _ in sorted(candidates, key=lambda c: c[1] or "", reverse=True):
        snapshot = _read(path)
        if snapshot is not None:
            return snapshot
    return None


def snapshot_summary() -> dict[str, Any] | None:
    snapshot = load_snapshot()
    if snapshot is None:
        return None
    return {
        "date": snapshot.date,
        "newest": snapshot.newest(),
        "projects": len(snapshot.names()),
        "releases": snapshot.release_count(),
    }


def write_snapshot(snapshot: Snapshot, path: Path) -> None:
    """Atomic: a gzip'd JSON written beside `path`, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(to_document(snapshot), separators=(",", ":")).encode()
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(data)
    os.replace(tmp, path)


class Published(NamedTuple):
    date: str  # YYYY-MM-DD of the release's first file
    requires: frozenset[str]  # the PEP 503 names its Requires-Dist lines name (extras too)


def published(project: str, version: str) -> Published | None:
    """When `project` `version` was published and what it requires, if the snapshot holds that
    release (Snapshot.release says which versions name it)."""
    snapshot = load_snapshot()
    release = snapshot.release(project, version) if snapshot is not None else None
    if release is None:
        return None
    names = (parsed(line) for line in release.requires_dist or ())
    return Published(release.uploaded, frozenset(n[0] for n in names if n))
