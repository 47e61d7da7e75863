"""`diagnose`: match an error message against the rules' signatures, then let the environment's
facts confirm or rule out each candidate, and rank what is left."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from compatsolve.api_skew import HistoryLoader, api_findings, owning_projects
from compatsolve.families import TAIL, Publications, family_findings, mentioned_components, rule_readings
from compatsolve.findings import TIER_CONFIDENCE, Finding, order
from compatsolve.knowledge import SPECIAL_COMPONENTS, Knowledge, captured_components
from compatsolve.metadata_check import PIP_CONFLICT_REPORT
from compatsolve.prefilter import may_match
from compatsolve.records import replace
from compatsolve.rules import Truth

MAX_ERROR_CHARS = 400_000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

BASE, SPECIFICITY, CONFIRMED = 0.5, 0.2, 0.3
GENERAL = 0.25  # below any specific rule matching the same text, whatever their match lengths
AGREEING = 0.2  # an environment problem of the kind the message reads as: above its family
FALLBACK = 0.04  # an environment problem offered for a message nothing reads: below any family
MAX_POSSIBLE = 3
IF_INSTALLED = (
    "Possible cause if {} is installed at the version this names "
    "(the message names it; the facts establish the rest): "
)
POSSIBLE = "Possible cause (no rule names this message; the facts establish this): "


def normalise(text: str) -> str:
    """Strip terminal colours and keep the tail of very long logs (the error is at the end)."""
    return _ANSI.sub("", text[-MAX_ERROR_CHARS:]).replace("\r\n", "\n")


def candidates(error: str, facts: dict[str, Any], kb: Knowledge) -> tuple[list[Finding], list[str]]:
    """Rules whose signature matches `error`, scored; and the ids of those the facts rule out."""
    return _candidates(normalise(error), facts, kb)


def _candidates(text: str, facts: dict[str, Any], kb: Knowledge) -> tuple[list[Finding], list[str]]:
    folded = text.casefold()
    found: list[Finding] = []
    ruled_out: list[str] = []
    for rule in kb.rules:
        best = 0
        captured: list[str] = []
        for pattern in rule.compiled_signatures:
            match = pattern.search(text) if may_match(pattern, folded) else None
            if match:
                best = max(best, len(match.group(0)))
                captured += captured_components(match)
        if not best:
            continue
        truth = rule.when.evaluate(facts) if rule.when is not None else Truth.UNKNOWN
        if truth is Truth.FALSE:
            ruled_out.append(rule.id)
            continue
        score = BASE + SPECIFICITY * min(best, 80) / 80 + (CONFIRMED if truth is Truth.TRUE else 0.0)
        if rule.general:
            score -= GENERAL
        confidence = min(0.99, score * TIER_CONFIDENCE[rule.tier] / 0.9)
        finding = Finding.from_rule(rule, confidence=confidence, explains_error=True, score=score)
        if captured:
            finding = replace(finding, components=tuple(dict.fromkeys((*finding.components, *captured))))
        if truth is Truth.UNKNOWN and rule.when is not None and finding.severity == "error":
            # The message fits, but the facts that make this rule true are unknown: a possible
            # cause to check, not an established one.
            finding = replace(finding, severity="warning", title=finding.title + " (possible: facts unknown)")
        found.append(finding)
    return found, ruled_out


def diagnose(
    error: str,
    facts: dict[str, Any],
    kb: Knowledge,
    extra: list[Finding] | None = None,
    environment: list[Finding] | None = None,
    published: Publications | None = None,
    apis: HistoryLoader | None = None,
) -> tuple[list[Finding], list[str]]:
    """Candidates for `error`, then `extra` (for `audit --error`, every audit finding), marked
    as not explaining it unless the message reports them (a pip conflict naming their packages).

    When nothing explains the message: the failure families it reads as (warnings), and before
    them any problem the facts establish in the `environment` (default: `extra`) of a kind the
    message reads as — the message and the facts then point at the same kind of failure; when
    none is of such a kind, the facts' error-severity problems last, as possible causes, with the
    rules about a package the message names that would hold were it installed.
    `published` (compatsolve.snapshot.published) orders a family's readings by release dates;
    `apis` (compatsolve.api_history.load_history) dates a missing name the message gives."""
    text = normalise(error)  # once: a log may be 400,000 characters
    found, ruled_out = _candidates(text, facts, kb)
    seen = {f.rule for f in found}
    reported = {id(f) for f in _reported(text, extra or [])}
    for finding in extra or []:
        if finding.rule in seen and finding.rule != "requires-dist":
            continue
        explains = id(finding) in reported
        # the message reports the conflict and the metadata confirms it: as strong as a rule whose
        # signature matches and whose facts hold
        score = BASE + SPECIFICITY + CONFIRMED if explains else finding.score
        found.append(replace(finding, explains_error=explains, score=score))
    apis = cache(apis) if apis is not None else None  # the owners and the dating read one history
    # the package a failed call is about, when the message names only its class
    owners = owning_projects(text[-TAIL:], apis)
    found += rule_readings(found, text, facts, kb, published, owners)
    # read beside the rules and families, not instead of them: the history dates a name, it
    # does not know why the calling code is the age it is
    dated = api_findings(text[-TAIL:], facts, apis)
    if not any(f.explains_error for f in found):
        problems = (extra or []) if environment is None else environment
        families = family_findings(text, facts, kb, published, owners)
        kinds = {f.kind for f in families}
        agreeing = [
            replace(f, explains_error=True, score=AGREEING)
            for f in problems
            # an unresolved input is not a problem of the environment
            if f.kind in kinds and f.severity != "info" and f.rule != "unresolved-fact"
        ]
        # (rule, title): one check such as requires-dist reports several conflicts
        promoted = {(f.rule, f.title) for f in agreeing}
        found = [f for f in found if (f.rule, f.title) not in promoted] + agreeing + families
        if not agreeing:  # the facts' own problems, ranked after what the message reads as
            found += _possible_causes(problems)
            found += _if_installed(text, facts, kb)
    return order(found + dated, error_given=True), ruled_out


def _possible_causes(environment: list[Finding]) -> list[Finding]:
    """A message that neither a rule nor a family reads ("it crashes on my RTX 5090"), in an
    environment whose facts establish a failure (a torch without kernels for that GPU): that
    failure is the first thing to rule out. A warning copy, marked as possible; the problem
    itself keeps its severity among the audit's findings."""
    problems = [f for f in environment if f.severity == "error" and f.rule != "unresolved-fact"]
    # a live environment can hold dozens of Requires-Dist conflicts: offer the likeliest few
    problems.sort(key=lambda f: -f.confidence)
    return [
        replace(
            f,
            severity="warning",
            title=POSSIBLE + f.title,
            confidence=round(f.confidence * 0.5, 2),
            explains_error=True,
            score=FALLBACK,
        )
        for f in problems[:MAX_POSSIBLE]
    ]


def _if_installed(text: str, facts: dict[str, Any], kb: Knowledge) -> list[Finding]:
    """A message that names a package the facts do not declare ("pip install flash-attn fails" on
    a Tesla M40): the rules about that package whose other facts all hold here (FlashAttention-2
    needs compute capability 8.0) are possible causes, if it is installed at the version they
    name. Only rules the known facts take part in: one about the package alone says nothing about
    this machine."""
    # the end of a long log, as the families read it: the failure is there
    named = [c for c in mentioned_components(text[-TAIL:], kb, facts) if c not in SPECIAL_COMPONENTS]
    undeclared = [c for c in named if f"pkg.{c}" not in facts]
    if not undeclared:
        return []
    out = []
    for rule in kb.rules:
        about = [c for c in undeclared if c in rule.components]
        if not about or rule.when is None or rule.symptom:
            continue
        assumed = frozenset(f"pkg.{c}" for c in about)
        if not (rule.when.facts() - assumed) & facts.keys():
            continue
        if rule.when.evaluate(facts) is Truth.UNKNOWN and rule.when.evaluate(facts, assumed) is Truth.TRUE:
            finding = Finding.from_rule(rule)
            out.append(
                replace(
                    finding,
                    severity="warning",
                    title=IF_INSTALLED.format(", ".join(about)) + finding.title,
                    confidence=round(finding.confidence * 0.4, 2),
                    explains_error=True,
                    score=FALLBACK - 0.005,
                )
            )
    out.sort(key=lambda f: -f.confidence)
    return out[:MAX_POSSIBLE]


def reported_conflicts(error: str, findings: list[Finding]) -> list[Finding]:
    """The Requires-Dist conflicts the metadata confirms that a pip conflict report names: pip
    names a package of the conflict (the one whose pin broke, which may be the other side)."""
    return _reported(normalise(error), findings)


def _reported(text: str, findings: list[Finding]) -> list[Finding]:
    # Only version conflicts: "not installed" findings of a partly declared environment are noise.
    conflicts = [f for f in findings if f.rule == "requires-dist" and f.severity == "error"]
    if not conflicts or not PIP_CONFLICT_REPORT.search(text):
        return []
    return [
        f
        for f in conflicts
        if any(re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", text, re.I) for name in f.components)
    ]
