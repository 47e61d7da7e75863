"""Requires-Dist lines as plain data: parsed once, evaluated without `packaging.markers`.

Planning reads the Requires-Dist lines of every candidate release. Parsing them needs
`packaging.requirements`, whose import (markers, the tokenizer, dataclasses, inspect, logging,
packaging.tags) cost more than the whole resolution. So a line is parsed into a tuple of strings
and nested lists that `marshal` stores: the snapshot cache keeps each project's parsed lines
beside its metadata (snapshot.py), and `evaluate` applies PEP 508's rules to the stored form. A
line the cache lacks is parsed with packaging on the spot (then imported), and a marker that
`evaluate` cannot decide the way packaging would (a variable it is not given, an ordering
comparison of non-version strings) is handed to packaging too, so results never differ.
"""

from __future__ import annotations

import marshal
from functools import cache
from typing import Any, Union

from packaging.specifiers import InvalidSpecifier, Specifier

from compatsolve.names import canonicalize_name

# A comparison: (lhs is a variable, lhs, operator, rhs is a variable, rhs); a marker is a list of
# comparisons, nested lists and "and"/"or", as PEP 508's grammar nests them.
Comparison = tuple[bool, str, str, bool, str]
MarkerTree = list[Union[Comparison, str, "MarkerTree"]]
# (normalized project name, specifier text, marker or None)
Parsed = tuple[str, str, MarkerTree | None]

# Variables PEP 508 compares as versions (packaging.markers.MARKERS_REQUIRING_VERSION).
_VERSION_VARIABLES = frozenset(
    {"implementation_version", "platform_release", "python_full_version", "python_version"}
)

_PREPARSED: dict[str, Parsed | None] = {}
_STORED: dict[str, bytes] = {}  # marshalled parsed forms from a cache, decoded on first use


class Undecided(Exception):
    """`evaluate` cannot answer exactly as packaging would; ask packaging."""


def remember(stored: dict[str, bytes]) -> None:
    """Parsed lines read from a cache, each the marshalled result of `parse_line`."""
    _STORED.update(stored)


def parsed(line: str) -> Parsed | None:
    """The parsed form of a Requires-Dist line (None when it does not parse)."""
    try:
        return _PREPARSED[line]
    except KeyError:
        stored = _STORED.pop(line, None)
        result = _PREPARSED[line] = parse_line(line) if stored is None else marshal.loads(stored)
        return result


def parse_line(line: str) -> Parsed | None:
    """Parse with packaging (slow start-up; used when building caches and for unseen lines)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return None
    marker = None if requirement.marker is None else _tree(requirement.marker._markers)
    return canonicalize_name(requirement.name), str(requirement.specifier), marker


def _tree(markers: list[Any]) -> MarkerTree:
    from packaging.markers import Variable  # type: ignore[attr-defined]

    out: MarkerTree = []
    for item in markers:
        if isinstance(item, list):
            out.append(_tree(item))
        elif isinstance(item, tuple):
            lhs, op, rhs = item
            out.append((isinstance(lhs, Variable), lhs.value, op.value, isinstance(rhs, Variable), rhs.value))
        else:
            out.append(str(item))
    return out


def marker_holds(line: str, marker: MarkerTree, environment: dict[str, str]) -> bool:
    """Whether `line`'s marker holds in `environment`: `evaluate`, or packaging where it cannot
    decide; a marker that cannot be evaluated at all (an undefined comparison) does not hold."""
    try:
        try:
            return evaluate(marker, environment)
        except Undecided:
            from packaging.requirements import Requirement

            requirement = Requirement(line)
            return requirement.marker is not None and requirement.marker.evaluate(environment)
    except ValueError:  # packaging's UndefinedComparison / UndefinedEnvironmentName / InvalidRequirement
        return False


def mentions(tree: MarkerTree | None, variable: str) -> bool:
    """Whether the marker compares `variable` anywhere (e.g. "extra")."""
    for item in tree or ():
        if isinstance(item, list):
            if mentions(item, variable):
                return True
        elif isinstance(item, tuple) and (
            (item[0] and item[1] == variable) or (item[3] and item[4] == variable)
        ):
            return True
    return False


def evaluate(tree: MarkerTree, environment: dict[str, str]) -> bool:
    """PEP 508 evaluation of a parsed marker, as packaging.markers does it; raises `Undecided`
    where packaging's answer could differ."""
    groups: list[list[bool]] = [[]]
    for item in tree:
        if isinstance(item, list):
            groups[-1].append(evaluate(item, environment))
        elif isinstance(item, tuple):
            groups[-1].append(_compare(item, environment))
        elif item == "or":
            groups.append([])
    return any(all(group) for group in groups)


def _compare(comparison: Comparison, environment: dict[str, str]) -> bool:
    lhs_is_variable, lhs, op, _, rhs = comparison  # PEP 508: exactly one side is a variable
    key = lhs if lhs_is_variable else rhs
    if key not in environment:
        raise Undecided(key)
    if lhs_is_variable:
        lhs = environment[lhs]
    else:
        rhs = environment[rhs]
    if key == "extra":
        lhs, rhs = canonicalize_name(lhs) if lhs else "", canonicalize_name(rhs) if rhs else ""
    if key in _VERSION_VARIABLES:
        try:
            return _specifier(f"{op}{rhs}").contains(lhs, prereleases=True)
        except InvalidSpecifier:
            pass
    if op == "==":
        return lhs == rhs
    if op == "!=":
        return lhs != rhs
    if op == "in":
        return lhs in rhs
    if op == "not in":
        return lhs not in rhs
    raise Undecided(op)  # ordering of plain strings: packaging releases disagree on it


@cache
def _specifier(text: str) -> Specifier:
    return Specifier(text)
