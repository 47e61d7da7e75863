"""What `pip check` does, from metadata alone: every package's Requires-Dist against the versions
present. Installed packages carry their own Requires-Dist; declared ones (`--with`, `-r`, a lock,
a report) take it from the PyPI snapshot."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from packaging.markers import Marker, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from compatsolve.environment import PLATFORM_SYSTEM, SYS_PLATFORM, Environment
from compatsolve.findings import Finding
from compatsolve.names import canonicalize_name

# How pip reports a Requires-Dist conflict, after an install ("X 1.0 requires torch==2.3.0, but you
# have torch 2.3.1 which is incompatible") or when it cannot resolve one.
PIP_CONFLICT_REPORT = re.compile(
    r"requires [^,\n]+, but you have |conflicting dependencies|ResolutionImpossible",
    re.IGNORECASE,
)


def marker_environment(env: Environment) -> dict[str, str]:
    """PEP 508 marker values for the judged environment (unknown ones: the running interpreter's)."""
    from packaging.markers import default_environment

    values: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    if env.python_version:
        parts = env.python_version.split(".")
        values["python_version"] = ".".join(parts[:2])
        values["python_full_version"] = env.python_version if len(parts) > 2 else env.python_version + ".0"
    if env.os_name in SYS_PLATFORM:
        values["sys_platform"] = SYS_PLATFORM[env.os_name]
        values["platform_system"] = PLATFORM_SYSTEM[env.os_name]
        values["os_name"] = "nt" if env.os_name == "windows" else "posix"
    if env.arch:
        values["platform_machine"] = (
            "AMD64" if env.os_name == "windows" and env.arch == "x86_64" else env.arch
        )
    values["extra"] = ""
    return values


@lru_cache(maxsize=65536)
def _parse(line: str) -> Requirement | None:
    try:
        return Requirement(line)
    except InvalidRequirement:
        return None


@lru_cache(maxsize=65536)
def _marker_true(marker: str, env_key: tuple[tuple[str, str], ...]) -> bool:
    try:
        return Marker(marker).evaluate(dict(env_key))
    except (UndefinedEnvironmentName, ValueError):
        return False


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def check_requirements(
    env: Environment, snapshot_requires: Mapping[tuple[str, str], Iterable[str]]
) -> list[Finding]:
    packages = env.packages or {}
    markers = tuple(sorted(marker_environment(env).items()))
    findings: list[Finding] = []
    for pkg in sorted(packages.values(), key=lambda p: p.name):
        requires = pkg.requires or tuple(snapshot_requires.get((pkg.name, _public(pkg.version)), ()))
        source = f"https://pypi.org/project/{pkg.name}/{_public(pkg.version)}/"
        for line in requires:
            req = _parse(line)
            if req is None:
                continue
            if req.marker is not None and not _marker_true(str(req.marker), markers):
                continue
            dep = canonicalize_name(req.name)
            have = packages.get(dep)
            if have is None:
                if env.packages_complete:
                    findings.append(_finding(pkg.name, pkg.version, dep, str(req.specifier), None, source))
                continue
            version = _version(have.version)
            if version is None or not req.specifier:
                continue
            if not req.specifier.contains(version, prereleases=True):
                findings.append(
                    _finding(pkg.name, pkg.version, dep, str(req.specifier), have.version, source)
                )
    return findings


def _public(version: str) -> str:
    parsed = _version(version)
    return parsed.public if parsed else version


def _finding(name: str, version: str, dep: str, spec: str, have: str | None, source: str) -> Finding:
    wanted = f"{dep}{spec}" if spec else dep
    if have is None:
        severity, title = "warning", f"{name} {version} requires {wanted}, which is not installed"
        explanation = (
            f"{name} {version} declares a dependency on {wanted} in its metadata, and no "
            f"version of {dep} is present. Code paths that import it will fail."
        )
        fix = f"pip install '{wanted}'"
    else:
        severity, title = "error", f"{name} {version} requires {wanted}, but {have} is present"
        explanation = (
            f"{name} {version} declares {wanted} in its metadata (Requires-Dist), but "
            f"{dep} {have} is installed or declared. Packages that pin exact versions (vLLM "
            "pins torch, xformers pins torch) are built against that version, and other "
            "versions fail at import or at run time."
        )
        fix = f"pip install '{wanted}'  # or choose a {name} release whose pins match {dep} {have}"
    return Finding(
        rule="requires-dist",
        kind="package-pin-conflict",
        severity=severity,
        components=(name, dep),
        title=title,
        explanation=explanation,
        fix=fix,
        evidence=(source,),
        confidence=0.95,
    )


def snapshot_requirements(env: Environment) -> dict[tuple[str, str], tuple[str, ...]]:
    """Requires-Dist from the PyPI snapshot for packages whose metadata was not read locally."""
    from compatsolve.snapshot import load_snapshot

    wanted = [p for p in (env.packages or {}).values() if not p.requires]
    if not wanted:
        return {}
    snapshot = load_snapshot()
    if snapshot is None:
        return {}
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for pkg in wanted:
        release = snapshot.project(pkg.name).get(_public(pkg.version))
        if release is not None and release.requires_dist:
            out[(pkg.name, _public(pkg.version))] = release.requires_dist
    return out
