"""The API history: scanning a release's source (compatsolve/api_scan.py), its stored spans
(compatsolve/api_history.py), and the findings a missing name gives (compatsolve/api_skew.py).

The module sources below are written for these tests (they exercise the scanner's cases: lazy
`__init__` lists, dataclass fields, `self.x` attributes, names under `try`/`if`). The history
tests read the shipped knowledge/snapshot/apis.json.gz, built by `compatsolve kb refresh --apis`
from the PyPI files of each release, and check it against facts from other sources: the model
catalog's minimum transformers versions (the vendors' model cards) and the PyPI snapshot's
release list."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from compatsolve.api_history import ApiScan, Presence, load_history, spans_of
from compatsolve.api_scan import module_name, scan_module
from compatsolve.api_skew import api_findings, owning_projects
from compatsolve.knowledge import load
from compatsolve.versions import parse_version


def _scan(source: str, *, init: bool = False) -> tuple[set[str], set[str]]:
    return scan_module(textwrap.dedent(source).encode(), package_init=init, members=True)


def test_module_names_follow_import_paths() -> None:
    assert module_name("peft/tuners/lora/__init__.py") == "peft.tuners.lora"
    assert module_name("src/trl/trainer/sft_trainer.py") == "trl.trainer.sft_trainer"
    assert module_name("vllm/engine/arg_utils.py") == "vllm.engine.arg_utils"
    # outside an importable tree: tests, build scripts, non-identifier directories, data files
    assert module_name("tests/test_lora.py") is None
    assert module_name("setup.py") is None
    assert module_name("vllm-0.6.0.data/scripts/x.py") is None
    assert module_name("peft/py.typed") is None


def test_scan_reads_definitions_without_running_them() -> None:
    names, members = _scan(
        """
        import os
        from typing import Optional
        raise SystemExit("never run")
        try:
            from fast import Kernel
            HAS_KERNEL = True
        except ImportError:
            def fallback(): ...
        if os.name == "nt":
            WINDOWS_ONLY = 1

        class Trainer(Base):
            kind: str = "x"
            shared = 0

            def __init__(self, model, *, processing_class=None, **kwargs):
                self.model = model
                self.accelerator: object = None

            def train(self):
                self.state = 1
        """
    )
    assert {"Trainer", "HAS_KERNEL", "fallback", "WINDOWS_ONLY"} <= names
    # imports re-export names only from a package's __init__
    assert "Optional" not in names and "Kernel" not in names
    assert {
        "Trainer.train",
        "Trainer.model",
        "Trainer.accelerator",
        "Trainer.state",
        "Trainer.shared",
        "Trainer.kind",
    } <= members
    # keywords __init__ accepts, and a dataclass field (an __init__ keyword too)
    assert {"Trainer(model", "Trainer(processing_class", "Trainer(kind"} <= members
    assert "Trainer(kwargs" not in members and "Trainer(self" not in members


def test_scan_reads_lazy_init_exports_and_survives_bad_source() -> None:
    names, _ = _scan(
        """
        from .utils import helper as public_helper
        _import_structure = {"models.llama": ["LlamaForCausalLM", "LlamaConfig"], "x": ["not an id"]}
        _import_structure["models.qwen2"].extend(["Qwen2ForCausalLM"])
        """,
        init=True,
    )
    assert {"public_helper", "LlamaForCausalLM", "LlamaConfig", "Qwen2ForCausalLM"} <= names
    assert "not an id" not in names
    assert scan_module(b"def broken(:\n", package_init=False, members=True) == (set(), set())


def _scans(*present: set[str]) -> list[ApiScan]:
    return [
        ApiScan("lib", f"1.{i}.0", frozenset({"lib"}), frozenset(names), frozenset())
        for i, names in enumerate(present)
    ]


def test_spans_join_consecutive_releases() -> None:
    stored = spans_of(_scans({"a", "b"}, {"a"}, {"a", "b"}, {"c"}))
    assert stored["versions"] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    assert stored["names"] == {"a": "0,2", "b": "0,0,2,2", "c": "3,3"}


def _presence(*spans: tuple[int, int]) -> Presence:
    return Presence("lib", "X", ("1.0.0", "1.1.0", "1.2.0", "1.3.0"), spans)


def test_presence_dates_a_name() -> None:
    added = _presence((2, 3))
    assert (added.added_in, added.removed_in, added.always) == ("1.2.0", None, False)
    removed = _presence((0, 1))
    assert (removed.added_in, removed.removed_in, removed.last_with) == (None, "1.2.0", "1.1.0")
    assert _presence((0, 3)).always
    # a declared release is judged by itself, or by the newest scanned release below it
    assert added.at("1.1.0") == (False, 1)
    assert added.at("1.2.5") == (True, 2)
    assert added.at("1.3.0rc1+cu121") == (True, 3)  # a pre-release or local build: as its release
    assert added.at("0.9") == (False, -1)  # older than the range, and the name came later
    assert removed.at("0.9") is None  # the name is there from the first scanned release: unknown
    assert added.at("2.0.0") is None  # newer than anything scanned
    assert added.at("not a version") is None


# ---------------------------------------------------------------- the shipped history

HISTORY = load_history()
needs_history = pytest.mark.skipif(HISTORY is None, reason="knowledge/snapshot/apis.json.gz not built")


@needs_history
def test_history_covers_the_snapshot_releases() -> None:
    from compatsolve.api_scan import API_PROJECTS
    from compatsolve.snapshot import load_snapshot

    assert HISTORY is not None
    snapshot = load_snapshot()
    assert snapshot is not None
    assert set(HISTORY.projects) == set(API_PROJECTS)
    for project in HISTORY.projects:
        scanned = HISTORY.scanned(project)
        assert list(scanned) == sorted(scanned, key=parse_version)
        assert set(scanned) <= set(snapshot.project(project))
        assert HISTORY.project_of_module(project.replace("-", "_")) in {project, None}


@needs_history
def test_model_classes_appear_no_later_than_the_model_cards_say() -> None:
    """Each catalog model's architecture class is in transformers by the release its vendor's
    model card names as the minimum (models.toml), and the history puts its first appearance at
    or before it: two independent sources agree."""
    assert HISTORY is not None
    first = HISTORY.scanned("transformers")[0]
    checked = 0
    for model in load().models:
        if not model.architecture or not model.min_transformers or model.trust_remote_code:
            continue  # a remote-code model's class is in its repository, not in transformers
        if parse_version(model.min_transformers) <= parse_version(first):
            continue  # predates the scanned range
        presence = HISTORY.name("transformers", model.architecture)
        assert presence is not None, model.id
        assert parse_version(presence.first_with) <= parse_version(model.min_transformers), model.id
        checked += 1
    assert checked >= 5


def _judge(error: str, **facts: Any) -> list[Any]:
    return api_findings(error, {f"pkg.{k}": v for k, v in facts.items()}, load_history)


@needs_history
def test_a_name_the_declared_release_lacks_is_dated_both_ways() -> None:
    """Real pairs read from the history, checked both ways: the model class that the catalog says
    needs transformers >= its minimum is missing from the release before it."""
    assert HISTORY is not None
    model = next(m for m in load().models if m.id.startswith("qwen2-") and m.architecture)
    presence = HISTORY.name("transformers", model.architecture)
    assert presence is not None and presence.added_in is not None
    older = HISTORY.scanned("transformers")[presence.spans[0][0] - 1]
    error = f"ImportError: cannot import name '{model.architecture}' from 'transformers'"
    found = _judge(error, transformers=older)
    assert [(f.kind, f.severity) for f in found] == [("model-needs-newer-library", "error")]
    assert f"transformers>={presence.added_in}" in found[0].fix
    assert found[0].components == ("transformers", "model")
    assert _judge(error, transformers=presence.added_in) == []  # that release has it
    undeclared = _judge(error)
    assert [(f.kind, f.severity) for f in undeclared] == [("model-needs-newer-library", "warning")]


@needs_history
def test_a_removed_module_reads_as_removed() -> None:
    """A module some scanned release has and the newest does not: with a release after the
    removal declared, the history says it was removed, and names the last release with it."""
    assert HISTORY is not None
    stored = HISTORY._project("peft")  # a real removed module
    assert stored is not None
    versions = stored["versions"]
    spans_of_module = {m: [int(n) for n in s.split(",")] for m, s in stored["modules"].items()}
    module, spans = next(
        (m, s) for m, s in sorted(spans_of_module.items()) if s[0] == 0 and s[-1] < len(versions) - 1
    )
    removed_in = versions[spans[-1] + 1]
    found = _judge(f"ModuleNotFoundError: No module named '{module}'", peft=versions[-1])
    assert found and found[0].kind == "api-removed-in-newer-library" and found[0].severity == "error"
    assert f"peft<{removed_in}" in found[0].fix
    assert found[0].evidence[-1] == f"https://pypi.org/project/peft/{removed_in}/"


@needs_history
def test_names_the_history_cannot_date_give_nothing() -> None:
    # in every scanned release, or never in the project: no version of it explains the message
    assert _judge("cannot import name 'AutoModelForCausalLM' from 'transformers'") == []
    assert _judge("cannot import name 'no_such_name_anywhere' from 'transformers'") == []
    assert _judge("cannot import name 'helper' from 'my_project.utils'") == []
    assert api_findings("cannot import name 'x' from 'peft'", {}, None) == []


@needs_history
def test_a_class_member_is_a_lead_not_an_established_cause() -> None:
    """A member the class body stopped defining: even with the declared release lacking it, the
    finding stays a warning below the rules (a base class or outside code may still set it)."""
    from compatsolve.api_skew import MEMBER_CAVEAT

    assert HISTORY is not None and "peft" in HISTORY.defining("LoraModel")
    stored = HISTORY._project("peft")
    assert stored is not None
    versions = stored["versions"]
    spans = {m: [int(n) for n in s.split(",")] for m, s in stored["members"].items()}
    member = next(
        m.split(".", 1)[1]
        for m, s in sorted(spans.items())
        if m.startswith("LoraModel.") and s[0] == 0 and s[-1] < len(versions) - 1
    )
    found = _judge(f"AttributeError: 'LoraModel' object has no attribute '{member}'", peft=versions[-1])
    ours = [f for f in found if "peft" in f.components]
    assert ours and all(f.severity == "warning" and f.explanation.endswith(MEMBER_CAVEAT) for f in ours)
    assert ours[0].kind == "api-removed-in-newer-library" and ours[0].score < 0.5


# ------------------------------------------------------------------ the class a failed call names


@needs_history
def test_owning_projects_names_the_class_body_not_its_re_exporters() -> None:
    """unsloth re-exports trl's DPOTrainer, so both "define" the name; only trl's class body has
    the method, and a failed call on it is about trl."""
    assert HISTORY is not None
    assert {"trl", "unsloth"} <= set(HISTORY.defining("DPOTrainer"))
    assert HISTORY.has_class_body("trl", "DPOTrainer") and not HISTORY.has_class_body("unsloth", "DPOTrainer")
    text = "TypeError: DPOTrainer.get_batch_logps() got an unexpected keyword argument 'average_log_prob'"
    assert owning_projects(text, load_history) == ("trl",)


@needs_history
def test_owning_projects_prefers_the_class_that_has_the_member() -> None:
    """flash-attn has a GenerationMixin of its own; the member says which one a call meant."""
    assert HISTORY is not None
    assert {"flash-attn", "transformers"} <= set(HISTORY.defining("GenerationMixin"))
    text = "GenerationMixin._extract_past_from_model_output() got an unexpected keyword argument 'x'"
    assert owning_projects(text, load_history) == ("transformers",)


@needs_history
def test_owning_projects_says_nothing_for_unknown_classes_or_without_history() -> None:
    text = "'MyCollator' object has no attribute 'pad'"
    assert owning_projects(text, load_history) == ()
    assert owning_projects("DPOTrainer.train() missing 1 required positional argument: 'x'", None) == ()


@needs_history
def test_a_family_reading_names_the_owner_the_message_does_not(kb) -> None:
    """A message that names only a class: the family of an API skew implicates its project."""
    from compatsolve.diagnose import diagnose

    text = "TypeError: DPOTrainer.__init__() got an unexpected keyword argument 'gamma'"
    found, _ = diagnose(text, {}, kb, apis=load_history)
    family = next(f for f in found if f.rule == "family-api-removed-in-newer-library")
    assert "trl" in family.components
    without, _ = diagnose(text, {}, kb)
    assert "trl" not in next(f for f in without if f.rule == family.rule).components
