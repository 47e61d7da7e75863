"""End-to-end evaluation on failures from public issues that are NOT in the study corpus the rules
were mined from (tests/e2e/cases.toml, each with its source link): hardware, packages, model and
the error line, as a user would give them to `compatsolve audit --error`.

Measured: for environmental cases, whether the true cause (kind and an implicated component) is
found among the error-explaining findings (detection) and ranked first; for non-environmental
cases (user code, data), whether an error-severity finding wrongly claims to explain the error
(false alarm). The figures are printed. The audit issue's goals are 90 % detected and 75 % ranked first; the
floors asserted here are the levels measured when this suite was written (67 % / 67 %, no false
alarm), so that a change that loses ground fails. Raise them as the knowledge grows.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from compatsolve import audit as auditing
from compatsolve import diagnose as diagnosing
from compatsolve.environment import RunSettings
from compatsolve.knowledge import load
from compatsolve.sources.assemble import EnvironmentRequest, build_environments

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DETECTION_FLOOR = 0.65
RANKED_FIRST_FLOOR = 0.65

CASES: list[dict[str, Any]] = tomllib.loads((Path(__file__).parent / "e2e" / "cases.toml").read_text())[
    "case"
]
CORPUS = {
    r["link"]
    for r in tomllib.loads(
        (Path(__file__).parent.parent / "knowledge" / "corpus" / "records.toml").read_text()
    )["record"]
}


def judge(case: dict[str, Any]) -> list[Any]:
    kb = load()
    run = RunSettings(
        model=case.get("model"),
        stage=case.get("stage"),
        engine=case.get("engine"),
        dtype=case.get("dtype"),
        quantization=case.get("quantization"),
        tp=case.get("tp"),
    )
    request = EnvironmentRequest(
        targets=(case["target"],) if case.get("target") else (),
        with_packages=tuple(case.get("packages", ())),
        run=run,
        lenient=True,
        # a described case has no live machine: an empty report stands in for "no probe"
        reports=() if case.get("target") else ("/dev/null",),
    )
    env = build_environments(request, kb)[0]
    judged = auditing.audit(env, kb)
    findings, _ = diagnosing.diagnose(case["error"], judged.facts, kb, extra=judged.findings)
    return findings


def _hit(finding: Any, case: dict[str, Any]) -> bool:
    return finding.kind == case["kind"] and (
        not case.get("components") or bool(set(finding.components) & set(case["components"]))
    )


def test_cases_are_public_and_outside_the_mined_corpus() -> None:
    assert len(CASES) >= 40
    for case in CASES:
        assert case["source"].startswith("https://github.com/")
        assert case["source"] not in CORPUS


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    rows = []
    for case in CASES:
        findings = judge(case)
        explaining = [f for f in findings if f.explains_error]
        rows.append(
            {
                "id": case["id"],
                "environmental": case["environmental"],
                "found": case["environmental"] and any(_hit(f, case) for f in explaining),
                "first": case["environmental"] and bool(explaining) and _hit(explaining[0], case),
                "false_alarm": (not case["environmental"])
                and any(f.severity == "error" and f.explains_error for f in findings),
            }
        )
    env_rows = [r for r in rows if r["environmental"]]
    other = [r for r in rows if not r["environmental"]]
    summary = {
        "environmental": len(env_rows),
        "detected": sum(r["found"] for r in env_rows),
        "ranked_first": sum(r["first"] for r in env_rows),
        "non_environmental": len(other),
        "false_alarms": sum(r["false_alarm"] for r in other),
        "missed": [r["id"] for r in env_rows if not r["found"]],
        "alarms": [r["id"] for r in other if r["false_alarm"]],
    }
    print("\ne2e:", summary)
    return summary


def test_detection_rate(results: dict[str, Any]) -> None:
    rate = results["detected"] / results["environmental"]
    print(
        f"detection {results['detected']}/{results['environmental']} = {rate:.0%}; missed {results['missed']}"
    )
    assert rate >= DETECTION_FLOOR


def test_ranked_first_rate(results: dict[str, Any]) -> None:
    rate = results["ranked_first"] / results["environmental"]
    print(f"ranked first {results['ranked_first']}/{results['environmental']} = {rate:.0%}")
    assert rate >= RANKED_FIRST_FLOOR


def test_no_false_alarm_on_non_environmental_cases(results: dict[str, Any]) -> None:
    print(f"false alarms {results['false_alarms']}/{results['non_environmental']}: {results['alarms']}")
    assert results["false_alarms"] == 0
