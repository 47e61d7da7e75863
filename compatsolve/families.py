"""Failure families: when no rule knows an error message, say which kind of failure it reads as.

Rules name causes; most messages users paste are new wordings of old failures ("freezes with 4
GPUs", "Failed to build llama-cpp-python", "conflicting dependencies"). The families in
`knowledge/families.toml` carry the cues of each kind of the taxonomy and its generic way out.
A family finding is a triage hint, never an established cause: it is only offered when no rule
explains the message, it is a warning, and it ranks below any rule.

The components it names are those its kind implicates by definition plus the ones the message
mentions (package names, GPU and model names, `driver`, `glibc`, ...), found with the spellings
in the same file, the rules' component names and the GPU and model catalogs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from compatsolve.findings import Finding
from compatsolve.knowledge import SPECIAL_COMPONENTS, Family, Knowledge
from compatsolve.names import canonicalize_name
from compatsolve.prefilter import may_match
from compatsolve.rules import Truth

STRONG, WEAK, THRESHOLD = 2, 1, 2  # one strong cue, or two weak ones
MAX_FAMILIES = 2
SCORE = 0.05  # rank: below every rule-based finding (the lowest is a general rule's 0.25)
# Only the end of a long log: the failure is there, and configuration dumps and progress lines
# before it are full of words ("distributed", "memory", "version") that are cues out of context.
TAIL = 20_000
HINT = " (family match: no rule in the knowledge base names this message)"

# a word as package names are written (PEP 503 folds its -, _ and . spellings together)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_vocabularies: dict[
    int, tuple[Knowledge, tuple[tuple[tuple[str, re.Pattern[str]], ...], frozenset[str]]]
] = {}


def family_findings(text: str, facts: dict[str, Any], kb: Knowledge) -> list[Finding]:
    """Up to MAX_FAMILIES findings for the families whose cues `text` carries, best first."""
    text = text[-TAIL:]
    folded = text.casefold()

    def found(pattern: re.Pattern[str]) -> bool:
        return may_match(pattern, folded) and pattern.search(text) is not None

    scored: list[tuple[int, int, Family, bool]] = []
    for index, family in enumerate(kb.families):
        if any(found(p) for p in family.compiled_unless):
            continue
        strong = sum(1 for p in family.compiled_strong if found(p))
        weak = sum(1 for p in family.compiled_weak if found(p))
        points = STRONG * strong + WEAK * weak
        if points:
            points += sum(n for n, when in family.boosts if when.evaluate(facts) is Truth.TRUE)
        if points >= THRESHOLD:
            scored.append((points, index, family, strong > 0))
    if not scored:
        return []
    scored.sort(key=lambda s: (-s[0], s[1]))
    named = mentioned_components(text, kb, facts)
    engine = facts.get("run.engine")
    # the tool that failed is implicated whatever the family
    ran = (canonicalize_name(engine),) if isinstance(engine, str) else ()
    findings = []
    for points, _, family, has_strong in scored[:MAX_FAMILIES]:
        components = tuple(dict.fromkeys((*family.components, *named, *ran)))
        # the facts its boosts read that nobody gave: what would sharpen this reading
        missing = sorted({name for _, when in family.boosts for name in when.facts()} - facts.keys())
        explanation = family.explanation
        if missing:
            explanation += f" Facts that would sharpen this reading, not given: {', '.join(missing)}."
        findings.append(
            Finding(
                rule=family.id,
                kind=family.kind,
                severity="warning",
                components=components,
                title=family.title + HINT,
                explanation=explanation,
                fix=family.fix,
                evidence=family.evidence,
                # a family says what kind of failure this is, not which fact caused it
                confidence=0.35 if has_strong else 0.2,
                explains_error=True,
                score=SCORE + 0.01 * min(points, 4),
            )
        )
    return findings


def mentioned_components(text: str, kb: Knowledge, facts: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Components the text names: the spellings of knowledge/families.toml (with GPU aliases and
    model series), then package names — the rules' and the declared ones (`pkg.<name>` facts) —
    written as a word, in any of their PEP 503 spellings."""
    spelled, packages = _vocabulary(kb)
    named = [c for c, pattern in spelled if pattern.search(text)]
    words = {canonicalize_name(w) for w in _WORD.findall(text)}
    declared = {fact[4:] for fact in facts or {} if fact.startswith("pkg.")}
    named += sorted(words & packages) + sorted((words & declared) - packages)
    return tuple(dict.fromkeys(named))


def _vocabulary(kb: Knowledge) -> tuple[tuple[tuple[str, re.Pattern[str]], ...], frozenset[str]]:
    held = _vocabularies.get(id(kb))
    if held is not None and held[0] is kb:
        return held[1]
    spellings: dict[str, list[str]] = {}
    for mention in kb.mentions:
        spellings.setdefault(mention.component, []).extend(mention.spellings)
    spellings.setdefault("gpu", []).extend(re.escape(a) for g in kb.gpus for a in g.aliases)
    spellings.setdefault("model", []).extend(re.escape(m.series) for m in kb.models if m.series)
    vocabulary = (
        tuple(
            (component, re.compile(r"(?<![\w-])(?:" + "|".join(dict.fromkeys(found)) + r")(?![\w-])", re.I))
            for component, found in spellings.items()
        ),
        frozenset({c for r in kb.rules for c in r.components} - SPECIAL_COMPONENTS),
    )
    _vocabularies.clear()
    _vocabularies[id(kb)] = (kb, vocabulary)
    return vocabulary
