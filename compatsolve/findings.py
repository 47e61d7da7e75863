"""A finding: one problem (or piece of advice) about an environment, in the JSON contract's shape."""

from __future__ import annotations

from typing import Any

from compatsolve.knowledge import Rule
from compatsolve.records import record

FINDINGS_SCHEMA = "compatsolve.findings/1"
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
TIER_CONFIDENCE = {"reproduced": 0.95, "metadata": 0.95, "maintainer-confirmed": 0.9, "reported": 0.75}


@record(kw_only=True)
class Finding:
    rule: str
    kind: str
    severity: str
    components: tuple[str, ...]
    title: str
    explanation: str
    fix: str
    evidence: tuple[str, ...]
    confidence: float
    explains_error: bool | None = None
    score: float = 0.0  # ranking only; not part of the contract

    @classmethod
    def from_rule(
        cls,
        rule: Rule,
        *,
        confidence: float | None = None,
        explains_error: bool | None = None,
        score: float = 0.0,
    ) -> Finding:
        return cls(
            rule=rule.id,
            kind=rule.kind,
            severity=rule.severity,
            components=rule.components,
            title=rule.title,
            explanation=rule.explanation,
            fix=rule.fix,
            evidence=rule.evidence,
            confidence=round(confidence if confidence is not None else TIER_CONFIDENCE[rule.tier], 2),
            explains_error=explains_error,
            score=score,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "severity": self.severity,
            "components": list(self.components),
            "title": self.title,
            "explanation": self.explanation,
            "fix": self.fix,
            "evidence": list(self.evidence),
            "confidence": self.confidence,
            "explains_error": self.explains_error,
        }


def order(findings: list[Finding], error_given: bool) -> list[Finding]:
    """With an error: the likeliest cause first. Without: errors, then warnings, then info."""
    if error_given:
        return sorted(
            findings,
            key=lambda f: (not f.explains_error, -f.score, SEVERITY_ORDER[f.severity], -f.confidence, f.rule),
        )
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], -f.confidence, f.rule))


def document(
    environment: dict[str, Any], findings: list[Finding], notices: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "schema": FINDINGS_SCHEMA,
        "environment": environment,
        "findings": [f.to_json() for f in findings],
        "notices": notices,
    }
