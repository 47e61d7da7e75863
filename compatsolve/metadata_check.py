"""What `pip check` does, from metadata alone: every package's Requires-Dist against the versions
present. Installed packages carry their own Requires-Dist; declared ones (`--with`, `-r`, a lock,
a report) take it from the PyPI snapshot."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from compatsolve.environment import Environment, marker_values
from compatsolve.findings import Finding
from compatsolve.requirement import marker_holds, parsed
from compatsolve.versions import in_range, parse_version, public_version

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
    values.update(marker_values(env.python_version, env.os_name, env.arch))
    values["extra"] = ""
    return values


def check_requirements(
    env: Environment, snapshot_requires: Mapping[tuple[str, str], Iterable[str]]
) -> list[Finding]:
    packages = env.packages or {}
    markers = marker_environment(env)
    findings: list[Finding] = []
    for pkg in sorted(packages.values(), key=lambda p: p.name):
        requires = pkg.requires or tuple(snapshot_requires.get((pkg.name, public_version(pkg.version)), ()))
        source = f"https://pypi.org/project/{pkg.name}/{public_version(pkg.version)}/"
        for line in requires:
            found = parsed(line)
            if found is None:
                continue
            dep, spec, marker = found
            if marker is not None and not marker_holds(line, marker, markers):
                continue
            have = packages.get(dep)
            if have is None:
                if env.packages_complete:
                    findings.append(_finding(pkg.name, pkg.version, dep, spec, None, source))
                continue
            version = parse_version(have.version)
            if version is None or not spec:
                continue
            if not in_range(spec, version):
                findings.append(_finding(pkg.name, pkg.version, dep, spec, have.version, source))
    return findings


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
        release = snapshot.release(pkg.name, pkg.version)
        if release is not None and release.requires_dist:
            out[(pkg.name, public_version(pkg.version))] = release.requires_dist
    return out
