"""compatsolve.requirement against packaging, on every Requires-Dist line of the shipped PyPI
snapshot: the parsed form and the marker evaluation must give packaging's answers."""

from __future__ import annotations

import marshal

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from compatsolve.names import canonicalize_name
from compatsolve.requirement import Undecided, evaluate, mentions, parse_line, parsed
from compatsolve.snapshot import load_snapshot

ENVIRONMENTS = [
    {
        "python_version": py,
        "python_full_version": f"{py}.4",
        "sys_platform": sys_platform,
        "platform_system": system,
        "platform_machine": machine,
        "os_name": os_name,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": extra,
    }
    for py in ("3.9", "3.10", "3.12", "3.13")
    for sys_platform, system, machine, os_name in (
        ("linux", "Linux", "x86_64", "posix"),
        ("linux", "Linux", "aarch64", "posix"),
        ("win32", "Windows", "AMD64", "nt"),
        ("darwin", "Darwin", "arm64", "posix"),
    )
    for extra in ("", "torch", "Dev_Tools")
]


@pytest.fixture(scope="module")
def lines() -> list[str]:
    snapshot = load_snapshot()
    assert snapshot is not None
    found = {
        line
        for name in snapshot.names()
        for release in snapshot.project(name).values()
        for line in release.requires_dist or ()
    }
    assert len(found) > 1000
    return sorted(found)


def test_parsed_lines_match_packaging(lines: list[str]) -> None:
    for line in lines:
        ours = parse_line(line)
        requirement = Requirement(line)
        assert ours is not None
        assert ours[:2] == (canonicalize_name(requirement.name), str(requirement.specifier)), line
        assert (ours[2] is None) == (requirement.marker is None), line
        assert mentions(ours[2], "extra") == ("extra" in str(requirement.marker or "")), line
        assert marshal.loads(marshal.dumps(ours)) == ours  # what the snapshot cache stores


def test_marker_evaluation_matches_packaging(lines: list[str]) -> None:
    decided = 0
    for line in lines:
        tree = parse_line(line)
        assert tree is not None
        if tree[2] is None:
            continue
        marker = Requirement(line).marker
        assert isinstance(marker, Marker)
        for environment in ENVIRONMENTS:
            try:
                ours = evaluate(tree[2], environment)
            except Undecided:
                continue
            assert ours == marker.evaluate(environment), (line, environment)
            decided += 1
    assert decided > 10000


@pytest.mark.parametrize(
    ("marker", "environment"),
    [
        ('platform_release >= "5"', {"python_version": "3.10"}),  # a variable it is not given
        ('platform_machine > "a"', {"platform_machine": "x86_64"}),  # string ordering
    ],
)
def test_undecidable_markers_are_left_to_packaging(marker: str, environment: dict[str, str]) -> None:
    tree = parse_line(f"demo; {marker}")
    assert tree is not None and tree[2] is not None
    with pytest.raises(Undecided):
        evaluate(tree[2], environment)


def test_unparsable_lines_are_none_and_remembered() -> None:
    assert parse_line("not a requirement ===") is None
    assert parsed("not a requirement ===") is None


@pytest.mark.parametrize(
    ("target", "marker", "holds"),
    [
        (("3.11", "windows", "x86_64"), 'sys_platform == "win32" and platform_machine == "AMD64"', True),
        (("3.11", "windows", "x86_64"), 'platform_machine == "x86_64"', False),
        (("3.12", "macos", "aarch64"), 'platform_system == "Darwin" and platform_machine == "arm64"', True),
        (("3.10", "linux", "x86_64"), 'platform_system == "Linux" and python_full_version >= "3.10.0"', True),
        (("3.10", "linux", "aarch64"), 'platform_machine == "x86_64"', False),
    ],
)
def test_target_marker_values_as_each_platform_reports_them(
    target: tuple[str, str, str], marker: str, holds: bool
) -> None:
    from compatsolve.environment import marker_values
    from compatsolve.requirement import marker_holds

    line = f"demo; {marker}"
    tree = parse_line(line)
    assert tree is not None and tree[2] is not None
    values = {**marker_values(*target), "extra": ""}
    assert marker_holds(line, tree[2], values) is holds
    assert Marker(marker).evaluate(values) is holds
