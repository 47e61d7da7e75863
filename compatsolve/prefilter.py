"""Literal prefilters for the message regexes: a run of characters every match must contain.

`diagnose` tries some 1,500 case-insensitive regexes (rule signatures, family cues) on logs of up
to 400,000 characters; most cannot match because the words they need are absent, and a substring
test on the case-folded text says so about a hundred times faster than the regex engine.
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
def required_literal(pattern: str) -> str | None:
    """The longest run of ASCII characters that every match of `pattern` contains, case-folded;
    None when there is none of at least MIN_LITERAL characters (or the pattern is not parsed)."""
    try:
        parsed = _sre_parse.parse(pattern, re.IGNORECASE)
    except Exception:  # any parser trouble means "no prefilter", never an error
        return None
    best = ""
    run: list[str] = []
    for op, value in _items(parsed):
        if str(op) == "LITERAL" and value < 128:
            run.append(chr(value))
            continue
        best = max(best, "".join(run), key=len)
        run = []
    best = max(best, "".join(run), key=len)
    return best.casefold() if len(best) >= MIN_LITERAL else None


def _items(parsed: Any) -> list[tuple[Any, Any]]:
    """The top-level sequence of the parsed pattern (a top-level alternation is one item)."""
    return list(getattr(parsed, "data", parsed))


def may_match(pattern: re.Pattern[str], folded_text: str) -> bool:
    """False only when `pattern` certainly cannot match the text whose case-folded form is given."""
    literal = required_literal(pattern.pattern)
    return literal is None or literal in folded_text
