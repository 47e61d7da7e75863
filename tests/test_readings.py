"""A family's other readings (knowledge/families.toml `[[family.reading]]`, compatsolve/families.py).

"cannot import name 'x' from 'lib'" says that the installed release of lib lacks x: either a newer
lib removed it (api-removed-in-newer-library) or x came after the older lib installed
(package-pin-conflict). Both readings are offered; the PyPI snapshot's release dates of the
declared packages order them. Dates and Requires-Dist come from the shipped snapshot
(knowledge/snapshot, fetched from PyPI by tools/refresh); the error lines are re-entered from the
threads cited as the readings' evidence and from tests/rule_cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compatsolve import diagnose as diagnosing
from compatsolve.errors import KnowledgeError
from compatsolve.families import SKEW_DAYS, family_findings, version_skew
from compatsolve.knowledge import load, parse_knowledge
from compatsolve.snapshot import Published, published

ACCELERATE_IMPORT = "ImportError: cannot import name 'is_npu_available' from 'accelerate.utils'"
TRANSFORMERS_IMPORT = "cannot import name 'is_torch_less_than_1_11' from 'transformers.pytorch_utils'"


def _explaining(error: str, facts: dict[str, Any]) -> list[Any]:
    found, _ = diagnosing.diagnose(error, facts, load(), published=published)
    return [f for f in found if f.explains_error]


def test_the_snapshot_says_when_a_release_was_published_and_what_it_requires() -> None:
    peft = published("peft", "0.6.1")
    transformers = published("transformers", "4.28.1")
    assert peft is not None and transformers is not None
    assert "transformers" in peft.requires and "torch" in peft.requires
    assert transformers.date < peft.date
    # a local label and a short release number name the same release
    assert published("torch", "2.5.0+cu121") == published("torch", "2.5.0") is not None
    assert published("transformers", "4.28") == published("transformers", "4.28.0")
    assert published("transformers", "0.0.0.0.1") is None
    assert published("not-a-stack-project", "1.0") is None
    assert published("transformers", "not a version") is None


def test_both_readings_are_offered_when_no_version_is_given() -> None:
    for error in (TRANSFORMERS_IMPORT, ACCELERATE_IMPORT):
        found = _explaining(error, {})
        kinds = [f.kind for f in found]
        assert kinds[0] == "api-removed-in-newer-library", error
        assert "package-pin-conflict" in kinds, error
        reading = next(f for f in found if f.kind == "package-pin-conflict")
        assert reading.severity == "warning" and reading.confidence < found[0].confidence
        assert "From PyPI" not in reading.explanation


def test_an_older_library_than_its_caller_puts_the_upgrade_reading_first() -> None:
    # peft 0.6.1 requires transformers and was published months after transformers 4.28.1
    old = {"pkg.transformers": "4.28.1", "pkg.peft": "0.6.1"}
    found = _explaining(TRANSFORMERS_IMPORT, old)
    assert found[0].kind == "package-pin-conflict"
    assert found[0].rule == "family-api-not-yet-in-older-library"
    assert "transformers" in found[0].components
    assert "transformers 4.28.1" in found[0].explanation and "peft 0.6.1" in found[0].explanation
    assert "older than" in found[0].explanation
    assert "api-removed-in-newer-library" in [f.kind for f in found[1:]]


def test_a_newer_library_than_its_caller_keeps_the_removal_reading_first() -> None:
    new = {"pkg.transformers": "4.50.3", "pkg.peft": "0.6.1"}
    found = _explaining(TRANSFORMERS_IMPORT, new)
    assert found[0].kind == "api-removed-in-newer-library"
    reading = next(f for f in found if f.kind == "package-pin-conflict")
    assert "newer than" in reading.explanation


def test_the_family_path_orders_its_readings_too() -> None:
    """A package without a general import rule of its own: the family reads the message."""
    kb = load()
    error = "ImportError: cannot import name 'ILQLTrainer' from 'trlx.trainer'"
    assert not diagnosing.candidates(error, {}, kb)[0]
    facts = {"pkg.trlx": "0.7.0", "pkg.caller-lib": "2.0"}
    plain = _ranked(family_findings(error, {"pkg.trlx": "0.7.0"}, kb, published))
    assert [f.kind for f in plain][:2] == ["api-removed-in-newer-library", "package-pin-conflict"]
    assert all("trlx" in f.components for f in plain[:2])
    # a caller published long after the declared trlx, and requiring it
    dates = {("trlx", "0.7.0"): "2023-06-01", ("caller-lib", "2.0"): "2024-06-01"}

    def requiring(project: str, version: str) -> Published | None:
        date = dates.get((project, version))
        return (
            Published(date, frozenset({"trlx"}) if project == "caller-lib" else frozenset()) if date else None
        )

    def unrelated(project: str, version: str) -> Published | None:
        date = dates.get((project, version))
        return Published(date, frozenset()) if date else None

    ordered = _ranked(family_findings(error, facts, kb, requiring))
    assert [f.kind for f in ordered][:2] == ["package-pin-conflict", "api-removed-in-newer-library"]
    # the same caller, not requiring trlx: no skew to read, the removal reading stays first
    assert version_skew("trlx", facts, unrelated) is None
    assert _ranked(family_findings(error, facts, kb, unrelated))[0].kind == "api-removed-in-newer-library"


def _ranked(findings: list[Any]) -> list[Any]:
    return sorted(findings, key=lambda f: -f.score)


def test_the_skew_needs_half_a_year() -> None:
    def at(date: str) -> Published:
        return Published(date, frozenset({"lib"}))

    days = {"lib": "2024-01-01", "near": "2024-05-01", "far": "2025-01-01"}
    for caller, older in (("near", False), ("far", True)):
        facts = {"pkg.lib": "1.0", f"pkg.{caller}": "1.0"}
        skew = version_skew("lib", facts, lambda p, v: at(days[p]))
        assert skew is not None and skew.subject_older is older
        assert (skew.days >= SKEW_DAYS) is older


def test_a_users_own_module_is_not_a_subject() -> None:
    found = family_findings("ImportError: cannot import name 'helper' from 'utils'", {}, load(), published)
    assert found and all("utils" not in f.components for f in found)


def test_a_quantization_reading_needs_a_quantization() -> None:
    kb = load()
    error = "RuntimeError: CUDA error: no kernel image is available for execution on the device"
    plain = family_findings(error, {}, kb)
    assert "quantization-unsupported" not in [f.kind for f in plain]
    quantized = family_findings(error, {"run.quantization": "awq"}, kb)
    kinds = [f.kind for f in quantized]
    assert kinds[0] == "gpu-arch-unsupported" and "quantization-unsupported" in kinds
    worded = family_findings(error + " (AWQ kernels)", {}, kb)
    assert "quantization-unsupported" in [f.kind for f in worded]


@pytest.mark.parametrize(
    ("family_extra", "message"),
    [
        ('subjects = ["cannot import name (\\\\S+)"]', "needs a group named component"),
        ('subjects = ["from (?P<module>\\\\w+)"]', "'module'"),
        (
            '[[family.reading]]\nid = "family-x-2"\nkind = "config-error"\ntitle = "t"\n'
            'explanation = "e"\nfix = "f"\nevidence = ["https://pip.pypa.io/en/stable/"]',
            "is the family's own",
        ),
        (
            '[[family.reading]]\nid = "x-2"\nkind = "package-pin-conflict"\ntitle = "t"\n'
            'explanation = "e"\nfix = "f"\nevidence = ["https://pip.pypa.io/en/stable/"]',
            "must start with 'family-'",
        ),
    ],
)
def test_malformed_readings_and_subjects_are_load_errors(
    tmp_path: Path, family_extra: str, message: str
) -> None:
    root = tmp_path / "knowledge"
    root.mkdir()
    body = (
        '[[family]]\nid = "family-x"\nkind = "config-error"\nstrong = ["x"]\ntitle = "t"\n'
        'explanation = "e"\nfix = "f"\nevidence = ["https://pip.pypa.io/en/stable/"]\n'
    )
    if family_extra.startswith("subjects"):
        body = body.replace('strong = ["x"]\n', f'strong = ["x"]\n{family_extra}\n')
    else:
        body += family_extra + "\n"
    (root / "families.toml").write_text(body)
    with pytest.raises(KnowledgeError, match=message):
        parse_knowledge(root)
