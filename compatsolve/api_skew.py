"""A missing name that the API history dates: "cannot import name 'X' from 'lib'", "No module
named 'lib.sub'", "module 'lib' has no attribute 'X'", "'C' object has no attribute 'a'",
"C.__init__() got an unexpected keyword argument 'k'".

These messages have two opposite causes, and the fix of one breaks the other: lib removed the
name after the release the calling code was written for (pin lib lower), or added it after the
release that is installed (upgrade lib). compatsolve/api_history.py knows in which releases of
lib the name exists, so the installed release (when declared) or the shape of the history (a
name that was only ever added, or only ever removed) says which, and the fix names the release.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from compatsolve.api_history import ApiHistory, Presence
from compatsolve.findings import Finding
from compatsolve.names import canonicalize_name
from compatsolve.records import replace

# Python's own wordings of a missing module, name, attribute or keyword.
_IMPORT_NAME = re.compile(r"cannot import name ['\"](?P<name>\w+)['\"] from ['\"](?P<module>[\w.]+)['\"]")
_NO_MODULE = re.compile(r"No module named ['\"](?P<module>\w+\.[\w.]+)['\"]")
_MODULE_ATTRIBUTE = re.compile(
    r"module ['\"](?P<module>[\w.]+)['\"] has no attribute ['\"](?P<name>\w+)['\"]"
)
_OBJECT_ATTRIBUTE = re.compile(
    r"(?:['\"](?P<owner>[A-Z]\w*)['\"] object|type object ['\"](?P<type>[A-Z]\w*)['\"])"
    r" has no attribute ['\"](?P<member>\w+)['\"]"
)
_KEYWORD = re.compile(
    r"\b(?P<owner>[A-Z]\w*)\.__init__\(\) got an unexpected keyword argument ['\"](?P<keyword>\w+)['\"]"
)
_MESSAGES = (_IMPORT_NAME, _NO_MODULE, _MODULE_ATTRIBUTE, _OBJECT_ATTRIBUTE, _KEYWORD)
# a failed call names its method's class: "C.m() got an unexpected keyword argument 'k'",
# "C.m() takes 2 positional arguments but 3 were given", "C.m() missing 1 required positional argument"
_METHOD_CALL = re.compile(
    r"\b(?P<owner>[A-Z]\w*)\.(?P<member>\w+)\(\) "
    r"(?:got an unexpected keyword|takes \d+ positional|missing \d+ required)"
)
_OWNERS = (_METHOD_CALL, _OBJECT_ATTRIBUTE)
MAX_OWNERS = 2  # a class that more projects define says nothing about which one is meant
# transformers' model classes and modules: a model newer than the library, not a library skew
_MODEL_NAME = re.compile(
    r"(?:ForCausalLM|ForConditionalGeneration|Model|Config|Processor|Tokenizer(?:Fast)?)$"
)

MAX_FINDINGS = 3
ESTABLISHED, INFERRED, EITHER = 0.85, 0.46, 0.4  # scores: see compatsolve/diagnose.py's scale
RULE = "api-history"


def _queries(text: str, history: ApiHistory) -> Iterator[tuple[Presence | None, bool]]:
    """Each missing symbol the text names, with its history in the project it belongs to (None
    when no scanned release has it), and whether it is a class member."""
    for match in _IMPORT_NAME.finditer(text):
        if project := history.project_of_module(match["module"]):
            yield history.name(project, match["name"]), False
    for match in _NO_MODULE.finditer(text):
        if project := history.project_of_module(match["module"]):
            yield history.module(project, match["module"]), False
    for match in _MODULE_ATTRIBUTE.finditer(text):
        if project := history.project_of_module(match["module"]):
            dotted = f"{match['module']}.{match['name']}"
            yield history.name(project, match["name"]) or history.module(project, dotted), False
    for match in _OBJECT_ATTRIBUTE.finditer(text):
        owner = match["owner"] or match["type"]
        for project in history.defining(owner):
            yield history.member(project, owner, match["member"]), True
    for match in _KEYWORD.finditer(text):
        for project in history.defining(match["owner"]):
            yield history.keyword(project, match["owner"], match["keyword"]), True


HistoryLoader = Callable[[], "ApiHistory | None"]


def owning_projects(text: str, load: HistoryLoader | None) -> tuple[str, ...]:
    """The projects whose class a failed call or a missing attribute in `text` belongs to
    ("DPOTrainer.get_batch_logps() got an unexpected keyword argument" -> trl): the package whose
    API the message is about when the message does not say it. A project counts when some release
    defines that member in the class body, or else the class body at all; importing or
    re-exporting the class (unsloth re-exports trl's trainers) does not count."""
    if load is None or not any(p.search(text) for p in _OWNERS):
        return ()
    history = load()
    if history is None:
        return ()
    found: list[str] = []
    for pattern in _OWNERS:
        for match in pattern.finditer(text):
            owner = match["owner"] or match.groupdict().get("type") or ""
            member = match["member"]
            candidates = history.defining(owner)
            with_member = [p for p in candidates if history.member(p, owner, member) is not None]
            bodies = with_member or [p for p in candidates if history.has_class_body(p, owner)]
            if 0 < len(bodies) <= MAX_OWNERS:
                found += [canonicalize_name(p) for p in bodies]
    return tuple(dict.fromkeys(found))


def api_findings(text: str, facts: Mapping[str, Any], load: HistoryLoader | None) -> list[Finding]:
    """What the API history says about each missing symbol `text` names: removed after the
    release the calling code was written for, or added after the installed one. `load` reads the
    history (compatsolve.api_history.load_history), only when the text names such a symbol."""
    if load is None or not any(p.search(text) for p in _MESSAGES):
        return []
    history = load()
    if history is None:
        return []
    out: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for presence, member in _queries(text, history):
        if presence is None or (presence.project, presence.symbol) in seen or presence.always:
            continue  # in every scanned release: no version of the project explains it
        seen.add((presence.project, presence.symbol))
        judged = _judge(presence, facts)
        out += [_as_lead(f) for f in judged] if member else judged
    out.sort(key=lambda f: -f.score)
    return out[:MAX_FINDINGS]


def _judge(presence: Presence, facts: Mapping[str, Any]) -> list[Finding]:
    project = presence.project
    declared = facts.get(f"pkg.{canonicalize_name(project)}")
    history = (
        f"From the source of each {project} release on PyPI since {presence.versions[0]} "
        f"(knowledge/snapshot/apis.json.gz): {presence.symbol} is defined in {presence.spans_text()}."
    )
    if isinstance(declared, str):
        state = presence.at(declared)
        if state is None:
            return _from_shape(
                presence, history + f" The declared {declared} is outside that range.", INFERRED
            )
        has, index = state
        if has:
            return []  # the declared release has it: its version is not why it is missing
        later = [a for a, b in presence.spans if a > index]
        earlier = [b for a, b in presence.spans if b < index]
        said = history + f" The declared {project} {declared} does not define it."
        if later and not earlier:
            return [_not_yet(presence, said, ESTABLISHED, presence.versions[later[0]])]
        if earlier and not later:
            return [_removed(presence, said, ESTABLISHED, presence.versions[earlier[-1] + 1])]
        return [
            _removed(presence, said, EITHER, presence.versions[earlier[-1] + 1]),
            _not_yet(presence, said, EITHER, presence.versions[later[0]]),
        ]
    return _from_shape(presence, history, INFERRED)


def _from_shape(presence: Presence, history: str, score: float) -> list[Finding]:
    """No usable declared release: a name only ever added was not in the user's release yet; one
    only ever removed is gone from it; one that came and went, either."""
    added, removed = presence.added_in, presence.removed_in
    if added and not removed:
        return [_not_yet(presence, history, score, added)]
    if removed and not added:
        return [_removed(presence, history, score, removed)]
    if added and removed:
        return [_removed(presence, history, EITHER, removed), _not_yet(presence, history, EITHER, added)]
    return []


MEMBER_WEIGHT = 0.4
MEMBER_CAVEAT = (
    " A class member is read from the class body only: one inherited from a base class, or set on "
    "the object from outside the class, is not seen, so this is a lead to check, not an established fact."
)


def _as_lead(finding: Finding) -> Finding:
    """A class member's history is weaker evidence than a module's or a top-level name's: below
    the rules that match the message, never an error."""
    return replace(
        finding,
        severity="warning",
        score=round(finding.score * MEMBER_WEIGHT, 4),
        confidence=round(finding.confidence * 0.6, 2),
        explanation=finding.explanation + MEMBER_CAVEAT,
    )


def _pypi(project: str, version: str) -> str:
    return f"https://pypi.org/project/{project}/{version}/"


def _removed(presence: Presence, history: str, score: float, removed_in: str) -> Finding:
    project, symbol = presence.project, presence.symbol
    return Finding(
        rule=RULE,
        kind="api-removed-in-newer-library",
        severity="error" if score == ESTABLISHED else "warning",
        components=(canonicalize_name(project),),
        title=(
            f"{symbol} is not in {project} from {removed_in} on: code written for an older {project} calls it"
        ),
        explanation=history + f" {project} {removed_in} is the first release without it.",
        fix=(
            f'Pin {project} to the last release with it (`pip install "{project}<{removed_in}"`; '
            f"{presence.last_with} has it), or upgrade the code that calls it to a release written for "
            f"{project} {removed_in} or later."
        ),
        evidence=(_pypi(project, presence.last_with), _pypi(project, removed_in)),
        confidence=0.8 if score == ESTABLISHED else 0.55 if score == INFERRED else 0.4,
        explains_error=True,
        score=score + 0.001,  # of two readings as likely as each other, the removal first
    )


def _not_yet(presence: Presence, history: str, score: float, added_in: str) -> Finding:
    project, symbol = presence.project, presence.symbol
    model = canonicalize_name(project) == "transformers" and bool(
        _MODEL_NAME.search(symbol) or symbol.startswith("transformers.models.")
    )
    return Finding(
        rule=RULE,
        kind="model-needs-newer-library" if model else "package-pin-conflict",
        severity="error" if score == ESTABLISHED else "warning",
        components=(canonicalize_name(project), "model") if model else (canonicalize_name(project),),
        title=(
            f"{symbol} first appears in {project} {added_in}: "
            f"the installed {project} is older than the code calling it"
        ),
        explanation=history + f" {project} {added_in} is the first release with it.",
        fix=(
            f'Upgrade {project} (`pip install -U "{project}>={added_in}"`), checking that the packages '
            f"pinning it allow that (`compatsolve audit` shows the Requires-Dist conflicts), or install "
            f"the release of the calling code written for the {project} you have."
        ),
        evidence=(_pypi(project, added_in),),
        confidence=0.8 if score == ESTABLISHED else 0.55 if score == INFERRED else 0.4,
        explains_error=True,
        score=score,
    )
