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
from collections.abc import Callable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from compatsolve.findings import Finding
from compatsolve.knowledge import SPECIAL_COMPONENTS, Family, Knowledge, Reading, captured_components
from compatsolve.names import canonicalize_name
from compatsolve.prefilter import may_match
from compatsolve.records import record
from compatsolve.rules import Truth

if TYPE_CHECKING:
    from compatsolve.snapshot import Published

STRONG, WEAK, THRESHOLD = 2, 1, 2  # one strong cue, or two weak ones
MAX_FAMILIES = 2
SCORE = 0.05  # rank: below every rule-based finding (the lowest is a general rule's 0.25)
# Only the end of a long log: the failure is there, and configuration dumps and progress lines
# before it are full of words ("distributed", "memory", "version") that are cues out of context.
TAIL = 20_000
MAX_DECLARED = 4
READING_STEP = 0.005  # a family's other reading ranks just below it, or just above when the facts say so
# Two releases this far apart were written against different APIs of each other: a release
# cadence of a month or two for transformers, peft, trl, vLLM gives several releases in between.
SKEW_DAYS = 180
Publications = Callable[[str, str], "Published | None"]  # (project, version) -> when, what it requires
HINT = " (family match: no rule in the knowledge base names this message)"

# a word as package names are written (PEP 503 folds its -, _ and . spellings together)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_vocabularies: dict[
    int, tuple[Knowledge, tuple[tuple[tuple[str, re.Pattern[str]], ...], frozenset[str]]]
] = {}


def family_findings(
    text: str,
    facts: dict[str, Any],
    kb: Knowledge,
    published: Publications | None = None,
    owners: tuple[str, ...] = (),
) -> list[Finding]:
    """Up to MAX_FAMILIES findings for the families whose cues `text` carries, best first, each
    followed by the other readings of the same message that it names (see `Reading`).
    `published` says when a declared release was published and what it requires (the PyPI
    snapshot): it orders a reading by which side of a version skew is the older one. `owners`
    are the projects whose class the message's failed call belongs to (the API history's
    answer): subjects of the families that name one, after those the message itself names."""
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
    offered = scored[:MAX_FAMILIES]
    offered_kinds = {family.kind for _, _, family, _ in offered}
    named = mentioned_components(text, kb, facts)
    known = _known_packages(kb, facts)
    engine = facts.get("run.engine")
    # the tool that failed is implicated whatever the family
    ran = (canonicalize_name(engine),) if isinstance(engine, str) else ()
    findings = []
    for points, _, family, has_strong in offered:
        subjects = _subjects_known(family, text, known, owners)
        implied = [c for c, when in family.implicates if when.evaluate(facts) is Truth.TRUE]
        components = tuple(dict.fromkeys((*family.components, *implied, *subjects, *named, *ran)))
        if family.declared_packages and not set(components) - SPECIAL_COMPONENTS:
            components += _few_declared(facts)
        # the facts its boosts read that nobody gave: what would sharpen this reading
        missing = sorted({name for _, when in family.boosts for name in when.facts()} - facts.keys())
        explanation = family.explanation
        if missing:
            explanation += f" Facts that would sharpen this reading, not given: {', '.join(missing)}."
        skew = version_skew(subjects[0], facts, published) if subjects and family.readings else None
        if skew is not None:
            explanation += " " + skew.sentence()
        score = SCORE + 0.01 * min(points, 4)
        # a family says what kind of failure this is, not which fact caused it
        confidence = 0.35 if has_strong else 0.2
        findings.append(_offered(family, components, HINT, explanation, confidence, score))
        findings += _readings(family, text, facts, skew, components, (score, confidence), offered_kinds)
    return findings


def rule_readings(
    findings: list[Finding],
    text: str,
    facts: dict[str, Any],
    kb: Knowledge,
    published: Publications | None,
    owners: tuple[str, ...] = (),
) -> list[Finding]:
    """The other readings of what a general rule explains: "cannot import name 'x' from
    'transformers'" (import-mismatch-transformers) is the same two-way skew as its family's
    message, and the same readings, ordered the same way, apply."""
    general = {rule.id for rule in kb.rules if rule.general}
    with_readings = {family.kind: family for family in kb.families if family.readings}
    kinds = {f.kind for f in findings if f.explains_error}
    known = _known_packages(kb, facts)
    out: list[Finding] = []
    for finding in findings:
        family = with_readings.get(finding.kind)
        if not finding.explains_error or finding.rule not in general or family is None:
            continue
        subjects = _subjects_known(family, text, known, owners)
        skew = version_skew(subjects[0], facts, published) if subjects else None
        hint = f" (another reading of the message that {finding.rule} names)"
        out += _readings(
            family,
            text,
            facts,
            skew,
            tuple(dict.fromkeys((*finding.components, *subjects))),
            (finding.score, finding.confidence),
            kinds | {f.kind for f in out},
            hint,
        )
    return out


def _readings(
    family: Family,
    text: str,
    facts: dict[str, Any],
    skew: VersionSkew | None,
    components: tuple[str, ...],
    beside: tuple[float, float],
    offered_kinds: set[str],
    hint: str = HINT,
) -> list[Finding]:
    """`family`'s other readings that `text` or the facts support, beside a finding of its kind
    with this score and confidence: just below it, or just above when the package the message is
    about is the older side of the version `skew`."""
    score, confidence = beside
    out = []
    for reading in family.readings:
        if reading.kind in offered_kinds or not _reads(reading, text, facts):
            continue
        first = reading.first_if_subject_older and skew is not None and skew.subject_older
        out.append(
            _offered(
                reading,
                components,
                hint,
                reading.explanation + (" " + skew.sentence() if skew else ""),
                confidence if first else round(confidence * 0.75, 2),
                score + (READING_STEP if first else -READING_STEP),
            )
        )
    return out


def _offered(
    source: Family | Reading,
    components: tuple[str, ...],
    hint: str,
    explanation: str,
    confidence: float,
    score: float,
) -> Finding:
    """What a family or one of its readings offers for a message: a warning that explains it,
    naming a kind of failure rather than an established fact."""
    return Finding(
        rule=source.id,
        kind=source.kind,
        severity="warning",
        components=components,
        title=source.title + hint,
        explanation=explanation,
        fix=source.fix,
        evidence=source.evidence,
        confidence=confidence,
        explains_error=True,
        score=score,
    )


def _few_declared(facts: Mapping[str, Any]) -> tuple[str, ...]:
    """The packages a user declared (`--with`, a short report), when they are few enough to be
    the ones in question; a whole environment's hundreds say nothing about this message."""
    declared = tuple(fact[4:] for fact in facts if fact.startswith("pkg.") and facts[fact] != "-")
    return declared if len(declared) <= MAX_DECLARED else ()


def _known_packages(kb: Knowledge, facts: Mapping[str, Any]) -> set[str]:
    # a subject is a package, not the user's own module ("cannot import name 'x' from 'utils'")
    return set(_vocabulary(kb)[1]) | {fact[4:] for fact in facts if fact.startswith("pkg.")}


def _subjects(family: Family, text: str) -> list[str]:
    return [c for p in family.compiled_subjects if (m := p.search(text)) for c in captured_components(m)]


def _subjects_known(family: Family, text: str, known: set[str], owners: tuple[str, ...]) -> list[str]:
    """The packages `family`'s message is about: those it names, then the `owners` of the class it
    names, for a family that has subjects at all."""
    extra = owners if family.compiled_subjects else ()
    return [c for c in dict.fromkeys((*_subjects(family, text), *extra)) if c in known]


def _reads(reading: Reading, text: str, facts: dict[str, Any]) -> bool:
    if not reading.cues and reading.when is None:
        return True
    if any(p.search(text) for p in reading.compiled_cues):
        return True
    return reading.when is not None and reading.when.evaluate(facts) is Truth.TRUE


@record
class VersionSkew:
    """The declared release of the package a message is about, against the newest declared
    release that requires it: which side is older says which way an API mismatch goes."""

    subject: str
    subject_version: str
    subject_date: str
    caller: str
    caller_version: str
    caller_date: str

    @property
    def days(self) -> int:
        return (date.fromisoformat(self.caller_date) - date.fromisoformat(self.subject_date)).days

    @property
    def subject_older(self) -> bool:
        return self.days >= SKEW_DAYS

    def sentence(self) -> str:
        subject = f"{self.subject} {self.subject_version} (published {self.subject_date})"
        caller = f"{self.caller} {self.caller_version} (published {self.caller_date}), which requires it"
        if self.subject_older:
            return (
                f"From PyPI: {subject} is {self.days} days older than {caller}: the calling code "
                "is likely newer than it."
            )
        if -self.days >= SKEW_DAYS:
            return (
                f"From PyPI: {subject} is {-self.days} days newer than {caller}: it likely "
                "changed what that code calls."
            )
        return f"From PyPI: {subject} and {caller} were published within {SKEW_DAYS} days of each other."


def version_skew(
    subject: str, facts: Mapping[str, Any], published: Publications | None
) -> VersionSkew | None:
    """`subject`'s declared release against the newest declared release whose Requires-Dist
    names it; None when either is not declared or not in the snapshot."""
    version = facts.get(f"pkg.{subject}")
    if published is None or not isinstance(version, str):
        return None
    own = published(subject, version)
    if own is None:
        return None
    callers = []
    for fact, value in facts.items():
        name = fact[4:]
        if fact.startswith("pkg.") and name != subject and isinstance(value, str):
            release = published(name, value)
            if release is not None and subject in release.requires:
                callers.append((release.date, name, value))
    if not callers:
        return None
    caller_date, caller, caller_version = max(callers)
    return VersionSkew(subject, version, own.date, caller, caller_version, caller_date)


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
    spellings["gpu"].extend(re.escape(a) for g in kb.amd_gpus for a in g.aliases)
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
