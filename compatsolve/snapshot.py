"""The PyPI metadata snapshot of the stack packages: fetch, store compactly, load.

For every release since SINCE of each stack project: upload date, yanked, requires_python,
requires_dist (from the release's own core metadata: the wheel's PEP 658 `.metadata` file, else
the wheel's METADATA read through HTTP range requests, else the sdist's PKG-INFO read from the
start of the stream) and its files (filename, sha256, URL). Written as gzip'd JSON: the shipped
copy in knowledge/snapshot/, a refreshed copy in the user cache; the newer one is used.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import struct
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from compatsolve.stack import STACK_PROJECTS

SCHEMA = "compatsolve.pypi-snapshot/1"
SINCE = "2023-01-01"
FILENAME = "pypi.json.gz"
SIMPLE_URL = "https://pypi.org/simple/{project}/"
USER_AGENT = "compatsolve-snapshot (+https://pypi.org/project/compatsolve/)"
TIMEOUT = 60


# ---------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class ReleaseFile:
    filename: str
    sha256: str
    url: str


@dataclass(frozen=True, slots=True)
class Release:
    project: str
    version: str
    uploaded: str  # YYYY-MM-DD of the first file
    yanked: bool
    requires_python: str | None
    requires_dist: tuple[str, ...] | None  # None: could not be read
    files: tuple[ReleaseFile, ...]

    @property
    def wheels(self) -> tuple[ReleaseFile, ...]:
        return tuple(f for f in self.files if f.filename.endswith(".whl"))

    @property
    def sdist_only(self) -> bool:
        return not self.wheels


class Snapshot:
    """Releases by project; a project's records are built on first access (a plan touches a
    dozen of the ~60 projects, so most of the document is never turned into objects)."""

    def __init__(
        self,
        date: str,
        releases: dict[str, dict[str, Release]] | None = None,
        raw: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.date = date
        self._built: dict[str, dict[str, Release]] = dict(releases or {})
        self._raw: dict[str, dict[str, Any]] = raw or {}

    @property
    def releases(self) -> dict[str, dict[str, Release]]:
        for name in list(self._raw):
            self.project(name)
        return self._built

    def names(self) -> set[str]:
        return set(self._built) | set(self._raw)

    def project(self, name: str) -> dict[str, Release]:
        key = canonicalize_name(name)
        if key not in self._built and key in self._raw:
            self._built[key] = _build_project(key, self._raw.pop(key))
        return self._built.get(key, {})

    def newest(self) -> dict[str, str]:
        out = {}
        for project in sorted(self.names()):
            versions = [_version(v) for v in self._raw.get(project) or self._built.get(project, {})]
            final = [v for v in versions if v is not None and not v.is_prerelease]
            pool = final or [v for v in versions if v is not None]
            if pool:
                out[project] = str(max(pool))
        return out

    def release_count(self) -> int:
        return sum(len(v) for v in self._raw.values()) + sum(len(v) for v in self._built.values())


def _build_project(project: str, versions: dict[str, Any]) -> dict[str, Release]:
    return {
        version: Release(
            project=project,
            version=version,
            uploaded=raw["uploaded"],
            yanked=bool(raw["yanked"]),
            requires_python=raw["requires_python"],
            requires_dist=None if raw["requires_dist"] is None else tuple(raw["requires_dist"]),
            files=tuple(ReleaseFile(*f) for f in raw["files"]),
        )
        for version, raw in versions.items()
    }


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


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
    from platformdirs import user_cache_dir

    return Path(os.environ.get("COMPATSOLVE_CACHE") or user_cache_dir("compatsolve")) / FILENAME


def _read(path: Path) -> Snapshot | None:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return from_document(json.load(handle))
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None


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


# ---------------------------------------------------------------- fetching


def _get(url: str, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        data: bytes = response.read()
        return data


def fetch_index(project: str) -> dict[str, Any]:
    data = _get(SIMPLE_URL.format(project=project), {"Accept": "application/vnd.pypi.simple.v1+json"})
    result: dict[str, Any] = json.loads(data)
    return result


def _file_version(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        if filename.endswith((".tar.gz", ".zip")):
            return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def group_releases(project: str, index: dict[str, Any], since: str) -> dict[str, list[dict[str, Any]]]:
    by_version: dict[str, list[dict[str, Any]]] = {}
    for entry in index.get("files", []):
        version = _file_version(entry["filename"])
        if version is not None:
            by_version.setdefault(version, []).append(entry)
    return {
        v: files
        for v, files in by_version.items()
        if min(f.get("upload-time", "") for f in files)[:10] >= since
    }


def _metadata_wheel(files: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The wheel whose metadata stands for the release: a Linux x86_64 or pure-Python one."""
    wheels = [f for f in files if f["filename"].endswith(".whl")]

    def rank(f: dict[str, Any]) -> tuple[int, str]:
        name = f["filename"]
        return (0 if "x86_64" in name and "linux" in name else 1 if "none-any" in name else 2, name)

    return min(wheels, key=rank) if wheels else None


def parse_requires_dist(metadata: bytes) -> tuple[tuple[str, ...], str | None]:
    text = metadata.decode("utf-8", errors="replace")
    header = text.split("\n\n", 1)[0]
    requires, python = [], None
    for line in header.splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "requires-dist":
            requires.append(value.strip())
        elif key.lower() == "requires-python":
            python = value.strip()
    return tuple(requires), python


def read_wheel_metadata(url: str) -> bytes:
    """METADATA of a remote wheel: PEP 658 first, else HTTP range requests into the zip."""
    try:
        return _get(url + ".metadata")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    tail = _get(url, {"Range": "bytes=-65536"})
    end = tail.rfind(b"PK\x05\x06")
    if end < 0:
        raise ValueError("no zip end record")
    size, offset = struct.unpack("<II", tail[end + 12 : end + 20])
    directory = (
        tail[-(len(tail) - end) - size : end]
        if size <= end
        else _get(url, {"Range": f"bytes={offset}-{offset + size - 1}"})
    )
    pos = 0
    while pos + 46 <= len(directory) and directory[pos : pos + 4] == b"PK\x01\x02":
        (method,) = struct.unpack("<H", directory[pos + 10 : pos + 12])
        (csize,) = struct.unpack("<I", directory[pos + 20 : pos + 24])
        nlen, xlen, clen = struct.unpack("<HHH", directory[pos + 28 : pos + 34])
        (local,) = struct.unpack("<I", directory[pos + 42 : pos + 46])
        name = directory[pos + 46 : pos + 46 + nlen].decode("utf-8", errors="replace")
        if name.endswith(".dist-info/METADATA") and name.count("/") == 1:
            head = _get(url, {"Range": f"bytes={local}-{local + 30 + nlen + 1024 + csize}"})
            lnlen, lxlen = struct.unpack("<HH", head[26:30])
            body = head[30 + lnlen + lxlen : 30 + lnlen + lxlen + csize]
            return zlib.decompress(body, -15) if method == 8 else body
        pos += 46 + nlen + xlen + clen
    raise ValueError("no METADATA in wheel")


def read_sdist_metadata(url: str) -> bytes:
    """PKG-INFO of a remote sdist, streamed: stops reading once PKG-INFO is found."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        if url.endswith(".zip"):
            import zipfile

            with zipfile.ZipFile(io.BytesIO(response.read())) as archive:
                name = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/PKG-INFO"))
                return archive.read(name)
        with tarfile.open(fileobj=response, mode="r|gz") as archive:
            for member in archive:
                if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        return handle.read()
    raise ValueError("no PKG-INFO in sdist")


def build_release(project: str, version: str, files: list[dict[str, Any]]) -> Release:
    wheel = _metadata_wheel(files)
    requires_dist: tuple[str, ...] | None = None
    requires_python = next((f.get("requires-python") for f in files if f.get("requires-python")), None)
    try:
        if wheel is not None:
            requires_dist, python = parse_requires_dist(read_wheel_metadata(wheel["url"]))
        else:
            sdist = next(f for f in files if f["filename"].endswith((".tar.gz", ".zip")))
            requires_dist, python = parse_requires_dist(read_sdist_metadata(sdist["url"]))
        requires_python = requires_python or python
    except (OSError, ValueError, StopIteration, tarfile.TarError, zlib.error, struct.error):
        requires_dist = None  # unknown, never "no requirements"
    return Release(
        project=project,
        version=version,
        uploaded=min(f.get("upload-time", "") for f in files)[:10],
        yanked=all(bool(f.get("yanked")) for f in files),
        requires_python=requires_python,
        requires_dist=requires_dist,
        files=tuple(
            ReleaseFile(f["filename"], f.get("hashes", {}).get("sha256", ""), f["url"])
            for f in sorted(files, key=lambda f: f["filename"])
        ),
    )


Progress = Callable[[str, int, int], None]  # (what, done, total)


def fetch_snapshot(
    projects: Iterable[str] = STACK_PROJECTS,
    since: str = SINCE,
    workers: int = 16,
    progress: Progress | None = None,
    previous: Snapshot | None = None,
) -> Snapshot:
    """Fetch every release since `since` of `projects`, plus the nvidia-* runtime packages that
    torch's releases require. Releases already in `previous` with metadata are reused."""
    names: list[str] = [canonicalize_name(p) for p in projects]
    indexes: dict[str, dict[str, Any]] = {}

    def load_indexes(batch: list[str]) -> None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(fetch_index, name): name for name in batch}
            for done, future in enumerate(as_completed(futures), 1):
                indexes[futures[future]] = future.result()
                if progress:
                    progress("indexes", done, len(batch))

    load_indexes(names)
    jobs: list[tuple[str, str, list[dict[str, Any]]]] = []
    for name in names:
        for version, files in group_releases(name, indexes[name], since).items():
            jobs.append((name, version, files))
    releases: dict[str, dict[str, Release]] = {name: {} for name in names}
    _run_jobs(jobs, releases, workers, progress, previous)
    runtime: list[str] = sorted(
        {
            name
            for r in releases.get("torch", {}).values()
            for req in (r.requires_dist or ())
            if (name := _requirement_name(req) or "").startswith("nvidia-")
        }
    )
    runtime = [n for n in runtime if n not in indexes]
    if runtime:
        load_indexes(runtime)
        extra = [(n, v, f) for n in runtime for v, f in group_releases(n, indexes[n], since).items()]
        for n in runtime:
            releases[n] = {}
        _run_jobs(extra, releases, workers, progress, previous)
    return Snapshot(date=dt.date.today().isoformat(), releases=releases)


def _requirement_name(line: str) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return None


def _run_jobs(
    jobs: list[tuple[str, str, list[dict[str, Any]]]],
    releases: dict[str, dict[str, Release]],
    workers: int,
    progress: Progress | None,
    previous: Snapshot | None,
) -> None:
    todo = []
    for name, version, files in jobs:
        old = previous.project(name).get(version) if previous else None
        if old is not None and old.requires_dist is not None and len(old.files) == len(files):
            releases[name][version] = old
        else:
            todo.append((name, version, files))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(build_release, *job): job for job in todo}
        for done, future in enumerate(as_completed(futures), 1):
            name, version, _ = futures[future]
            releases[name][version] = future.result()
            if progress:
                progress("releases", done, len(todo))


def refresh_command(*, shipped: bool, workers: int, root: Path) -> int:
    """`kb refresh`: into the user cache (or the shipped copy with --snapshot), with progress."""
    import sys

    from rich.progress import Progress as Bar

    target = shipped_path(root) if shipped else cache_path()
    previous = load_snapshot()
    with Bar(transient=True) as bar:
        tasks: dict[str, Any] = {}

        def report(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(f"PyPI {what}", total=total)
            bar.update(tasks[what], completed=done, total=total)

        try:
            snapshot = fetch_snapshot(workers=workers, progress=report, previous=previous)
        except (OSError, urllib.error.URLError) as exc:
            kept = f"keeping the snapshot of {previous.date}" if previous else "no snapshot available"
            print(f"compatsolve: cannot reach PyPI ({getattr(exc, 'reason', exc)}); {kept}", file=sys.stderr)
            return 1
    write_snapshot(snapshot, target)
    unknown = sum(1 for r in snapshot.releases.values() for x in r.values() if x.requires_dist is None)
    total = sum(len(r) for r in snapshot.releases.values())
    print(
        f"wrote {target}: {len(snapshot.releases)} projects, {total} releases since {SINCE} "
        f"({unknown} without readable metadata), taken {snapshot.date}"
    )
    return 0
