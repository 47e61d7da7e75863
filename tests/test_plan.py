"""Plan scenarios (tests/plan_cases.toml): each asserts facts that must hold, plus the invariants
every feasible plan must satisfy. No golden copies of plan output."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from compatsolve.knowledge import load
from compatsolve.plan import Plan, PlanRequest, failure_rules, machine_of, make_plan, plan_facts
from compatsolve.rules import Truth
from compatsolve.snapshot import load_snapshot
from compatsolve.sources.assemble import finish
from compatsolve.sources.target import parse_target
from compatsolve.versions import parse_version, variant_cuda

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CASES = tomllib.loads((Path(__file__).parent / "plan_cases.toml").read_text())["scenario"]


def _plan(case: dict[str, Any]) -> tuple[Plan, list[Any]]:
    kb = load()
    snapshot = load_snapshot()
    assert snapshot is not None, "the shipped PyPI snapshot is missing"
    targets = case["target"] if isinstance(case["target"], list) else [case["target"]]
    envs = [finish(parse_target(t, kb), kb) for t in targets]
    card = kb.model(case["model"])
    assert card is not None, case["model"]
    request = PlanRequest(
        model=card,
        stage=case["stage"],
        engine=case.get("engine"),
        method=case.get("method"),
        dtype=case.get("dtype"),
        keep=tuple(case.get("keep", ())),
    )
    return make_plan(request, envs, kb, snapshot), envs


def test_at_least_forty_scenarios_across_the_gpu_range() -> None:
    assert len(CASES) >= 40
    text = " ".join(str(c["target"]) for c in CASES)
    for gpu in (
        "P100",
        "V100",
        "T4",
        "RTX 3090",
        "A10",
        "A100",
        "L4",
        "RTX 4090",
        "H100",
        "RTX 5090",
        "B200",
    ):
        assert gpu in text


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_scenario(case: dict[str, Any]) -> None:
    plan, envs = _plan(case)
    expect = case["expect"]
    assert plan.feasible is expect["feasible"], (plan.conflict, plan.derivation[-5:])
    if not plan.feasible:
        assert plan.conflict and plan.conflict.get("summary")
        doc = plan.to_json()
        assert doc["feasible"] is False and doc["packages"] == []
        return
    pins = {p["name"]: p for p in plan.packages}
    command = plan.command or ""
    engine = "sglang" if "sglang" in command else "vllm" if "vllm" in command else "transformers"
    for key, value in expect.items():
        if key == "dtype":
            assert plan.settings["dtype"] == value
        elif key == "dtype_not":
            assert plan.settings["dtype"] != value
        elif key == "attention_backend":
            assert plan.settings["attention_backend"] == value
        elif key == "engine":
            assert engine == value
        elif key == "engine_not":
            assert engine != value
        elif key == "no_flash_attn":
            assert "flash-attn" not in pins
            assert plan.settings["attention_backend"] not in ("FLASH_ATTN", "flash_attention_2")
        elif key == "min_tp":
            assert plan.settings["tensor_parallel_size"] >= value
        elif key == "has":
            assert set(value) <= set(pins), set(value) - set(pins)
        elif key == "quantization":
            assert plan.settings["quantization"] == value
        elif key == "torch":
            assert pins["torch"]["version"] == value
        elif key == "torch_variant":
            assert (pins["torch"]["variant"], pins["torch"]["index_url"]) == tuple(value)
    check_invariants(plan, envs, case)


def check_invariants(plan: Plan, envs: list[Any], case: dict[str, Any]) -> None:
    kb = load()
    snapshot = load_snapshot()
    assert snapshot is not None
    pins = {p.name: p for p in plan.pins}
    # 1. every Requires-Dist among the pinned packages is satisfied (markers for the target Python)
    for cand in plan.pins:
        for line in (cand.release.requires_dist or ()) if cand.release else ():
            req = Requirement(line)
            dep = canonicalize_name(req.name)
            if dep not in pins:
                continue
            py = envs[0].python_version or "3.11"
            marker_env = {
                "python_version": ".".join(py.split(".")[:2]),
                "sys_platform": "linux",
                "platform_system": "Linux",
                "platform_machine": "x86_64",
                "extra": "",
            }
            if req.marker is not None and not req.marker.evaluate(marker_env):
                continue
            assert req.specifier.contains(pins[dep].version, prereleases=True), f"{cand.label} needs {line}"
    ccs = [parse_version(g.cc) for env in envs for g in env.gpus or () if g.cc]
    min_cc = min(ccs) if ccs else None
    torch = pins.get("torch")
    # 2. torch's CUDA variant within every driver's range; 3. its kernels cover every GPU
    if torch is not None and torch.variant and variant_cuda(torch.variant):
        cuda = Version(variant_cuda(torch.variant) or "0")
        for env in envs:
            if env.driver_cuda:
                assert cuda <= Version(env.driver_cuda)
        facts = kb.torch_release(str(torch.version))
        assert facts is not None
        arch = [Version(a.removesuffix("+PTX")) for a in facts.arch.get(torch.variant, ())]
        for cc in ccs:
            assert cc is not None
            if arch:
                assert any(a.release[0] == cc.release[0] and a <= cc for a in arch), (torch.label, cc)
    # 4. no FlashAttention-2 and no bfloat16 below sm_80
    if min_cc is not None and min_cc < Version("8.0"):
        assert "flash-attn" not in pins
        assert plan.settings["dtype"] != "bfloat16"
    # 5. the engine and transformers are new enough for the model
    card = kb.model(case["model"])
    assert card is not None
    if card.min_transformers and "transformers" in pins:
        assert pins["transformers"].version >= Version(card.min_transformers)
    if card.min_vllm and "vllm" in pins:
        assert pins["vllm"].version >= Version(card.min_vllm)
    # 6. tensor-parallel size divides the heads and fits the GPU count
    tp = plan.settings["tensor_parallel_size"]
    if card.attention_heads:
        assert card.attention_heads % tp == 0
    for env in envs:
        if env.gpus:
            assert tp <= len(env.gpus)
    # 7. the chosen settings (dtype, quantization, engine) trip no error rule about them: an
    #    audit of the planned stack with these settings would find no such failure
    command = plan.command or ""
    engine = "sglang" if "sglang" in command else "vllm" if "vllm" in command else "transformers"
    run = {
        "run.stage": case["stage"],
        "run.engine": engine,
        "run.dtype": plan.settings["dtype"],
        "run.quantization": plan.settings["quantization"] or "none",
    }
    for i, env in enumerate(envs):
        facts = plan_facts(pins, machine_of(env, kb, case.get("python"), f"machine {i}"), run)
        for rule in failure_rules(kb, case["stage"]):
            assert rule.when is not None
            if "run.dtype" in rule.when.facts() or "run.quantization" in rule.when.facts():
                assert rule.when.evaluate(facts) is not Truth.TRUE, (rule.id, run)
    # 8. JSON contract shape
    doc = plan.to_json()
    assert doc["schema"] == "compatsolve.plan/1"
    for entry in doc["packages"]:
        assert set(entry) == {"name", "version", "variant", "index_url", "reason"}
        assert "+" not in entry["version"]
        assert entry["reason"]
    assert set(doc["settings"]) >= {
        "dtype",
        "attention_backend",
        "tensor_parallel_size",
        "max_model_len",
        "quantization",
        "env",
    }


def test_infeasible_full_finetune_offers_lora_alternatives() -> None:
    case = {
        "target": "RTX 4090,driver=550.54.15,python=3.11",
        "model": "llama-3.1-8b-instruct",
        "stage": "fine-tuning",
        "method": "full",
    }
    plan, _ = _plan(case)
    assert not plan.feasible and plan.conflict is not None
    assert plan.conflict["facts"]["run.method"] == "full"
    changes = {alt["change"]: alt for alt in plan.alternatives}
    assert changes["use --method lora"]["feasible"] is True
    assert "peft" in changes["use --method qlora"]["summary"]
    assert "bitsandbytes" in changes["use --method qlora"]["summary"]


def test_symptom_rules_never_shape_a_plan(kb) -> None:
    from compatsolve.plan import failure_rules
    from compatsolve.resolve import _rules_by_package

    symptoms = {r.id for r in kb.rules if r.symptom and r.when is not None and r.severity == "error"}
    assert symptoms, "the knowledge base has error-severity symptom rules with conditions"
    for stage in ("inference", "fine-tuning"):
        assert not symptoms & {r.id for r in failure_rules(kb, stage)}
    assert not symptoms & {r.id for rules in _rules_by_package(kb.rules).values() for r in rules}
