"""`plan`: choose the packages (through resolve.py) and the runtime settings for a model, a stage
and one machine or a fleet; explain the choice, or why nothing fits and what would."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from compatsolve.derive import FULL_FINETUNE_BYTES_PER_PARAM, GIB, weights_gib
from compatsolve.environment import Environment, model_facts
from compatsolve.errors import InputError
from compatsolve.knowledge import Knowledge, ModelCard, Rule
from compatsolve.names import canonicalize_name
from compatsolve.records import field, record, replace
from compatsolve.requirement import mentions
from compatsolve.resolve import (
    PLANNED_EXTRAS,
    PYPI_INDEX,
    Candidate,
    Exclusions,
    Machine,
    Provider,
    Req,
    candidate_facts,
    requirement_name,
    requirement_parts,
)
from compatsolve.rules import Truth
from compatsolve.snapshot import Snapshot
from compatsolve.versions import parse_version, variant_cuda

GPU_MEMORY_UTILIZATION = 0.9
RUNTIME_OVERHEAD_GIB = 1.5  # CUDA context, activations and graphs per GPU, kept out of the KV cache
MIN_CONTEXT = 2048
PLAN_SCHEMA = "compatsolve.plan/1"
ENGINE_ORDER = ("vllm", "sglang", "transformers")
MAX_ROUNDS = (
    400  # a feasible stack pins in well under 100 rounds; beyond this the search is lost in backtracking
)


@record(kw_only=True)
class PlanRequest:
    model: ModelCard
    stage: str
    engine: str | None = None
    method: str | None = None
    quantization: str | None = None
    dtype: str | None = None
    context: int | None = None
    python: str | None = None
    prefer: str = "stable"
    keep: tuple[str, ...] = ()


@record(frozen=False)
class Plan:
    feasible: bool
    packages: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    setting_reasons: dict[str, str] = field(default_factory=dict)
    command: str | None = None
    conflict: dict[str, Any] | None = None
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    derivation: list[str] = field(default_factory=list)
    machines: list[dict[str, Any]] = field(default_factory=list)
    pins: list[Candidate] = field(default_factory=list)
    # Dependencies of the pins that the snapshot does not cover: the installer resolves them.
    unplanned: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    snapshot_date: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": PLAN_SCHEMA,
            "feasible": self.feasible,
            "packages": self.packages,
            "settings": self.settings,
            "command": self.command,
            "conflict": self.conflict,
            "alternatives": self.alternatives,
        }


# ---------------------------------------------------------------- machines


def machine_of(env: Environment, kb: Knowledge, python: str | None, label: str) -> Machine:
    facts = {k: v for k, v in env.facts(kb).items() if not k.startswith(("pkg.", "torch.", "run.", "model."))}
    py = parse_version(python or env.python_version or "3.11")
    assert py is not None
    ccs = tuple(v for v in (parse_version(g.cc) for g in env.gpus or () if g.cc) if v is not None)
    amd = sorted({g.name for g in env.gpus or () if g.gfx})  # resolved or probed AMD GPUs
    if amd:
        raise InputError(
            f"{label}: {', '.join(amd)} is an AMD GPU: plans are for NVIDIA CUDA stacks "
            "(`compatsolve audit --target` judges an AMD machine against ROCm's and Ollama's support lists)"
        )
    if env.gpus and len(ccs) < len(env.gpus):
        names = ", ".join(sorted({g.name for g in env.gpus if not g.cc}))
        raise InputError(f"{label}: compute capability of {names} is unknown: give cc= in --target")
    return Machine(
        label=label,
        python=Version(f"{py.release[0]}.{py.release[1] if len(py.release) > 1 else 0}"),
        os_name=env.os_name or "linux",
        arch=env.arch or "x86_64",
        glibc=parse_version(env.glibc) if env.glibc else None,
        ccs=ccs,
        driver_cuda=parse_version(env.driver_cuda) if env.driver_cuda else None,
        toolkit=parse_version(env.toolkit_cuda) if env.toolkit_cuda else None,
        facts=facts,
    )


# ---------------------------------------------------------------- package sets


def roots_for(request: PlanRequest, engine: str, machines: Sequence[Machine]) -> tuple[list[Req], list[str]]:
    """Required roots and optional extras (dropped with a reason when they cannot be had)."""
    card = request.model
    roots: list[Req] = []
    optional: list[str] = []

    def need(name: str, minimum: str | None, why: str) -> None:
        spec = SpecifierSet(f">={minimum}") if minimum else SpecifierSet()
        roots.append(Req(name, spec, why if minimum else f"{name} is part of the {engine} stack"))

    need(
        "transformers",
        card.min_transformers,
        f"{card.id} ({card.model_type}) needs transformers >= {card.min_transformers}",
    )
    if request.stage == "inference":
        if engine == "vllm":
            need("vllm", card.min_vllm, f"{card.id} needs vLLM >= {card.min_vllm}")
        elif engine == "sglang":
            need("sglang", card.min_sglang, f"{card.id} needs SGLang >= {card.min_sglang}")
        else:
            need("torch", None, "")
            need("accelerate", None, "")
            if _flash_attn_possible(machines):
                optional.append("flash-attn")
        quant = request.quantization
        if engine == "transformers" and quant in ("bnb-4bit", "bnb-8bit"):
            need("bitsandbytes", None, "")
        if engine == "transformers" and quant == "awq":
            need("autoawq", None, "")
        if engine == "transformers" and quant == "gptq":
            need("optimum", None, "")
            optional.append("gptqmodel")
    else:
        for name in ("torch", "accelerate", "peft", "trl"):
            need(name, None, "")
        if request.method == "qlora" or request.quantization in ("bnb-4bit", "bnb-8bit"):
            need("bitsandbytes", None, "")
        if any(int(m.facts.get("gpu.count") or 0) > 1 for m in machines):
            optional.append("deepspeed")
        if _flash_attn_possible(machines):
            optional.append("flash-attn")
    for spec in request.keep:
        name, _, version = spec.partition("==")
        roots.append(
            Req(
                canonicalize_name(name),
                SpecifierSet(f"=={version.split('+')[0]}"),
                f"held by --keep {spec}",
                version.split("+")[1] if "+" in version else None,
            )
        )
    return roots, optional


def _flash_attn_possible(machines: Sequence[Machine]) -> bool:
    return all(m.ccs and min(m.ccs) >= Version("8.0") for m in machines)


# ---------------------------------------------------------------- resolution


def resolve_stack(
    request: PlanRequest,
    engine: str,
    machines: Sequence[Machine],
    kb: Knowledge,
    snapshot: Snapshot,
    run_facts: Mapping[str, Any],
) -> tuple[dict[str, Candidate] | None, dict[str, Any] | None, list[str], frozenset[str]]:
    """(pins, conflict, derivation, dependencies the pins need that the plan leaves to the installer)."""
    from resolvelib import BaseReporter, Resolver
    from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep

    roots, optional = roots_for(request, engine, machines)
    order = [engine, "torch", "transformers", *(r.name for r in roots), *optional]
    banned: dict[str, set[str]] = {}
    derivation: list[str] = []
    wanted_optional = list(optional)
    exclusions = Exclusions()
    for _attempt in range(12):
        provider = Provider(
            kb=kb,
            snapshot=snapshot,
            machines=machines,
            run_facts=run_facts,
            prefer=request.prefer,
            banned=banned,
            order=order,
        )
        requirements = roots + [
            Req(n, SpecifierSet(), f"{n} where the hardware supports it") for n in wanted_optional
        ]
        try:
            resolver: Any = Resolver(provider, BaseReporter())  # type: ignore[arg-type]
            result = resolver.resolve(requirements, max_rounds=MAX_ROUNDS)
        except ResolutionImpossible as exc:
            exclusions = provider.exclusions
            dropped = _drop_optional(exc.causes, wanted_optional)
            if dropped:
                wanted_optional.remove(dropped)
                derivation.append(
                    f"{dropped} left out: {_cause_text(exc.causes, provider.exclusions, dropped)}"
                )
                continue
            return None, _conflict(exc.causes, provider.exclusions, roots), derivation, frozenset()
        except ResolutionTooDeep:
            return None, {"summary": "the search gave up (too many combinations)"}, derivation, frozenset()
        exclusions = provider.exclusions
        pins = dict(result.mapping)
        problem = _post_check(pins, machines, run_facts, kb, request)
        if problem is None:
            derivation += [f"pinned {cand.label}" for _, cand in sorted(pins.items())]
            unplanned = set().union(*(provider.unplanned_dependencies(c) for c in pins.values())) - set(pins)
            if unplanned:
                derivation.append(
                    "left to the installer (outside the snapshot): " + ", ".join(sorted(unplanned))
                )
            return pins, None, derivation, frozenset(unplanned)
        label, name, why, rule_id = problem
        # Ban every candidate of that package the same rule would reject beside the other pins,
        # not just this one: one step per rule instead of one per release.
        doomed = {label}
        rule = kb.rule(rule_id) if rule_id else None
        if rule is not None and rule.when is not None:
            for other in provider.candidates(name):
                trial = {**pins, name: other}
                if any(rule.when.evaluate(plan_facts(trial, m, run_facts)) is Truth.TRUE for m in machines):
                    doomed.add(other.label)
        derivation.append(f"rejected {len(doomed)} candidate(s) of {name} incl. {label}: {why}")
        for item in doomed:
            exclusions.add(name, item, why)
        banned.setdefault(name, set()).update(doomed)
    return (
        None,
        {"summary": "no combination passed the failure rules after 12 attempts"},
        derivation,
        frozenset(),
    )


def _drop_optional(causes: Iterable[Any], optional: list[str]) -> str | None:
    names = {c.requirement.name for c in causes}
    for name in optional:
        if name in names:
            return name
    return None


def _cause_text(causes: Iterable[Any], exclusions: Exclusions, name: str) -> str:
    reasons = exclusions.reasons(name, limit=2)
    if reasons:
        return "; ".join(f"{r['reason']} ({', '.join(r['versions'])})" for r in reasons)
    return "no release fits the other pins"


def _conflict(causes: Iterable[Any], exclusions: Exclusions, roots: list[Req]) -> dict[str, Any]:
    items = []
    for cause in causes:
        req = cause.requirement
        parent = cause.parent
        items.append(
            {
                "requirement": str(req),
                "required_by": parent.label if parent is not None else "the request",
                "reason": req.reason,
                "excluded": exclusions.reasons(req.name),
            }
        )
    names = sorted({c.requirement.name for c in causes})
    return {
        "summary": f"no version of {', '.join(names)} satisfies every constraint",
        "packages": names,
        "causes": items,
    }


def plan_facts(
    pins: Mapping[str, Candidate], machine: Machine, run_facts: Mapping[str, Any]
) -> dict[str, Any]:
    facts = {**machine.facts, **run_facts}
    for cand in pins.values():
        facts.update(candidate_facts(cand))
    facts["_packages_complete"] = True
    return facts


def failure_rules(kb: Knowledge, stage: str) -> list[Rule]:
    """The rules a plan must not trip: those that reject setups, for this stage."""
    return [r for r in kb.rules if r.rejects_setups and stage in r.stages]


def _post_check(
    pins: Mapping[str, Candidate],
    machines: Sequence[Machine],
    run_facts: Mapping[str, Any],
    kb: Knowledge,
    request: PlanRequest,
) -> tuple[str, str, str, str | None] | None:
    """A rule that fires on the whole plan (several packages together), or an sdist that would
    be compiled with a toolkit whose CUDA major differs from torch's."""
    kept = {canonicalize_name(k.partition("==")[0]) for k in request.keep}
    torch = pins.get("torch")
    for machine in machines:
        facts = plan_facts(pins, machine, run_facts)
        for rule in failure_rules(kb, request.stage):
            assert rule.when is not None
            if rule.when.evaluate(facts) is not Truth.TRUE:
                continue
            involved = [
                f[4:]
                for f in rule.when.facts()
                if f.startswith("pkg.") and f[4:] in pins and f[4:] not in kept
            ]
            if involved:
                # change the package the fewest others depend on: not the engine, not torch
                name = sorted(involved, key=lambda n: (n in ENGINE_ORDER, n == "torch", n))[0]
                return pins[name].label, name, f"{rule.title} [{rule.id}]", rule.id
        if torch is not None and torch.variant and machine.toolkit is not None:
            cuda = variant_cuda(torch.variant)
            for cand in pins.values():
                if cand.from_source and cuda and str(machine.toolkit.major) != cuda.split(".")[0]:
                    return (
                        cand.label,
                        cand.name,
                        f"compiled from source with nvcc {machine.toolkit}, "
                        f"but torch is built for CUDA {cuda}: the extension would not load",
                        None,
                    )
    return None


# ---------------------------------------------------------------- settings


def choose_settings(
    request: PlanRequest,
    engine: str,
    machines: Sequence[Machine],
    pins: Mapping[str, Candidate],
    kb: Knowledge,
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any] | None]:
    """dtype, attention, parallel size, context and env; or a memory/parallelism conflict."""
    card = request.model
    reasons: dict[str, str] = {}
    all_bf16 = all(m.ccs and min(m.ccs) >= Version("8.0") for m in machines)
    min_cc = min((min(m.ccs) for m in machines if m.ccs), default=None)
    if request.dtype and request.dtype != "auto":
        dtype = request.dtype
        if dtype == "bfloat16" and not all_bf16:
            return (
                {},
                {},
                {
                    "summary": f"bfloat16 needs compute capability >= 8.0; this machine has {min_cc}",
                    "facts": {"gpu.cc": str(min_cc), "run.dtype": dtype},
                },
            )
        reasons["dtype"] = "requested"
    elif not any(m.ccs for m in machines):
        dtype = "float32"
        reasons["dtype"] = "no GPU: CPU inference runs in float32"
    elif card.torch_dtype == "bfloat16" and all_bf16:
        dtype = "bfloat16"
        reasons["dtype"] = "trained in bfloat16, and every GPU has native bfloat16 (sm_80+)"
    elif card.torch_dtype == "bfloat16":
        dtype = "float16"
        reasons["dtype"] = (
            f"compute capability {min_cc} has no bfloat16: float16 instead; models trained in "
            "bfloat16 can overflow in float16 (NaN or '!!!!' output) - if so, use float32"
        )
    elif card.torch_dtype:
        dtype = card.torch_dtype
        reasons["dtype"] = f"the checkpoint's dtype ({dtype})"
    elif all_bf16:
        dtype = "auto"
        reasons["dtype"] = "the catalog does not know the checkpoint's dtype: auto takes config.json's"
    else:
        dtype = "float16"
        reasons["dtype"] = (
            f"compute capability {min_cc} has no bfloat16, and the checkpoint's dtype is not "
            "in the catalog: float16"
        )

    quant = request.quantization if request.quantization not in (None, "none") else None
    if quant is None and request.stage == "fine-tuning" and request.method == "qlora":
        quant = "bnb-4bit"  # QLoRA keeps the frozen base weights in 4-bit
    gpu_counts = [int(m.facts.get("gpu.count") or 0) for m in machines]
    vrams = [float(m.facts.get("gpu.vram_gib") or 0) for m in machines]
    count, vram = min(gpu_counts), min(vrams)
    settings: dict[str, Any] = {
        "dtype": dtype,
        "attention_backend": None,
        "tensor_parallel_size": 1,
        "max_model_len": None,
        "quantization": quant,
        "env": {},
    }
    if card.params_b is None or count == 0 or vram == 0:
        reasons["tensor_parallel_size"] = "memory not estimated (model size or GPU memory unknown)"
    elif request.stage == "fine-tuning":
        problem = _fit_training(
            card, request, dtype, quant, count, vram, "deepspeed" in pins, settings, reasons
        )
        if problem is not None:
            return {}, {}, problem
    else:
        fit = _fit(card, dtype, quant, count, vram, request.context)
        published = [(q, m) for q in card.quantized if (m := quantization_of(q))]
        if fit is None and quant is None and published:
            variant, quant = min(published, key=lambda qm: QUANT_PREFERENCE.index(qm[1]))
            fit = _fit(card, dtype, quant, count, vram, request.context)
            if fit is not None:
                settings["quantization"] = quant
                reasons["quantization"] = (
                    f"{card.params_b:g}B weights in {dtype} do not fit {count} x {vram:g} GiB; "
                    f"the published {variant} does"
                )
                settings["model_repo"] = variant
        if fit is None:
            need = weights_gib(card.params_b, quant or dtype)
            return (
                {},
                {},
                {
                    "summary": (
                        f"{card.id} needs about {need:g} GiB for weights alone "
                        f"({card.params_b:g}B x {'0.5' if quant else '2'} bytes + 10%), more than "
                        f"{count} x {vram:g} GiB at {GPU_MEMORY_UTILIZATION:.0%} utilisation "
                        "with room for a minimal KV cache"
                    ),
                    "facts": {"model.params_b": card.params_b, "gpu.count": count, "gpu.vram_gib": vram},
                    "needs_vram_gib": round(need / GPU_MEMORY_UTILIZATION + RUNTIME_OVERHEAD_GIB, 1),
                },
            )
        tp, max_len, weights, kv_per_token = fit
        settings["tensor_parallel_size"] = tp
        settings["max_model_len"] = max_len
        reasons["tensor_parallel_size"] = (
            f"weights ~{weights:g} GiB ({card.params_b:g}B params, "
            f"{quant or dtype}); smallest TP that fits and divides the "
            f"{card.attention_heads} attention heads"
        )
        reasons["max_model_len"] = (
            f"KV cache ~{kv_per_token / 1024:.0f} KiB/token; {tp} x {vram:g} GiB x "
            f"{GPU_MEMORY_UTILIZATION} - weights - {RUNTIME_OVERHEAD_GIB} GiB/GPU "
            f"overhead leaves room for {max_len} tokens (capped at the model's "
            f"{card.context_length})"
        )
    if settings["quantization"] and settings["dtype"] == "bfloat16":
        _quantized_dtype(settings, reasons, engine, machines, pins, request, kb)
    settings["attention_backend"], reasons["attention_backend"] = _attention(engine, pins, min_cc)
    env, env_reasons = _env_from_rules(machines, pins, settings, request, kb)
    settings["env"] = env
    reasons.update(env_reasons)
    return settings, reasons, None


QUANT_PREFERENCE = ("awq", "gptq", "fp8")


def _quantized_dtype(
    settings: dict[str, Any],
    reasons: dict[str, str],
    engine: str,
    machines: Sequence[Machine],
    pins: Mapping[str, Candidate],
    request: PlanRequest,
    kb: Knowledge,
) -> None:
    """Some engines' kernels for a quantization compute in float16 only (vLLM's awq and gptq):
    when a failure rule rejects bfloat16 with this quantization and accepts float16, use float16."""

    def blocking(dtype: str) -> str | None:
        run = {
            "run.stage": request.stage,
            "run.engine": engine,
            "run.dtype": dtype,
            "run.quantization": settings["quantization"],
        }
        for machine in machines:
            facts = plan_facts(pins, machine, run)
            for rule in failure_rules(kb, request.stage):
                assert rule.when is not None
                if "run.dtype" in rule.when.facts() and rule.when.evaluate(facts) is Truth.TRUE:
                    return rule.id
        return None

    rule_id = blocking("bfloat16")
    if rule_id is not None and blocking("float16") is None:
        settings["dtype"] = "float16"
        reasons["dtype"] = (
            f"{engine}'s {settings['quantization']} kernels compute in float16 only ({rule_id}): "
            "float16 instead of the checkpoint's bfloat16"
        )


def _fit_training(
    card: ModelCard,
    request: PlanRequest,
    dtype: str,
    quant: str | None,
    count: int,
    vram: float,
    sharded: bool,
    settings: dict[str, Any],
    reasons: dict[str, str],
) -> dict[str, Any] | None:
    """Memory for fine-tuning: the model states (all of them for full fine-tuning; the frozen
    weights for LoRA/QLoRA) over the GPUs that hold them (all, when DeepSpeed ZeRO-3 shards)."""
    assert card.params_b is not None
    if request.method == "full":
        states = round(card.params_b * 1e9 * FULL_FINETUNE_BYTES_PER_PARAM * 1.1 / GIB, 1)
        what = f"{FULL_FINETUNE_BYTES_PER_PARAM} bytes/param for weights, gradients and Adam states"
    else:
        states = weights_gib(card.params_b, quant or (dtype if dtype != "auto" else "bfloat16"))
        what = f"frozen {quant or dtype} weights; LoRA adapters and their optimizer states are small"
    holders = count if sharded and count > 1 else 1
    usable = holders * (vram * GPU_MEMORY_UTILIZATION - RUNTIME_OVERHEAD_GIB)
    if states > usable:
        need = round(states / holders / GPU_MEMORY_UTILIZATION + RUNTIME_OVERHEAD_GIB, 1)
        return {
            "summary": (
                f"{request.method or 'lora'} fine-tuning of {card.id} needs about {states:g} GiB "
                f"({what}), more than {holders} x {vram:g} GiB can hold before activations"
            ),
            "facts": {
                "model.params_b": card.params_b,
                "gpu.count": count,
                "gpu.vram_gib": vram,
                "run.method": request.method or "lora",
            },
            "needs_vram_gib": need,
        }
    settings["tensor_parallel_size"] = 1
    settings["max_model_len"] = request.context
    settings["processes"] = count
    reasons["tensor_parallel_size"] = (
        f"training runs {count} data-parallel process(es), no tensor parallelism; "
        f"model states ~{states:g} GiB ({what})"
        + (f", sharded over {holders} GPUs by DeepSpeed ZeRO-3" if holders > 1 else "")
        + f"; what is left of {vram:g} GiB per GPU holds the activations (batch size x sequence length)"
    )
    reasons["max_model_len"] = (
        "the training sequence length: give --context" if not request.context else "requested"
    )
    return None


def quantization_of(repo: str) -> str | None:
    """The quantization method a published checkpoint's name states (None when not one we plan)."""
    name = repo.upper()
    for marker, method in (("AWQ", "awq"), ("GPTQ", "gptq"), ("FP8", "fp8")):
        if marker in name:
            return method
    return None


def _fit(
    card: ModelCard, dtype: str, quant: str | None, count: int, vram: float, context: int | None
) -> tuple[int, int, float, int] | None:
    assert card.params_b is not None
    weights = weights_gib(card.params_b, quant or (dtype if dtype != "auto" else "bfloat16"))
    heads = card.attention_heads
    kv_heads = card.kv_heads or heads
    head_dim = card.head_dim or (card.hidden_size // heads if card.hidden_size and heads else None)
    per_token = 2 * (card.layers or 0) * (kv_heads or 0) * (head_dim or 0) * (4 if dtype == "float32" else 2)
    tp = 1
    while tp <= count:
        if heads is None or heads % tp == 0:
            free = tp * (vram * GPU_MEMORY_UTILIZATION - RUNTIME_OVERHEAD_GIB) - weights
            if free > 0:
                if per_token:
                    tokens = int(free * GIB // per_token)
                    limit = card.context_length or tokens
                    max_len = min(tokens, limit, context or limit)
                    if max_len >= min(MIN_CONTEXT, context or MIN_CONTEXT) and (
                        context is None or tokens >= context
                    ):
                        return tp, max_len, weights, per_token
                else:
                    return tp, min(card.context_length or MIN_CONTEXT, context or MIN_CONTEXT), weights, 0
        tp *= 2
    return None


def _attention(engine: str, pins: Mapping[str, Candidate], min_cc: Version | None) -> tuple[str, str]:
    if min_cc is None:
        return "sdpa", "no GPU: PyTorch SDPA on the CPU"
    if engine == "vllm":
        if min_cc >= Version("8.0"):
            return (
                "FLASH_ATTN",
                f"sm_{str(min_cc).replace('.', '')} supports FlashAttention-2 (vLLM's default there)",
            )
        return "XFORMERS", f"sm_{str(min_cc).replace('.', '')} is below FlashAttention-2's sm_80: xFormers"
    if engine == "sglang":
        return "flashinfer", "SGLang's default backend"
    if "flash-attn" in pins:
        return "flash_attention_2", f"flash-attn {pins['flash-attn'].version} planned; sm_80+ GPU"
    if min_cc < Version("8.0"):
        return "sdpa", f"sm_{str(min_cc).replace('.', '')} is below FlashAttention-2's sm_80: PyTorch SDPA"
    return "sdpa", "flash-attn not planned (no CUDA toolkit to build it, or no fitting release): PyTorch SDPA"


def _env_from_rules(
    machines: Sequence[Machine],
    pins: Mapping[str, Candidate],
    settings: Mapping[str, Any],
    request: PlanRequest,
    kb: Knowledge,
) -> tuple[dict[str, str], dict[str, str]]:
    """Environment variables that known failures call for: a rule that fires on the plan and is
    silenced by setting `env.X` (its `not` table) yields X=value."""
    env: dict[str, str] = {}
    reasons: dict[str, str] = {}
    run = {
        "run.tp": settings["tensor_parallel_size"],
        "run.dtype": settings["dtype"],
        "run.stage": request.stage,
        "_env_complete": True,
    }
    for machine in machines:
        facts = plan_facts(pins, machine, {**model_facts(request.model), **run})
        for rule in kb.rules:
            if rule.when is None or rule.when.none_of is None or rule.when.evaluate(facts) is not Truth.TRUE:
                continue
            for test in rule.when.none_of.tests:
                if test.fact.startswith("env.") and test.equals:
                    name = test.fact[4:]
                    env[name] = str(test.equals[0])
                    reasons[f"env.{name}"] = f"{rule.title} [{rule.id}]"
    return env, reasons


# ---------------------------------------------------------------- command


def launch_command(request: PlanRequest, engine: str, settings: Mapping[str, Any]) -> str:
    repo = settings.get("model_repo") or request.model.hf_repo
    tp = settings["tensor_parallel_size"]
    dtype = {"float16": "half"}.get(settings["dtype"], settings["dtype"])
    env = " ".join(f"{k}={v}" for k, v in sorted(settings["env"].items()))
    prefix = f"{env} " if env else ""
    quant = settings.get("quantization")
    if request.stage == "fine-tuning":
        flags = ["--model_name_or_path", repo, "--dataset_name", "DATASET", "--output_dir", "out"]
        if request.method in ("lora", "qlora", None):
            flags += ["--use_peft", "--lora_r", "16", "--lora_alpha", "32"]
        if request.method == "qlora":
            flags += ["--load_in_4bit"]
        flags += (
            ["--bf16"]
            if settings["dtype"] == "bfloat16"
            else ["--fp16"]
            if settings["dtype"] == "float16"
            else []
        )
        if settings["attention_backend"] == "flash_attention_2":
            flags += ["--attn_implementation", "flash_attention_2"]
        processes = int(settings.get("processes") or 1)
        launcher = (
            f"accelerate launch --num_processes {processes} -m trl.scripts.sft"
            if processes > 1
            else "trl sft"
        )
        return prefix + launcher + " " + " ".join(flags)
    if engine == "vllm":
        cmd = (
            f"python -m vllm.entrypoints.openai.api_server --model {repo} --dtype {dtype} "
            f"--tensor-parallel-size {tp}"
        )
        if settings.get("max_model_len"):
            cmd += f" --max-model-len {settings['max_model_len']}"
        if quant:
            cmd += f" --quantization {quant}"
        return prefix + cmd
    if engine == "sglang":
        cmd = f"python -m sglang.launch_server --model-path {repo} --dtype {dtype} --tp {tp}"
        if settings.get("max_model_len"):
            cmd += f" --context-length {settings['max_model_len']}"
        return prefix + cmd
    attn = settings["attention_backend"]
    torch_dtype = "'auto'" if settings["dtype"] == "auto" else f"torch.{settings['dtype']}"
    return (
        prefix + 'python -c "import torch; from transformers import pipeline; '
        f"p = pipeline('text-generation', model='{repo}', torch_dtype={torch_dtype}, "
        f"device_map='auto', model_kwargs={{'attn_implementation': '{attn}'}}); "
        "print(p('Hello', max_new_tokens=32)[0]['generated_text'])\""
    )


# ---------------------------------------------------------------- entry point


def make_plan(
    request: PlanRequest,
    envs: Sequence[Environment],
    kb: Knowledge,
    snapshot: Snapshot,
    *,
    try_alternatives: bool = True,
) -> Plan:
    machines = [
        machine_of(env, kb, request.python, f"machine {i + 1}" if len(envs) > 1 else "this machine")
        for i, env in enumerate(envs)
    ]
    for spec in request.keep:
        name, sep, version = spec.partition("==")
        if not sep or not name or parse_version(version) is None:
            raise InputError(f"--keep {spec!r}: expected NAME==VERSION")
    engines = [request.engine] if request.engine else _default_engines(request, machines)
    plan = Plan(feasible=False, snapshot_date=snapshot.date)
    plan.machines = [
        {
            "label": m.label,
            "python": str(m.python),
            "os": m.os_name,
            "arch": m.arch,
            "glibc": str(m.glibc) if m.glibc else None,
            "gpus": [str(c) for c in m.ccs],
            "driver_cuda": str(m.driver_cuda) if m.driver_cuda else None,
            "toolkit": str(m.toolkit) if m.toolkit else None,
        }
        for m in machines
    ]
    first_conflict: dict[str, Any] | None = None
    for engine in engines:
        run_facts = {
            **model_facts(request.model),
            "run.stage": request.stage,
            "run.engine": engine if request.stage == "inference" else "transformers",
        }
        if request.method:
            run_facts["run.method"] = request.method
        if request.quantization and request.quantization != "none":
            run_facts["run.quantization"] = request.quantization
        pins, conflict, derivation, unplanned = resolve_stack(
            request, engine, machines, kb, snapshot, run_facts
        )
        plan.derivation += [f"[{engine}] {line}" for line in derivation]
        if pins is None:
            first_conflict = first_conflict or {"engine": engine, **(conflict or {})}
            plan.derivation.append(f"[{engine}] no solution: {(conflict or {}).get('summary')}")
            continue
        settings, reasons, problem = choose_settings(request, engine, machines, pins, kb)
        if problem is not None:
            first_conflict = first_conflict or {"engine": engine, **problem}
            plan.derivation.append(f"[{engine}] settings: {problem['summary']}")
            continue
        plan.feasible = True
        pins = with_torch_companions(pins)
        plan.pins = sorted(pins.values(), key=lambda c: c.name)
        plan.unplanned = sorted(unplanned - set(pins))
        plan.packages = [_package_entry(c, pins, machines, kb, request, engine) for c in plan.pins]
        plan.settings = {k: v for k, v in settings.items() if k not in ("model_repo", "processes")}
        if settings.get("model_repo"):
            plan.settings["model"] = settings["model_repo"]
        plan.setting_reasons = reasons
        plan.command = launch_command(request, engine, settings)
        if engine != engines[0]:
            plan.notes.append(
                f"{engines[0]} has no solution here ({(first_conflict or {}).get('summary')}); "
                f"planned with {engine}"
            )
        plan.conflict = None
        return plan
    plan.conflict = first_conflict
    if try_alternatives:
        plan.alternatives = alternatives(request, envs, kb, snapshot, machines, first_conflict or {})
    return plan


TORCH_COMPANIONS = ("torchvision", "torchaudio")
# The packages an alternative's one-line summary names.
SUMMARY_PACKAGES = frozenset(
    {"vllm", "sglang", "torch", "transformers", "peft", "bitsandbytes", "flash-attn"}
)


def with_torch_companions(pins: Mapping[str, Candidate]) -> dict[str, Candidate]:
    """torchvision/torchaudio carry CUDA kernels too: they come from torch's index, as the same
    CUDA build (`0.19.0+cu118` beside `torch 2.4.0+cu118`), never PyPI's build for another CUDA."""
    out = dict(pins)
    torch = pins.get("torch")
    if torch is None or torch.index_url == PYPI_INDEX or not torch.variant:
        return out
    for name in TORCH_COMPANIONS:
        if name in out:
            out[name] = replace(out[name], variant=torch.variant, index_url=torch.index_url, wheel_names=())
    return out


def _default_engines(request: PlanRequest, machines: Sequence[Machine]) -> list[str]:
    if request.stage == "fine-tuning":
        return ["transformers"]
    if not all(m.ccs for m in machines) or any(m.os_name not in ("linux", "wsl") for m in machines):
        return ["transformers"]
    return list(ENGINE_ORDER)


def _package_entry(
    cand: Candidate,
    pins: Mapping[str, Candidate],
    machines: Sequence[Machine],
    kb: Knowledge,
    request: PlanRequest,
    engine: str,
) -> dict[str, Any]:
    reasons = []
    for other in pins.values():
        for line in (other.release.requires_dist or ()) if other.release else ():
            if requirement_name(line) != cand.name or "=" not in line:
                continue
            parsed = requirement_parts(line)
            if parsed is None or "==" not in str(parsed[1]):
                continue
            if mentions(parsed[2], "extra") and other.name not in PLANNED_EXTRAS:
                continue
            reasons.append(f"{other.label} pins {cand.name}{parsed[1]}")
    if cand.name == "torch" and cand.variant:
        cuda = variant_cuda(cand.variant)
        drivers = [m.driver_cuda for m in machines if m.driver_cuda]
        if not any(m.ccs for m in machines):
            reasons.append(
                f"no GPU: the {cand.variant} build runs on the CPU"
                + ("" if cand.variant == "cpu" else "; a cpu build is smaller where one is published")
            )
        elif cuda and drivers:
            reasons.append(f"driver supports CUDA <= {min(drivers)} -> {cand.variant} build")
        elif cuda:
            release = kb.cuda_release(cuda)
            floor = release.min_driver_linux if release else None
            reasons.append(
                f"{cand.variant} build; driver unknown: needs a driver for CUDA {cuda}"
                + (
                    f" (>= {floor}, or >= the {cuda.split('.')[0]}.x minor-compatibility floor)"
                    if floor
                    else ""
                )
            )
        if cand.index_url != PYPI_INDEX:
            reasons.append(
                f"this build is on the PyTorch index ({cand.index_url}); its hashes are not in the snapshot"
            )
    if cand.name in TORCH_COMPANIONS and cand.variant:
        reasons.append(f"the {cand.variant} build from torch's index, matching torch's CUDA")
    if cand.name == request.engine or cand.name == engine:
        reasons.append(f"engine: {engine}")
    if cand.name == "transformers" and request.model.min_transformers:
        reasons.append(f"{request.model.id} needs transformers >= {request.model.min_transformers}")
    if cand.from_source:
        reasons.append("sdist only: built from source with the CUDA toolkit")
    if not reasons:
        reasons.append(
            f"newest {'stable ' if request.prefer == 'stable' else ''}release that fits every constraint"
        )
    return {
        "name": cand.name,
        "version": str(cand.version),
        "variant": cand.variant,
        "index_url": cand.index_url,
        "reason": "; ".join(dict.fromkeys(reasons)),
    }


def alternatives(
    request: PlanRequest,
    envs: Sequence[Environment],
    kb: Knowledge,
    snapshot: Snapshot,
    machines: Sequence[Machine],
    conflict: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The nearest feasible changes: another engine, a quantization or dtype, a newer driver, a GPU."""
    out: list[dict[str, Any]] = []

    def attempt(change: str, new_request: PlanRequest, new_envs: Sequence[Environment] = envs) -> None:
        try:
            alt = make_plan(new_request, new_envs, kb, snapshot, try_alternatives=False)
        except InputError:
            return
        if alt.feasible:
            top = ", ".join(
                f"{p['name']} {p['version']}" + (f"+{p['variant']}" if p["variant"] else "")
                for p in alt.packages
                if p["name"] in SUMMARY_PACKAGES
            )
            if alt.settings.get("quantization"):
                top += f"; {alt.settings['quantization']}"
            out.append({"change": change, "feasible": True, "summary": top, "command": alt.command})

    if request.stage == "inference":
        for engine in ENGINE_ORDER:
            if engine != request.engine and request.engine is not None:
                attempt(f"use --engine {engine}", replace(request, engine=engine))
    if request.stage == "fine-tuning" and request.method in (None, "full", "lora"):
        for method in ("lora", "qlora"):
            if method != request.method:
                attempt(f"use --method {method}", replace(request, method=method))
    if request.quantization in (None, "none") and request.model.quantized:
        attempt("use a published 4-bit (AWQ) checkpoint", replace(request, quantization="awq"))
    if request.dtype == "bfloat16":
        attempt("use --dtype float16", replace(request, dtype="float16"))
    if request.keep:
        attempt("drop --keep pins", replace(request, keep=()))
    if any(m.driver_cuda is not None for m in machines):
        for release in sorted(kb.cuda, key=lambda c: parse_version(c.version) or Version("0"), reverse=True)[
            :6
        ]:
            if not release.min_driver_linux:
                continue
            newer = [
                replace(env, driver_version=release.min_driver_linux, driver_cuda=release.version)
                for env in envs
            ]
            before = len(out)
            attempt(
                f"upgrade the NVIDIA driver to >= {release.min_driver_linux} (CUDA {release.version})",
                request,
                newer,
            )
            if len(out) > before:
                break
    needs = conflict.get("needs_vram_gib")
    if needs:
        have = max((max(m.ccs) for m in machines if m.ccs), default=Version("8.0"))
        floor = max(have, Version("8.0"))
        gpu = min(
            (
                g
                for g in kb.gpus
                if g.memory_gib
                and g.memory_gib >= needs
                and g.segment == "datacenter"
                and (parse_version(g.cc) or Version("0")) >= floor
            ),
            key=lambda g: (g.memory_gib, parse_version(g.cc) or Version("0")),
            default=None,
        )
        if gpu is not None:
            out.append(
                {
                    "change": f"a GPU with >= {needs:g} GiB, e.g. {gpu.name} ({gpu.memory_gib:g} GB)",
                    "feasible": None,
                    "summary": "not resolved: hardware change",
                }
            )
    return out[:6]
