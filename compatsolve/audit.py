"""`audit`: run every rule and the metadata checks over an environment's facts."""

from __future__ import annotations

from typing import Any

from compatsolve.derive import derive
from compatsolve.environment import Environment
from compatsolve.findings import Finding, order
from compatsolve.knowledge import Knowledge
from compatsolve.metadata_check import check_requirements, snapshot_requirements
from compatsolve.records import record
from compatsolve.rules import Truth


@record
class Judgement:
    facts: dict[str, Any]
    findings: list[Finding]
    notices: list[dict[str, str]]


def judged_facts(env: Environment, kb: Knowledge) -> dict[str, Any]:
    return derive(env.facts(kb), kb)


def rule_findings(facts: dict[str, Any], kb: Knowledge) -> list[Finding]:
    stage = facts.get("run.stage")
    found = []
    for rule in kb.rules:
        if rule.when is None or rule.symptom or (stage and stage not in rule.stages):
            continue
        if rule.when.evaluate(facts) is Truth.TRUE:
            found.append(Finding.from_rule(rule))
    return found


def unresolved_findings(env: Environment) -> list[Finding]:
    """Notices a user must see as findings: facts that could not be resolved, NVML failures."""
    out = []
    for notice in env.notices:
        if notice.severity == "info":
            continue
        mismatch = "mismatch" in notice.message.lower() and notice.source == "nvml"
        out.append(
            Finding(
                rule="nvml-driver-library-mismatch" if mismatch else "unresolved-fact",
                kind="driver-cuda-mismatch" if mismatch else "config-error",
                severity="error" if mismatch else "warning",
                components=("driver",) if mismatch else (),
                title=notice.message.split(" — ")[0],
                explanation=notice.message + f" (from {notice.source})",
                fix=(
                    "Reboot, or reload the nvidia kernel modules, so the kernel module matches the "
                    "user-space driver."
                    if mismatch
                    else "Give the fact explicitly (--target, --model, --with) to have it judged."
                ),
                evidence=("https://docs.nvidia.com/deploy/nvml-api/group__nvmlInitializationAndCleanup.html",)
                if mismatch
                else (),
                confidence=0.9 if mismatch else 0.5,
            )
        )
    return out


def audit(env: Environment, kb: Knowledge) -> Judgement:
    facts = judged_facts(env, kb)
    findings = rule_findings(facts, kb)
    findings += check_requirements(env, snapshot_requirements(env))
    if env.packages and "python.version" in facts:  # the check imports the planner's wheel tags
        from compatsolve.release_files import planned_packages, release_file_findings
        from compatsolve.snapshot import load_snapshot

        planned = planned_packages(env)
        findings += release_file_findings(planned, facts, load_snapshot()) if planned else []
    findings += unresolved_findings(env)
    notices = [{"source": n.source, "message": n.message, "severity": n.severity} for n in env.notices]
    public = {k: v for k, v in sorted(facts.items()) if not k.startswith("_")}
    return Judgement(facts=public, findings=order(findings, error_given=False), notices=notices)
