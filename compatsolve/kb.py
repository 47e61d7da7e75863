"""Knowledge-base maintenance: lint, statistics and search over the loaded records."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from compatsolve.errors import KnowledgeError
from compatsolve.knowledge import (
    SPECIAL_COMPONENTS,
    TAXONOMY_COMPONENTS_RE,
    Knowledge,
    Rule,
    parse_knowledge,
)
from compatsolve.records import record
from compatsolve.rules import parse_fact_test

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_PLACEHOLDER = re.compile(r"(?i)(xxx|nnn|todo|tbd|placeholder|example\.(com|org)|localhost|\.\.\.|<|>)")


def bad_url(url: str) -> str | None:
    """Why `url` is not a well-formed public URL, or None."""
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.netloc or "." not in parsed.netloc:
        return "not an https URL"
    if _PLACEHOLDER.search(url):
        return "looks like a placeholder"
    if parsed.netloc == "github.com" and re.search(r"/(issues|pull)/(\D|$)", parsed.path):
        return "GitHub issue link without a number"
    return None


def lint(root: Path, tests_dir: Path | None) -> list[str]:
    """Every problem of the knowledge base, as `file: where: what` lines (empty when clean)."""
    per_entry = _entry_problems(root)
    if per_entry:
        return per_entry
    try:
        kb = parse_knowledge(root)
    except KnowledgeError as exc:
        return [str(exc)]
    problems: list[str] = []
    problems += _duplicates("rule id", [(r.id, r.file) for r in kb.rules])
    problems += _duplicates(
        "gpu id",
        [(g.id, "knowledge/gpus.toml") for g in kb.gpus]
        + [(g.id, "knowledge/amd.toml") for g in kb.amd_gpus],
    )
    problems += _duplicates("model id", [(m.id, "knowledge/models.toml") for m in kb.models])
    problems += _duplicates(
        "gpu alias",
        [(a.lower(), "knowledge/gpus.toml") for g in kb.gpus for a in g.aliases]
        + [(a.lower(), "knowledge/amd.toml") for g in kb.amd_gpus for a in g.aliases],
    )
    problems += _duplicates(
        "model alias",
        [(a.lower(), "knowledge/models.toml") for m in kb.models for a in (m.id, *m.aliases)],
    )
    problems += _duplicates("family id", [(f.id, "knowledge/families.toml") for f in kb.families])
    for rule in kb.rules:
        for url in rule.evidence:
            why = bad_url(url)
            if why:
                problems.append(f"{rule.file}: rule {rule.id}: evidence {url!r}: {why}")
    for where, component in _components(kb):
        if component not in SPECIAL_COMPONENTS and not TAXONOMY_COMPONENTS_RE.match(component):
            problems.append(
                f"{where}: component {component!r} is not a normalized PyPI name or a taxonomy component"
            )
    for where, sources in _all_sources(kb):
        for url in sources:
            why = bad_url(url)
            if why:
                problems.append(f"{where}: source {url!r}: {why}")
    corpus_links = {r.link for r in kb.corpus}
    for triaged in kb.triage:
        if triaged.link not in corpus_links:
            problems.append(f"{triaged.file}: {triaged.link} is not an environment-class record")
    if tests_dir is not None and tests_dir.is_dir():
        problems += _lint_cases(kb.rules, tests_dir)
    return problems


def _entry_problems(root: Path) -> list[str]:
    """Validate each rule entry on its own, so one bad entry does not hide the others."""
    from compatsolve.knowledge import parse_rule, read_toml
    from compatsolve.schema import tables

    problems = []
    for path in sorted(root.glob("rules/*.toml")):
        try:
            rel, doc = read_toml(path, root)
        except KnowledgeError as exc:
            problems.append(str(exc))
            continue
        try:
            entries = tables(doc.get("rule"), f"{rel}: rule")
        except KnowledgeError as exc:
            problems.append(str(exc))
            continue
        for entry in entries:
            try:
                parse_rule(entry, rel)
            except KnowledgeError as exc:
                problems.append(str(exc))
    return problems


def _duplicates(what: str, items: Iterable[tuple[str, str]]) -> list[str]:
    counts = Counter(name for name, _ in items)
    files = {name: file for name, file in items}
    return [f"{files[n]}: duplicate {what} {n!r}" for n, c in sorted(counts.items()) if c > 1]


def _components(kb: Knowledge) -> Iterable[tuple[str, str]]:
    for rule in kb.rules:
        for component in rule.components:
            yield f"{rule.file}: rule {rule.id}", component
    for family in kb.families:
        for component in family.components:
            yield f"knowledge/families.toml: family {family.id}", component
    for mention in kb.mentions:
        yield "knowledge/families.toml: mention", mention.component


def _all_sources(kb: Knowledge) -> Iterable[tuple[str, tuple[str, ...]]]:
    for g in kb.gpus:
        yield f"knowledge/gpus.toml: gpu {g.id}", g.sources
    for a in kb.amd_gpus:
        yield f"knowledge/amd.toml: amd_gpu {a.id}", a.sources
    for s in kb.gfx_support:
        yield f"knowledge/amd.toml: gfx_support {s.subject} {s.version or ''} {s.os}", s.sources
    for c in kb.cuda:
        yield f"knowledge/cuda.toml: cuda {c.version}", c.sources
    for t in kb.torch:
        yield f"knowledge/torch.toml: torch {t.version}", t.sources
    for e in kb.extensions:
        yield f"knowledge/extensions.toml: extension {e.package} {e.versions}", e.sources
    for p in kb.pins:
        yield f"knowledge/extensions.toml: pin {p.package} {p.version}", p.sources
    for m in kb.models:
        yield f"knowledge/models.toml: model {m.id}", m.sources
    for family in kb.families:
        yield f"knowledge/families.toml: family {family.id}", family.evidence


@record
class RuleCase:
    rule: str
    fires: bool
    env: dict[str, Any]
    error: str | None
    where: str


def load_cases(tests_dir: Path) -> list[RuleCase]:
    """The rule test cases under `tests_dir` (`[[case]]` tables)."""
    cases = []
    for path in sorted(tests_dir.glob("*.toml")):
        with path.open("rb") as handle:
            doc = tomllib.load(handle)
        for i, raw in enumerate(doc.get("case", [])):
            cases.append(
                RuleCase(
                    rule=str(raw.get("rule", "")),
                    fires=bool(raw.get("fires")),
                    env=dict(raw.get("env", {})),
                    error=raw.get("error"),
                    where=f"{path.name}: case[{i}]",
                )
            )
    return cases


def _lint_cases(rules: Iterable[Rule], tests_dir: Path) -> list[str]:
    problems = []
    try:
        cases = load_cases(tests_dir)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return [f"{tests_dir}: {exc}"]
    by_rule: dict[str, set[bool]] = {}
    ids = {r.id for r in rules}
    for case in cases:
        if case.rule not in ids:
            problems.append(f"tests/rule_cases/{case.where}: unknown rule {case.rule!r}")
        by_rule.setdefault(case.rule, set()).add(case.fires)
        for fact, value in case.env.items():
            if fact in ("_packages_complete", "_env_complete"):
                continue  # a case may say its package list / environment variables are complete
            try:
                parse_fact_test(fact, value if not isinstance(value, str) else "x", case.where)
            except KnowledgeError as exc:
                problems.append(f"tests/rule_cases/{exc}")
    for rule in rules:
        have = by_rule.get(rule.id, set())
        if rule.when is not None and have != {True, False}:
            problems.append(
                f"{rule.file}: rule {rule.id}: needs a test case that fires and one "
                "that must not (tests/rule_cases)"
            )
        if rule.when is None and True not in have:
            problems.append(f"{rule.file}: rule {rule.id}: needs a test case with an error text")
    return problems


def corpus_coverage(kb: Knowledge) -> dict[str, Any]:
    """Which environment-class records of the study are cited by a rule, or triaged."""
    cited_links = {url.rstrip("/") for r in kb.rules for url in r.evidence}
    triaged_links = {t.link.rstrip("/") for t in kb.triage}
    by_category: dict[str, dict[str, int]] = {}
    cited = triaged = 0
    for entry in kb.corpus:
        leaf = entry.root_cause.split(" - ")[-1]
        row = by_category.setdefault(leaf, {"records": 0, "cited": 0, "triaged": 0})
        row["records"] += 1
        if entry.link in cited_links:
            row["cited"] += 1
            cited += 1
        elif entry.link in triaged_links:
            row["triaged"] += 1
            triaged += 1
    return {"records": len(kb.corpus), "cited": cited, "triaged": triaged, "by_category": by_category}


def stats(kb: Knowledge, snapshot: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "schema": "compatsolve.kb-stats/1",
        "rules": len(kb.rules),
        "rules_by_kind": dict(sorted(Counter(r.kind for r in kb.rules).items())),
        "rules_by_stage": dict(sorted(Counter(s for r in kb.rules for s in r.stages).items())),
        "rules_by_tier": dict(sorted(Counter(r.tier for r in kb.rules).items())),
        "rules_by_severity": dict(sorted(Counter(r.severity for r in kb.rules).items())),
        "gpus": len(kb.gpus),
        "amd_gpus": len(kb.amd_gpus),
        "models": len(kb.models),
        "cuda_releases": len(kb.cuda),
        "torch_releases": len(kb.torch),
        "extensions": len(kb.extensions),
        "corpus": corpus_coverage(kb),
        "snapshot": snapshot,
    }


def search(kb: Knowledge, text: str) -> list[Rule]:
    """Rules whose id, title, explanation, fix, components or signatures mention every word."""
    words = [w.lower() for w in text.split() if w]
    found = []
    for rule in kb.rules:
        blob = " ".join(
            (rule.id, rule.title, rule.kind, rule.explanation, rule.fix, *rule.components, *rule.signatures)
        ).lower()
        if all(w in blob for w in words):
            found.append(rule)
    return found
