"""Every case of tests/rule_cases/*.toml against its rule, and `kb lint` on the repository.

A firing case's `error` must match one of the rule's signatures; a near miss (fires = false) may
carry a look-alike error from another cause, which must then match none of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compatsolve.audit import rule_findings
from compatsolve.derive import derive
from compatsolve.diagnose import candidates
from compatsolve.kb import RuleCase, lint, load_cases
from compatsolve.knowledge import load
from compatsolve.rules import Truth

REPO = Path(__file__).resolve().parent.parent
CASES_DIR = REPO / "tests" / "rule_cases"
CASES = load_cases(CASES_DIR)
_RULES = {r.id: r for r in load().rules}


def _id(case: RuleCase) -> str:
    return f"{case.where}:{case.rule}:{'fires' if case.fires else 'quiet'}"


def test_there_are_cases() -> None:
    assert len(CASES) > 0
    assert {c.fires for c in CASES} == {True, False}


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_case(kb, case: RuleCase) -> None:
    rule = kb.rule(case.rule)
    assert rule is not None, f"{case.where}: no rule {case.rule!r} in knowledge/rules"
    if case.error is not None:
        matched = any(re.search(p, case.error, re.IGNORECASE) for p in rule.signatures)
        if case.fires:
            assert matched, f"{case.where}: error text matches none of {case.rule}'s signatures"
        else:  # a near miss may carry a look-alike error that belongs to another cause
            assert not matched, f"{case.where}: near-miss error text matches {case.rule}'s signatures"
    if rule.when is None:
        if case.fires:
            assert case.error is not None, f"{case.where}: a signature-only rule's case needs an error text"
        return
    # derived facts (torch.cuda_major, memory.*, ...) are added exactly as `audit` adds them
    facts = derive(dict(case.env), kb)
    result = rule.when.evaluate(facts)
    if case.fires:
        assert result is Truth.TRUE, f"{case.where}: {case.rule} must fire, got {result.value}"
    else:
        assert result is not Truth.TRUE, f"{case.where}: {case.rule} must not fire"


def test_cases_are_unique() -> None:
    seen = {}
    for case in CASES:
        key = (case.rule, case.fires, tuple(sorted((k, repr(v)) for k, v in case.env.items())))
        assert key not in seen, f"{case.where} repeats {seen[key]}"
        seen[key] = case.where


def test_kb_lint_is_clean() -> None:
    problems = lint(REPO / "knowledge", CASES_DIR)
    assert problems == [], "\n".join(problems)


SYMPTOM_CASES = [
    c for c in CASES if c.fires and c.error and (r := _RULES.get(c.rule)) is not None and r.symptom and r.when
]


def test_there_are_symptom_rules_with_conditions() -> None:
    assert len(SYMPTOM_CASES) >= 5


@pytest.mark.parametrize("case", SYMPTOM_CASES, ids=[_id(c) for c in SYMPTOM_CASES])
def test_symptom_rules_explain_errors_but_never_fire_in_a_plain_audit(kb, case: RuleCase) -> None:
    facts = derive(dict(case.env), kb)
    assert case.rule not in {f.rule for f in rule_findings(facts, kb)}
    assert case.error is not None
    found, _ = candidates(case.error, facts, kb)
    assert case.rule in {f.rule for f in found if f.explains_error}
