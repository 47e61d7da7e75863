"""Whether each planned release has a file that installs on the judged Python and platform.

A package declared with `--with`, a requirements file or a lock (not one already installed, nor
one a pasted report lists: those were installed somehow) is looked up in the PyPI snapshot:
- its Requires-Python excludes this Python: pip finds no matching distribution;
- it ships wheels, none for this CPython / OS / CPU / glibc: pip builds the sdist (compilers,
  CUDA toolkit, hours) or, without one, finds nothing to install.
A project that ships only sdists (deepspeed, flash-attn) always builds; its own rules cover it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from compatsolve.environment import Environment, Package
from compatsolve.findings import Finding
from compatsolve.resolve import platform_tags, supported_tags, wheel_tags
from compatsolve.snapshot import Release, Snapshot

RULE = "release-files"
PLANNED_ORIGIN = "--with"  # also a requirements or lock path; reports and installs end in "(...)"


def planned_packages(env: Environment) -> list[Package]:
    """Packages declared to be installed, not found installed or listed by a report."""
    out = []
    for package in (env.packages or {}).values():
        origin = env.origins.get(f"pkg.{package.name}", "")
        if origin == PLANNED_ORIGIN or (origin and not origin.endswith(")")):
            out.append(package)
    return out


def _machine(facts: Mapping[str, Any]) -> tuple[Version, str, tuple[str, ...], Version | None] | None:
    try:
        python = Version(str(facts["python.version"]))
    except (KeyError, InvalidVersion):
        return None
    os_name = facts.get("os.name")
    if os_name not in ("linux", "wsl", "windows", "macos"):
        return None
    arch = facts.get("os.arch")
    # an unknown CPU: every one the OS runs on must lack a wheel before we say so
    arches = (
        (arch,) if isinstance(arch, str) else ("aarch64", "x86_64") if os_name == "macos" else ("x86_64",)
    )
    try:
        glibc = Version(str(facts["glibc.version"])) if "glibc.version" in facts else None
    except InvalidVersion:
        glibc = None
    return python, os_name, arches, glibc


def _fits(release: Release, tag_sets: Iterable[frozenset[str]]) -> bool:
    sets = list(tag_sets)
    return any(wheel_tags(w) & tags for w in release.wheel_names for tags in sets)


def _python_ok(release: Release, python: Version) -> bool:
    try:
        return not release.requires_python or SpecifierSet(release.requires_python).contains(
            python, prereleases=True
        )
    except InvalidSpecifier:
        return True


def release_file_findings(
    packages: Iterable[Package], facts: Mapping[str, Any], snapshot: Snapshot | None
) -> list[Finding]:
    machine = _machine(facts)
    if machine is None or snapshot is None:
        return []
    python, os_name, arches, glibc = machine
    tag_sets = [
        supported_tags((python.major, python.minor), tuple(platform_tags(os_name, a, glibc))) for a in arches
    ]
    here = f"CPython {python.major}.{python.minor} on {os_name}" + (
        f" {arches[0]}" if len(arches) == 1 else ""
    )
    out = []
    for package in packages:
        release = snapshot.release(package.name, package.version)
        if release is None:
            continue
        evidence = (f"https://pypi.org/project/{package.name}/{release.version}/#files",)
        label = f"{package.name} {release.version}"
        if not _python_ok(release, python):
            out.append(
                _finding(
                    package.name,
                    "error",
                    f"{label} requires Python {release.requires_python}: pip finds no matching "
                    f"distribution for Python {python.major}.{python.minor}",
                    f"PyPI's metadata for {label} says Requires-Python {release.requires_python}; pip "
                    f"skips the release on Python {python}.",
                    _way_out(snapshot, package.name, tag_sets, python),
                    evidence,
                )
            )
            continue
        if not release.wheel_names or _fits(release, tag_sets):
            continue
        has_sdist = any(not f.endswith(".whl") for f in release.filenames)
        covered = sorted({t.split("-")[0] for w in release.wheel_names for t in wheel_tags(w)})
        explanation = (
            f"None of the {len(release.wheel_names)} wheels of {label} on PyPI is for {here} "
            f"(they are tagged {', '.join(covered[:8])}{'...' if len(covered) > 8 else ''})."
        )
        if has_sdist:
            out.append(
                _finding(
                    package.name,
                    "warning",
                    f"No wheel of {label} fits {here}: pip builds it from the sdist",
                    explanation + " pip then compiles the sdist, which needs the build tools (a C/C++ "
                    "compiler, often the CUDA toolkit) and fails where they are missing or too new.",
                    _way_out(snapshot, package.name, tag_sets, python),
                    evidence,
                )
            )
        else:
            out.append(
                _finding(
                    package.name,
                    "error",
                    f"No file of {label} installs on {here}: pip finds no matching distribution",
                    explanation + " There is no sdist to build either.",
                    _way_out(snapshot, package.name, tag_sets, python),
                    evidence,
                )
            )
    return out


def _way_out(snapshot: Snapshot, name: str, tag_sets: list[frozenset[str]], python: Version) -> str:
    """The newest release with a wheel for this machine, when there is one."""
    for version, _ in snapshot.newest_first(name):
        release = snapshot.release(name, version)
        if release is not None and _python_ok(release, python) and _fits(release, tag_sets):
            return (
                f"Install {name}=={version}, the newest release with a wheel for this machine, or use "
                "a Python version and platform its wheels cover."
            )
    return (
        "Use a Python version and platform the release's wheels cover, or another package for this platform."
    )


def _finding(
    name: str, severity: str, title: str, explanation: str, fix: str, evidence: tuple[str, ...]
) -> Finding:
    return Finding(
        rule=RULE,
        kind="build-from-source-failure",
        severity=severity,
        components=(name, "python"),
        title=title,
        explanation=explanation,
        fix=fix,
        evidence=evidence,
        confidence=0.9 if severity == "error" else 0.6,
    )
