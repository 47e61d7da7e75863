"""The literal prefilter never skips a regex that would match (compatsolve/prefilter.py)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from compatsolve.kb import load_cases
from compatsolve.knowledge import load
from compatsolve.prefilter import may_match, required_literal, required_literals

PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in sorted(
        {p for r in load().rules for p in r.signatures}
        | {p for f in load().families for p in (*f.strong, *f.weak, *f.unless)}
    )
]
REAL = [c.error for c in load_cases(Path(__file__).parent / "rule_cases") if c.error]


def test_most_patterns_have_a_literal() -> None:
    with_literal = [p for p in PATTERNS if required_literals(p.pattern)]
    assert len(with_literal) >= 0.95 * len(PATTERNS)


def test_alternatives_give_a_set_of_runs() -> None:
    assert required_literals("awq|gptq|marlin") == ("awq", "gptq", "marlin")
    assert required_literals(r"(hangs?|hung|stuck).{0,80}(zero[- _]?3|stage)") == ("zero", "stage")
    assert required_literals(r"(?:qwen2(?:\.5)?[-_ ]?vl|llava) fails") == (" fails",)
    assert required_literals("(a|bcd)xyz") == ("xyz",)
    assert required_literals("(?:a|bcd)") is None  # one alternative has no run long enough
    assert required_literals(r"x(?:abc)?y") is None  # an optional group is not required


def test_literals_of_known_shapes() -> None:
    assert required_literal("no kernel image is available") == "no kernel image is available"
    assert required_literal(r"undefined symbol: cu[A-Z]\w+") == "undefined symbol: cu"
    assert required_literal("Torch not compiled") == "torch not compiled"
    assert required_literal("awq|gptq") is None  # an alternation requires neither side
    assert required_literal(r"(?:a|b)c") is None  # too short to be worth a test
    assert required_literal("(unbalanced") is None


def test_prefilter_agrees_with_the_regexes_on_real_messages() -> None:
    for text in REAL:
        folded = text.casefold()
        for pattern in PATTERNS:
            if pattern.search(text):
                assert may_match(pattern, folded), (pattern.pattern, text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([required_literal(p.pattern) or "" for p in PATTERNS[:400]]),
            st.text(max_size=20),
            st.sampled_from(["K", "\u212a", "\u017f", "\u0130", "ß", "SS", " ", "\n", ":", "_"]),
        ),
        max_size=8,
    ).map("".join)
)
def test_prefilter_never_hides_a_match(text: str) -> None:
    variants = (text, text.upper(), text.title())
    for variant in variants:
        folded = variant.casefold()
        for pattern in PATTERNS:
            if not may_match(pattern, folded):
                assert pattern.search(variant) is None, (pattern.pattern, variant)
