"""Fetching the PyPI metadata snapshot: the JSON simple index for files, hashes and upload
dates; each release's own core metadata (the wheel's PEP 658 `.metadata`, else METADATA read
through HTTP range requests, else the sdist's PKG-INFO read from the start of the stream).

Kept apart from compatsolve/snapshot.py (the model and its storage) so that commands which only
read the snapshot never import the network and archive modules.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, NamedTuple

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion

from compatsolve.snapshot import (
    SINCE,
    Release,
    ReleaseFile,
    Snapshot,
    cache_path,
    load_snapshot,
    shipped_path,
    write_snapshot,
)
from compatsolve.stack import STACK_PROJECTS

SIMPLE_URL = "https://pypi.org/simple/{project}/"
USER_AGENT = "compatsolve-snapshot (+https://pypi.org/project/compatsolve/)"
TIMEOUT = 60


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


class ZipEntry(NamedTuple):
    name: str
    offset: int  # of the member's local header
    size: int  # compressed
    method: int  # 0 stored, 8 deflated


def wheel_directory(url: str) -> list[ZipEntry]:
    """The members of a remote wheel, from its zip central directory, read by HTTP ranges."""
    tail = _get(url, {"Range": "bytes=-65536"})
    end = tail.rfind(b"PK\x05\x06")
    if end < 0:
        raise ValueError("no zip end record")
    (count,) = struct.unpack("<H", tail[end + 10 : end + 12])
    size, offset = struct.unpack("<II", tail[end + 12 : end + 20])
    if offset == 0xFFFFFFFF or count == 0xFFFF:  # zip64: the real sizes are in its end record
        locator = tail.rfind(b"PK\x06\x07")
        (record_at,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
        record = _get(url, {"Range": f"bytes={record_at}-{record_at + 55}"})
        size, offset = struct.unpack("<QQ", record[40:56])
        directory = _get(url, {"Range": f"bytes={offset}-{offset + size - 1}"})
    elif size <= end:  # the directory sits just before the end record, inside the tail
        directory = tail[end - size : end]
    else:
        directory = _get(url, {"Range": f"bytes={offset}-{offset + size - 1}"})
    entries = []
    pos = 0
    while pos + 46 <= len(directory) and directory[pos : pos + 4] == b"PK\x01\x02":
        (method,) = struct.unpack("<H", directory[pos + 10 : pos + 12])
        (csize,) = struct.unpack("<I", directory[pos + 20 : pos + 24])
        nlen, xlen, clen = struct.unpack("<HHH", directory[pos + 28 : pos + 34])
        (local,) = struct.unpack("<I", directory[pos + 42 : pos + 46])
        name = directory[pos + 46 : pos + 46 + nlen].decode("utf-8", errors="replace")
        entries.append(ZipEntry(name, local, csize, method))
        pos += 46 + nlen + xlen + clen
    return entries


GAP = 512 * 1024  # members closer than this are read with one range request


def read_members(url: str, entries: Iterable[ZipEntry]) -> Iterator[tuple[str, bytes]]:
    """(name, content) of the given members of a remote wheel, in file order; neighbours are read
    together, and the bytes between runs (a compiled library) never are."""
    runs: list[list[ZipEntry]] = []
    for entry in sorted(entries, key=lambda e: e.offset):
        if runs and entry.offset - (runs[-1][-1].offset + runs[-1][-1].size) < GAP:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    for run in runs:
        start, last = run[0].offset, run[-1]
        # a local header is 30 bytes, then the name and an extra field of its own length
        stop = last.offset + 30 + 2 * len(last.name.encode()) + 1024 + last.size
        chunk = _get(url, {"Range": f"bytes={start}-{stop}"})
        for entry in run:
            at = entry.offset - start
            nlen, xlen = struct.unpack("<HH", chunk[at + 26 : at + 30])
            body = chunk[at + 30 + nlen + xlen : at + 30 + nlen + xlen + entry.size]
            yield entry.name, (zlib.decompress(body, -15) if entry.method == 8 else body)


def read_wheel_metadata(url: str) -> bytes:
    """METADATA of a remote wheel: PEP 658 first, else HTTP range requests into the zip."""
    try:
        return _get(url + ".metadata")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    for entry in wheel_directory(url):
        if entry.name.endswith(".dist-info/METADATA") and entry.name.count("/") == 1:
            return next(read_members(url, [entry]))[1]
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
