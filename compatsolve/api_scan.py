"""Scanning the stack's releases for their Python API: the modules, top-level names and class
members each release on PyPI defines, read from its files' source with `ast` (never imported,
never run), and merged into the version history of knowledge/snapshot/apis.json.gz.

Network and parsing live here, apart from compatsolve/api_history.py (the model and its storage),
so that diagnose never imports them. Wheels are read with HTTP range requests: the zip's central
directory, then only the runs of bytes that hold `.py` members (a torch or vLLM wheel is mostly
one compiled library, never downloaded). Sdist-only releases (deepspeed, flash-attn) are
streamed.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import struct
import tarfile
import urllib.request
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from compatsolve.api_history import SCHEMA, ApiScan, shipped_path, spans_of
from compatsolve.cachedir import cache_dir
from compatsolve.errors import InputError
from compatsolve.pypi import TIMEOUT, USER_AGENT, read_members, wheel_directory
from compatsolve.snapshot import Release, Snapshot, load_snapshot

# project -> whether class members are scanned too. Members answer "'X' object has no attribute
# 'y'" and "X.__init__() got an unexpected keyword argument 'y'"; torch's and numpy's are left out
# (hundreds of thousands, and those messages are rarely about them). llama-cpp-python is not
# scanned: it ships only sdists, each with a vendored llama.cpp source tree of about 50 MB.
API_PROJECTS: dict[str, bool] = {
    "transformers": True,
    "peft": True,
    "trl": True,
    "accelerate": True,
    "deepspeed": True,
    "bitsandbytes": True,
    "huggingface-hub": True,
    "vllm": True,
    "sglang": True,
    "optimum": True,
    "auto-gptq": True,
    "autoawq": True,
    "gptqmodel": True,
    "unsloth": True,
    "llamafactory": True,
    "xformers": True,
    "flash-attn": True,
    "flashinfer-python": True,
    "tokenizers": True,
    "safetensors": True,
    "triton": False,
    "torch": False,
    "numpy": False,
}
# Class members of transformers' model files are per-architecture copies of the same few
# methods: their names are kept, their members are not.
NO_MEMBERS_UNDER = ("transformers.models.",)
SKIPPED_DIRS = frozenset(
    {
        "tests",
        "test",
        "testing",
        "docs",
        "examples",
        "benchmarks",
        "benchmark",
        "scripts",
        "csrc",
        "third_party",
    }
)
CACHE_LAYOUT = 1


# ---------------------------------------------------------------- reading a release's sources


def module_name(path: str) -> str | None:
    """`transformers/models/llama/__init__.py` -> `transformers.models.llama`; None for files
    outside an importable tree (tests, examples, build scripts)."""
    if not path.endswith(".py"):
        return None
    parts = path[:-3].split("/")
    if parts[0] == "src":
        parts = parts[1:]
    if not parts or any(p in SKIPPED_DIRS or not p.isidentifier() for p in parts[:-1]):
        return None
    if len(parts) == 1 and parts[0] in {"setup", "conftest"}:
        return None
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def _wheel_members(url: str) -> Iterator[tuple[str, bytes]]:
    """(path, source) of each .py member of a remote wheel, read by ranges."""
    wanted = [
        entry
        for entry in wheel_directory(url)
        if module_name(entry.name) is not None
        and not entry.name.split("/", 1)[0].endswith((".dist-info", ".data"))
    ]
    return read_members(url, wanted)


def _sdist_members(url: str) -> Iterator[tuple[str, bytes]]:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with (
        urllib.request.urlopen(request, timeout=TIMEOUT) as response,
        tarfile.open(fileobj=response, mode="r|gz") as archive,
    ):
        for member in archive:
            path = member.name.split("/", 1)[1] if "/" in member.name else ""
            if member.isfile() and module_name(path) is not None:
                handle = archive.extractfile(member)
                if handle is not None:
                    yield path, handle.read()


def source_file(release: Release) -> tuple[str, bool] | None:
    """The file to read a release's source from: a pure-Python wheel, else a CPython x86_64
    Linux wheel, else the sdist (url, is_wheel)."""
    best: tuple[int, str] | None = None
    for file in release.files:
        if not file.filename.endswith(".whl"):
            continue
        try:
            tags = parse_wheel_filename(file.filename)[3]
        except InvalidWheelFilename:
            continue
        platforms = {t.platform for t in tags}
        rank = (
            0 if platforms == {"any"} else 1 if any("x86_64" in p and "linux" in p for p in platforms) else 9
        )
        if rank < 9 and (best is None or rank < best[0]):
            best = (rank, file.url)
    if best is not None:
        return best[1], True
    sdist = next((f.url for f in release.files if f.filename.endswith(".tar.gz")), None)
    return (sdist, False) if sdist else None


# ---------------------------------------------------------------- reading the names


def _targets(node: ast.expr) -> Iterator[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, (ast.Tuple, ast.List)):
        for element in node.elts:
            yield from _targets(element)


def _class_members(node: ast.ClassDef) -> Iterator[str]:
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield item.name
            if item.name == "__init__":
                arguments = item.args
                for arg in (*arguments.posonlyargs, *arguments.args[1:], *arguments.kwonlyargs):
                    yield f"({arg.arg}"
            for sub in ast.walk(item):  # self.x = ... anywhere in a method
                targets = (
                    sub.targets
                    if isinstance(sub, ast.Assign)
                    else [sub.target]
                    if isinstance(sub, (ast.AnnAssign, ast.AugAssign))
                    else []
                )
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        yield target.attr
        elif isinstance(item, ast.Assign):
            for target in item.targets:
                yield from _targets(target)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            yield item.target.id  # a dataclass field is also an __init__ keyword
            yield f"({item.target.id}"


_PARSED: dict[bytes, tuple[frozenset[str], frozenset[str]]] = {}


def scan_module_cached(
    source: bytes, *, package_init: bool, members: bool
) -> tuple[frozenset[str], frozenset[str]]:
    """scan_module, remembered by content: most files are the same from one release to the next."""
    key = hashlib.blake2b(source + bytes([package_init, members]), digest_size=16).digest()
    held = _PARSED.get(key)
    if held is None:
        names, found = scan_module(source, package_init=package_init, members=members)
        held = _PARSED[key] = (frozenset(names), frozenset(found))
    return held


def scan_module(source: bytes, *, package_init: bool, members: bool) -> tuple[set[str], set[str]]:
    """The top-level names a module defines (and, for a package's __init__, re-exports or lists
    for lazy import), and `Class.member` / `Class(param` entries of its classes."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set(), set()
    names: set[str] = set()
    found: set[str] = set()

    def walk(body: Iterable[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.ClassDef):
                names.add(node.name)
                if members:
                    found.update(
                        f"{node.name}{'' if m.startswith('(') else '.'}{m}" for m in _class_members(node)
                    )
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    names.update(_targets(target))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.ImportFrom) and package_init:
                names.update(a.asname or a.name for a in node.names if a.name != "*")
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                walk(node.body)
                walk(getattr(node, "orelse", []))
                walk(getattr(node, "finalbody", []))
                for handler in getattr(node, "handlers", []):
                    walk(handler.body)

    walk(tree.body)
    if package_init:  # lazy modules list their exports as strings (transformers' _import_structure)
        for node in ast.walk(tree):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                names.update(
                    e.value
                    for e in node.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value.isidentifier()
                )
    return names, found


Source = tuple[str, str, bool]  # version, url, is_wheel: picklable, for the worker processes


def scan_release(project: str, source: Source, members: bool) -> ApiScan | None:
    version, url, is_wheel = source
    modules: set[str] = set()
    names: set[str] = set()
    found: set[str] = set()
    for path, text in _wheel_members(url) if is_wheel else _sdist_members(url):
        module = module_name(path)
        if module is None:
            continue
        modules.add(module)
        keep = members and not module.startswith(NO_MEMBERS_UNDER)
        got_names, got_members = scan_module_cached(
            text, package_init=path.endswith("__init__.py"), members=keep
        )
        names |= got_names
        found |= got_members
    if not modules:
        return None
    return ApiScan(project, version, frozenset(modules), frozenset(names), frozenset(found))


# ---------------------------------------------------------------- the history


def scanned_versions(snapshot: Snapshot, project: str) -> list[Source]:
    """Final releases (and post releases) of `project` that have a readable file, oldest first;
    pre-releases and dev builds are not what users pin."""
    out = []
    for version, release in snapshot.project(project).items():
        try:
            parsed = Version(version)
        except InvalidVersion:
            continue
        if not parsed.is_prerelease and not parsed.is_devrelease and not parsed.local:
            out.append((parsed, release))
    sources = []
    for _, release in sorted(out, key=lambda pair: pair[0]):
        chosen = source_file(release)
        if chosen is not None:
            sources.append((release.version, *chosen))
    return sources


def _cached_scan(project: str, source: Source, members: bool) -> ApiScan | None:
    version = source[0]
    path = cache_dir() / "apis" / f"v{CACHE_LAYOUT}" / project / f"{version}.json.gz"
    if path.exists():
        raw = json.loads(gzip.decompress(path.read_bytes()))
        return None if raw is None else ApiScan(project, version, *(frozenset(raw[k]) for k in "nmc"))
    scan = scan_release(project, source, members)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = (
        None
        if scan is None
        else {"n": sorted(scan.modules), "m": sorted(scan.names), "c": sorted(scan.members)}
    )
    path.write_bytes(gzip.compress(json.dumps(raw).encode()))
    return scan


def project_spans(project: str, members: bool, releases: list[Source], workers: int) -> dict[str, Any] | None:
    """One project's stored history: its releases read a few ahead in threads, parsed in order
    in this process (the parse cache then meets each unchanged file again)."""
    scans: list[ApiScan] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_cached_scan, project, r, members) for r in releases]
        for release, future in zip(releases, futures, strict=True):
            try:
                scan = future.result()
            except (OSError, ValueError, struct.error, zlib.error, tarfile.TarError) as exc:
                print(f"  {project} {release[0]}: skipped ({exc})", flush=True)
                continue
            if scan is not None:
                scans.append(scan)
    print(f"  {project}: {len(scans)} of {len(releases)} releases", flush=True)
    return spans_of(scans) if scans else None


def build_document(snapshot: Snapshot, projects: dict[str, bool], workers: int) -> dict[str, Any]:
    document: dict[str, Any] = {"schema": SCHEMA, "date": snapshot.date, "projects": {}}
    jobs = {p: (p, m, scanned_versions(snapshot, p), workers) for p, m in projects.items()}
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = {p: pool.submit(project_spans, *job) for p, job in jobs.items()}
        for project, result in results.items():
            stored = result.result()
            if stored is not None:
                document["projects"][project] = stored
    return document


def refresh_command(*, workers: int, root: Path) -> int:
    snapshot = load_snapshot()
    if snapshot is None:
        raise InputError("no PyPI snapshot to scan: run `compatsolve kb refresh` first")

    document = build_document(snapshot, API_PROJECTS, workers)
    target = shipped_path(root)
    text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(gzip.compress(text.encode(), mtime=0))
    os.replace(partial, target)  # atomic: a reader sees the old file or the new one
    print(f"wrote {target}: {len(document['projects'])} projects")
    return 0
