"""Literal prefilters for the message regexes: runs of characters one of which every match
must contain.

`diagnose` tries some 1,400 case-insensitive regexes (rule signatures, family cues) on logs of up
to 400,000 characters; most cannot match because the words they need are absent, and substring
tests on the case-folded text say so far faster than the regex engine (bench/bench_diagnose.py).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

try:  # the regex parser the re module itself uses (a private module since Python 3.11)
    from re import _parser as _sre_parse  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre_parse

MIN_LITERAL = 3


@cache
def required_literals(pattern: str) -> tuple[str, ...] | None:
    """Runs of ASCII characters, case-folded, at least one of which every match of `pattern`
    contains (a plain run, or one per alternative of a group the pattern cannot skip); None when
    no such set has runs of at least MIN_LITERAL characters (or the pattern is not parsed)."""
    try:
        parsed = _sre_parse.parse(pattern, re.IGNORECASE)
    except Exception:  # any parser trouble means "no prefilter", never an error
        return None
    found = _required(list(getattr(parsed, "data", parsed)))
    return tuple(dict.fromkeys(r.casefold() for r in found)) if found else None


def required_literal(pattern: str) -> str | None:
    """The one run every match contains, when the set is a single run."""
    found = required_literals(pattern)
    return found[0] if found and len(found) == 1 else None


def _required(items: list[tuple[Any, Any]]) -> tuple[str, ...] | None:
    """The most selective "one of these runs" set a sequence of parsed items implies."""
    options: list[tuple[str, ...]] = []
    run: list[str] = []
    for op, value in items:
        name = str(op)
        if name == "LITERAL" and value < 128:
            run.append(chr(value))
            continue
        options.append(("".join(run),))
        run = []
        if name == "SUBPATTERN":  # a group the sequence cannot skip
            inner = _required(list(getattr(value[-1], "data", value[-1])))
            if inner:
                options.append(inner)
        elif name == "BRANCH":  # one of the alternatives: the union of their sets
            alternatives = [_required(list(getattr(b, "data", b))) for b in value[1]]
            if all(alternatives):
                options.append(tuple(r for alt in alternatives if alt for r in alt))
    options.append(("".join(run),))
    valid = [o for o in options if o and all(len(r) >= MIN_LITERAL for r in o)]
    if not valid:
        return None
    return max(valid, key=lambda o: (min(len(r) for r in o), -len(o)))


def may_match(pattern: re.Pattern[str], folded_text: str) -> bool:
    """False only when `pattern` certainly cannot match the text whose case-folded form is given."""
    literals = required_literals(pattern.pattern)
    return literals is None or any(literal in folded_text for literal in literals)
