"""Declared packages: `--with NAME==VERSION`, requirements files and PEP 751 lock files."""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from compatsolve.environment import Environment, Notice, Package
from compatsolve.errors import InputError
from compatsolve.fileio import read_text_input
from compatsolve.names import canonicalize_name
from compatsolve.versions import parse_version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def pinned(requirement: Requirement) -> str | None:
    """The exact version a requirement pins (`==2.4.0`, `===2.4.0`), or None."""
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def parse_with(values: list[str], *, lenient: bool = False) -> Environment:
    packages, notices = [], []
    for value in values:
        try:
            req = Requirement(value)
            version = pinned(req)
            if version is None or parse_version(version) is None:
                raise InvalidRequirement("expected NAME==VERSION")
        except InvalidRequirement as exc:
            if not lenient:
                first = str(exc).splitlines()[0] if str(exc) else "expected NAME==VERSION"
                raise InputError(f"--with {value!r}: {first}") from None
            notices.append(
                Notice(
                    source="--with",
                    severity="warning",
                    message=f"--with {value!r} is not NAME==VERSION; ignored",
                )
            )
            continue
        packages.append(Package(name=canonicalize_name(req.name), version=version))
    return Environment(notices=tuple(notices)).with_packages(packages, "--with", complete=False)


def parse_requirements_text(text: str, origin: str, _depth: int = 0) -> Environment:
    packages: list[Package] = []
    notices: list[Notice] = []
    for number, raw in _logical_lines(text):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            option, _, rest = line.partition(" ")
            if option in ("-r", "--requirement", "-c", "--constraint") and _depth < 5:
                nested = Path(origin).parent / rest.strip()
                inner = parse_requirements_text(
                    read_text_input(str(nested), "requirements"), str(nested), _depth + 1
                )
                packages.extend((inner.packages or {}).values())
                notices.extend(inner.notices)
            continue  # index options, --hash lines, editable installs: not packages
        line = line.split(" --hash", 1)[0].split("\t--hash", 1)[0].strip()
        try:
            req = Requirement(line)
        except InvalidRequirement:
            raise InputError(f"{origin}:{number}: not a requirement: {raw.strip()[:80]!r}") from None
        version = pinned(req)
        if version is None:
            what = f"{req.name}{req.specifier}" if req.specifier else req.name
            notices.append(
                Notice(
                    source=origin,
                    message=f"line {number}: {what} is not pinned; only exact pins (==) are judged",
                    severity="info",
                )
            )
            continue
        packages.append(Package(name=canonicalize_name(req.name), version=version))
    env = Environment(notices=tuple(notices))
    return env.with_packages(packages, origin, complete=True)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; each logical line keeps the number of its first physical line."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, physical in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if physical.endswith("\\"):
            pending.append(physical[:-1])
            continue
        pending.append(physical)
        out.append((start, " ".join(pending)))
        pending = []
    if pending:
        out.append((start, " ".join(pending)))
    return out


def parse_requirements_file(path: str) -> Environment:
    return parse_requirements_text(read_text_input(path, "requirements"), path)


def parse_lock_file(path: str) -> Environment:
    """A PEP 751 `pylock.toml`: its `[[packages]]` name/version pairs."""
    text = read_text_input(path, "lock file")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not TOML: {exc}") from None
    raw_packages = doc.get("packages")
    if not isinstance(raw_packages, list):
        raise InputError(f"{path}: no [[packages]] array: not a PEP 751 lock file")
    packages = []
    for i, raw in enumerate(raw_packages):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InputError(f"{path}: packages[{i}]: expected a table with a name")
        version = raw.get("version")
        if not isinstance(version, str) or parse_version(version) is None:
            raise InputError(f"{path}: packages[{i}].version: expected a version")
        packages.append(Package(name=canonicalize_name(raw["name"]), version=version))
    return Environment().with_packages(packages, path, complete=True)
