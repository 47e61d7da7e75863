"""The release-files check (compatsolve/release_files.py) against the shipped PyPI snapshot: the
expectations are read from the snapshot's own Requires-Python and wheel file names, never typed
in, so a refreshed snapshot keeps the tests honest."""

from __future__ import annotations

from pathlib import Path

import pytest

from compatsolve.audit import audit
from compatsolve.knowledge import load
from compatsolve.resolve import platform_tags, supported_tags, wheel_tags
from compatsolve.snapshot import load_snapshot
from compatsolve.sources.assemble import EnvironmentRequest, build_environments

SNAPSHOT = load_snapshot()
pytestmark = pytest.mark.skipif(SNAPSHOT is None, reason="no PyPI snapshot")


def _release_findings(target: str, *packages: str, requirements: tuple[str, ...] = ()) -> list:
    kb = load()
    request = EnvironmentRequest(
        targets=(target,), with_packages=packages, requirements=requirements, lenient=True
    )
    judged = audit(build_environments(request, kb)[0], kb)
    return [f for f in judged.findings if f.rule == "release-files"]


def test_requires_python_that_excludes_this_python_is_an_error() -> None:
    assert SNAPSHOT is not None
    release = SNAPSHOT.release("vllm", "0.10.0")
    assert release is not None and release.requires_python
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(release.requires_python)
    assert not spec.contains("3.13") and spec.contains("3.12")
    found = _release_findings("RTX 4090,python=3.13,os=linux", "vllm==0.10.0")
    assert [(f.severity, f.kind, f.components) for f in found] == [
        ("error", "build-from-source-failure", ("vllm", "python"))
    ]
    assert release.requires_python in found[0].title
    # the way out names a release that does install on 3.13
    newer = found[0].fix.split("==", 1)[1].split(",", 1)[0]
    newer_release = SNAPSHOT.release("vllm", newer)
    assert newer_release is not None and SpecifierSet(newer_release.requires_python or "").contains("3.13")
    assert _release_findings("RTX 4090,python=3.12,os=linux", "vllm==0.10.0") == []


def test_no_wheel_for_the_platform_and_an_unknown_cpu() -> None:
    """torch's macOS wheels are arm64 only from some release on: with the CPU unknown nothing is
    said; on an Intel Mac the release has no file at all (torch ships no sdist)."""
    assert SNAPSHOT is not None
    release = SNAPSHOT.release("torch", "2.5.1")
    assert release is not None
    intel = supported_tags((3, 12), tuple(platform_tags("macos", "x86_64", None)))
    arm = supported_tags((3, 12), tuple(platform_tags("macos", "aarch64", None)))
    assert not any(wheel_tags(w) & intel for w in release.wheel_names)
    assert any(wheel_tags(w) & arm for w in release.wheel_names)
    assert all(f.endswith(".whl") for f in release.filenames)
    assert _release_findings("os=macos,python=3.12", "torch==2.5.1") == []
    found = _release_findings("os=macos,arch=x86_64,python=3.12", "torch==2.5.1")
    assert [(f.severity, f.title.split(":")[0]) for f in found] == [
        ("error", "No file of torch 2.5.1 installs on CPython 3.12 on macos x86_64")
    ]
    assert found[0].evidence == ("https://pypi.org/project/torch/2.5.1/#files",)


def test_wheels_that_miss_but_an_sdist_that_builds_is_a_warning() -> None:
    """A release with platform wheels and an sdist, none of whose wheels is for Windows: pip
    compiles it there."""
    assert SNAPSHOT is not None
    picked = None
    for version, _ in SNAPSHOT.newest_first("vllm"):
        release = SNAPSHOT.release("vllm", version)
        if release is None or not release.wheel_names:
            continue
        windows = supported_tags((3, 11), tuple(platform_tags("windows", "x86_64", None)))
        has_sdist = any(not f.endswith(".whl") for f in release.filenames)
        if has_sdist and not any(wheel_tags(w) & windows for w in release.wheel_names):
            picked = version
            break
    assert picked is not None
    found = _release_findings("os=windows,python=3.11", f"vllm=={picked}")
    assert [(f.severity, f.kind) for f in found] == [("warning", "build-from-source-failure")]
    assert "from the sdist" in found[0].title


def test_only_planned_packages_are_judged(tmp_path: Path) -> None:
    """A requirements file is a plan; a pasted report lists what is installed (it got there)."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("torch==2.5.1\n")
    found = _release_findings("os=macos,arch=x86_64,python=3.12", requirements=(str(requirements),))
    assert len(found) == 1
    kb = load()
    report = tmp_path / "report.txt"
    report.write_text("Package    Version\n---------- -------\ntorch      2.5.1\n")
    request = EnvironmentRequest(
        targets=("os=macos,arch=x86_64,python=3.12",), reports=(str(report),), lenient=True
    )
    judged = audit(build_environments(request, kb)[0], kb)
    assert "pkg.torch" in judged.facts
    assert [f for f in judged.findings if f.rule == "release-files"] == []
