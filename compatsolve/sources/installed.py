"""Installed distributions, read from `*.dist-info/METADATA` files — never by importing them.

Works on any site-packages directory, so another environment (`--python`, `--site-packages`) is
read without executing its interpreter. torch's build facts come from `torch/version.py`, parsed
as text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from compatsolve.environment import Package, TorchBuild
from compatsolve.errors import InputError
from compatsolve.names import canonicalize_name

_VERSION_PY_FIELD = re.compile(r"^(__version__|cuda|git_version|hip)\s*(?::\s*\S+\s*)?=\s*(.+?)\s*$", re.M)


def read_metadata_headers(path: Path) -> dict[str, list[str]]:
    """The RFC 822 header block of a METADATA/PKG-INFO file (the body is skipped: it can be big)."""
    headers: dict[str, list[str]] = {}
    last: str | None = None
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line in ("\n", "\r\n"):
                break
            if line[:1] in (" ", "\t") and last is not None:
                continue  # folded continuation (long descriptions); nothing we read is folded
            key, sep, value = line.partition(":")
            if not sep:
                continue
            last = key.strip()
            headers.setdefault(last.lower(), []).append(value.strip())
    return headers


def iter_distributions(site_packages: Path) -> Iterator[Package]:
    try:
        entries = list(os.scandir(site_packages))
    except OSError as exc:
        raise InputError(f"{site_packages}: cannot read site-packages: {exc.strerror}") from None
    for entry in entries:
        if entry.name.endswith(".dist-info"):
            meta = Path(entry.path) / "METADATA"
        elif entry.name.endswith(".egg-info"):
            meta = Path(entry.path) / "PKG-INFO" if entry.is_dir() else Path(entry.path)
        else:
            continue
        try:
            headers = read_metadata_headers(meta)
        except OSError:
            continue
        name = (headers.get("name") or [""])[0]
        version = (headers.get("version") or [""])[0]
        if not name or not version:
            continue
        installer = None
        if entry.name.endswith(".dist-info"):
            try:
                installer = (Path(entry.path) / "INSTALLER").read_text().strip() or None
            except OSError:
                installer = None
        yield Package(
            name=canonicalize_name(name),
            version=version,
            requires=tuple(headers.get("requires-dist", ())),
            requires_python=next(iter(headers.get("requires-python") or ()), None),
            installer=installer,
        )


def read_distributions(site_dirs: list[Path]) -> dict[str, Package]:
    """All distributions of the given site directories; the first directory wins on duplicates."""
    found: dict[str, Package] = {}
    for site in site_dirs:
        for pkg in iter_distributions(site):
            found.setdefault(pkg.name, pkg)
    return found


def read_torch_build(site_dirs: list[Path]) -> TorchBuild | None:
    """torch's version, CUDA and git hash from `torch/version.py`, parsed as text (not executed)."""
    for site in site_dirs:
        path = site / "torch" / "version.py"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        values = {}
        for key, raw in _VERSION_PY_FIELD.findall(text):
            raw = raw.strip()
            values[key] = None if raw == "None" else raw.strip("'\"")
        if values.get("__version__"):
            return TorchBuild(
                version=str(values["__version__"]),
                cuda=values.get("cuda"),
                git_version=values.get("git_version"),
                hip=values.get("hip"),
            )
    return None


def site_dirs_of_interpreter(python: Path) -> tuple[list[Path], str | None]:
    """The site-packages of an interpreter found from its path alone, and its X.Y version.

    `<prefix>/bin/python` (venv, conda, system) -> `<prefix>/lib/python3.X/site-packages`;
    Windows layouts use `<prefix>/Lib/site-packages`. Nothing is executed.
    """
    if not python.exists():
        raise InputError(f"{python}: no such interpreter")
    exe = python.absolute()
    prefix = exe.parent.parent if exe.parent.name in ("bin", "Scripts") else exe.parent
    candidates = sorted(prefix.glob("lib/python3*/site-packages")) + sorted(
        prefix.glob("lib64/python3*/site-packages")
    )
    candidates += [p for p in (prefix / "Lib" / "site-packages",) if p.is_dir()]
    if not candidates:
        raise InputError(f"{python}: found no site-packages under {prefix}")
    version = None
    cfg = prefix / "pyvenv.cfg"
    if cfg.exists():
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                version = value.strip()
    if version is None:
        match = re.search(r"python(3\.\d+)", str(candidates[0]))
        version = match.group(1) if match else None
    return candidates, version
