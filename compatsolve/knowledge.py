"""Load `knowledge/` into typed, frozen records, validated and indexed.

The TOML files are the reviewable source of truth. Parsing and validating them all takes tens of
milliseconds, so the loaded Knowledge is cached as a pickle in the user cache directory, keyed by
the files' sizes and modification times: a warm start reads one file.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from compatsolve.errors import KnowledgeError
from compatsolve.fileio import cache_key, replace_cache_pickle
from compatsolve.names import canonicalize_name
from compatsolve.records import field, record, replace
from compatsolve.rules import Condition, parse_condition
from compatsolve.schema import Table, tables

KINDS = frozenset(
    {
        "driver-cuda-mismatch",
        "torch-cuda-build-mismatch",
        "gpu-arch-unsupported",
        "dtype-unsupported-on-gpu",
        "quantization-unsupported",
        "package-pin-conflict",
        "abi-mismatch-binary-extension",
        "model-needs-newer-library",
        "api-removed-in-newer-library",
        "tokenizer-or-chat-template",
        "memory-insufficient",
        "parallelism-mismatch",
        "multi-gpu-communication",
        "missing-system-library",
        "build-from-source-failure",
        "config-error",
    }
)
SEVERITIES = frozenset({"error", "warning", "info"})
STAGES = frozenset({"inference", "fine-tuning"})
TIERS = frozenset({"metadata", "reported", "maintainer-confirmed", "reproduced"})
SPECIAL_COMPONENTS = frozenset(
    {"driver", "gpu", "cuda-toolkit", "python", "glibc", "os", "model", "container-image"}
)
# A component is a normalized PyPI name or one of SPECIAL_COMPONENTS (shared/taxonomy.md).
TAXONOMY_COMPONENTS_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ARCHITECTURES = frozenset(
    {"kepler", "maxwell", "pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell"}
)
SEGMENTS = frozenset({"datacenter", "workstation", "consumer"})
AMD_ARCHITECTURES = frozenset(
    {"gcn4", "gcn5", "rdna1", "rdna2", "rdna3", "rdna3.5", "rdna4", "cdna1", "cdna2", "cdna3", "cdna4"}
)
AMD_SEGMENTS = SEGMENTS | {"integrated"}
OS_NAMES = frozenset({"linux", "windows", "wsl", "macos"})
_AMD_BRAND_WORDS = frozenset({"amd", "radeon", "instinct"})
# whose gfx support lists knowledge/amd.toml holds: each gives the derived fact gpu.<subject>_supported
GFX_SUPPORT_SUBJECTS = frozenset({"rocm", "ollama"})
SCHEMA_VERSION = 1


def knowledge_dir() -> Path:
    """The shipped copy inside an installed wheel, else the repository's `knowledge/`."""
    override = os.environ.get("COMPATSOLVE_KNOWLEDGE")
    if override:
        return Path(override)
    packaged = Path(__file__).resolve().parent / "_knowledge"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "knowledge"


def alias_key(name: str) -> str:
    """Spelling-insensitive key: `NVIDIA GeForce RTX 4090` and `rtx-4090` both -> `rtx4090`."""
    key = re.sub(r"[^a-z0-9.]", "", name.lower().replace("_", ""))
    for prefix in ("nvidia", "geforce", "tesla"):
        key = key.removeprefix(prefix)
    return key.replace(".", "")


@record(kw_only=True)
class GpuModel:
    id: str
    name: str
    names: tuple[str, ...]
    aliases: tuple[str, ...]
    segment: str
    architecture: str
    cc: str
    memory_gib: float | None
    bf16: bool | None
    fp8: bool | None
    fp4: bool | None
    p2p: str | None
    p2p_note: str | None
    sources: tuple[str, ...]


@record(kw_only=True)
class AmdGpu:
    """An AMD GPU. ROCm and the tools bundling it build kernels per LLVM gfx target, so the target
    (not a compute capability) decides which binaries run on it."""

    id: str
    name: str
    aliases: tuple[str, ...]
    gfx: str  # LLVM processor, "gfx1032"
    architecture: str  # AMD_ARCHITECTURES
    segment: str
    memory_gib: float | None
    sources: tuple[str, ...]


@record(kw_only=True)
class GfxSupport:
    """The gfx targets a ROCm release, or a tool's documentation, lists as supported on one OS."""

    subject: str  # "rocm", or the tool ("ollama")
    version: str | None  # the ROCm release, where the source names it
    as_of: str | None  # YYYY-MM-DD of a tool's documentation at the cited commit
    os: str
    gfx: tuple[str, ...]
    note: str | None
    sources: tuple[str, ...]


@record(kw_only=True)
class CudaRelease:
    version: str
    updates: tuple[str, ...]
    min_driver_linux: str | None
    min_driver_windows: str | None
    minor_compat_driver_linux: str | None
    minor_compat_driver_windows: str | None
    sm_added: tuple[str, ...]
    sm_removed: tuple[str, ...]
    sources: tuple[str, ...]


@record(kw_only=True)
class DriverBranch:
    branch: str
    max_cuda: str
    sources: tuple[str, ...]


@record(kw_only=True)
class TorchRelease:
    version: str
    released: str | None
    python: str | None
    pypi_variant: str | None
    variants: tuple[str, ...]
    glibc: str | None
    torchvision: str | None
    torchaudio: str | None
    triton: str | None
    arch: Mapping[str, tuple[str, ...]]
    arch_note: str | None
    tier: str  # metadata, or reproduced when checked on real hardware
    sources: tuple[str, ...]


@record(kw_only=True)
class Extension:
    package: str
    versions: str
    shipping: str | None
    torch_binding: str | None
    cuda: tuple[str, ...]
    cc_min: str | None
    cc: tuple[str, ...]
    needs_toolkit_to_build: bool | None
    note: str | None
    sources: tuple[str, ...]


@record(kw_only=True)
class Pin:
    package: str
    version: str
    requires: Mapping[str, str]
    sources: tuple[str, ...]


@record(kw_only=True)
class ModelCard:
    id: str
    hf_repo: str
    aliases: tuple[str, ...]
    series: str
    family: str | None
    variant: str | None
    architecture: str | None
    model_type: str | None
    params_b: float | None
    active_params_b: float | None
    moe: bool | None
    vision: bool | None
    layers: int | None
    attention_heads: int | None
    kv_heads: int | None
    hidden_size: int | None
    head_dim: int | None
    vocab_size: int | None
    context_length: int | None
    torch_dtype: str | None
    rope_scaling: str | None
    trust_remote_code: bool | None
    min_transformers: str | None
    min_vllm: str | None
    min_sglang: str | None
    quantized: tuple[str, ...]
    notes: str | None
    sources: tuple[str, ...]


# A signature's named groups whose names start with this catch the name of an implicated package
# ("(?P<component>\S+) \S+ requires (?P<component2>[\w.-]+)..."): diagnose adds it to the finding.
COMPONENT_GROUP = "component"


def captured_components(match: re.Match[str]) -> list[str]:
    """The packages a pattern's `component...` groups caught ("vllm 0.8.1 requires torch==..."
    implicates vllm and torch), as PEP 503 names, in the order the groups are written."""
    return [
        canonicalize_name(value)
        for name, value in match.groupdict().items()
        if name.startswith(COMPONENT_GROUP) and value
    ]


@record(kw_only=True)
class Rule:
    id: str
    title: str
    kind: str
    severity: str
    stages: tuple[str, ...]
    components: tuple[str, ...]
    signatures: tuple[str, ...]
    explanation: str
    fix: str
    evidence: tuple[str, ...]
    tier: str
    when: Condition | None
    file: str
    # A symptom rule names the cause of a failure that facts alone cannot show (a server that
    # never stops generating, a hang): its `when` only confirms or rules it out for a given
    # error, and it never fires in an audit without one.
    symptom: bool = False
    # A general rule names the mechanism behind a message that several specific rules share
    # ("no kernel image is available"): it ranks after any specific rule the facts leave possible.
    general: bool = False

    @property
    def rejects_setups(self) -> bool:
        """A setup its condition holds for cannot work: error severity, a condition, and not a
        symptom. The rules a plan must not trip and the candidates the resolver excludes."""
        return self.when is not None and self.severity == "error" and not self.symptom

    @property
    def compiled_signatures(self) -> tuple[re.Pattern[str], ...]:
        return _compile_signatures(self.signatures)


@cache
def _compile_signatures(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


@record(kw_only=True)
class Reading:
    """Another kind of failure the same message reads as, offered beside its family: an API that
    one release lacks is either removed by a newer release of the package or not yet in the older
    one installed, and the two need opposite fixes."""

    id: str  # family-..., the finding's rule
    kind: str
    cues: tuple[str, ...]  # the message carries one of these, or
    when: Condition | None  # the facts hold this (neither given: always offered)
    # ranked above its family when the package the message is about was released well before
    # the packages declared beside it (the code calling it is newer than it)
    first_if_subject_older: bool
    title: str
    explanation: str
    fix: str
    evidence: tuple[str, ...]

    @property
    def compiled_cues(self) -> tuple[re.Pattern[str], ...]:
        return _compile_signatures(self.cues)


@record(kw_only=True)
class Family:
    """A failure family: the cues that mark a message as belonging to one kind of failure when no
    rule knows the message. It names the kind and the generic way out, never a specific cause."""

    id: str
    kind: str
    components: tuple[str, ...]  # implicated by the family's definition (shared/taxonomy.md)
    strong: tuple[str, ...]  # one of these is enough
    weak: tuple[str, ...]  # two of these are
    unless: tuple[str, ...]  # the message's own tell of another cause (a circular import)
    # facts that make the kind likelier (a CPU-only torch, several GPUs): points added to a
    # message that carries at least one cue of the family, never a finding from facts alone
    boosts: tuple[tuple[int, Condition], ...]
    # patterns whose `component...` groups catch the package the message is about ("cannot
    # import name 'x' from 'peft'"): implicated first, and the subject of a reading's direction
    subjects: tuple[str, ...] = ()
    readings: tuple[Reading, ...] = ()
    # components the kind implicates when the facts hold ("no NCCL on Windows": the OS)
    implicates: tuple[tuple[str, Condition], ...] = ()
    # the kind is about the declared packages (their pins, their APIs): when the message names
    # no package, the few the user declared are the ones implicated
    declared_packages: bool = False
    title: str
    explanation: str
    fix: str
    evidence: tuple[str, ...]

    @property
    def compiled_subjects(self) -> tuple[re.Pattern[str], ...]:
        return _compile_signatures(self.subjects)

    @property
    def compiled_strong(self) -> tuple[re.Pattern[str], ...]:
        return _compile_signatures(self.strong)

    @property
    def compiled_weak(self) -> tuple[re.Pattern[str], ...]:
        return _compile_signatures(self.weak)

    @property
    def compiled_unless(self) -> tuple[re.Pattern[str], ...]:
        return _compile_signatures(self.unless)


@record(kw_only=True)
class Mention:
    """How a component is spelled in free text (`flash attention` for flash-attn)."""

    component: str
    spellings: tuple[str, ...]


@record(kw_only=True)
class CorpusRecord:
    link: str
    root_cause: str
    symptom: str
    stage: str
    model: str


@record(kw_only=True)
class TriageRecord:
    link: str
    reason: str
    file: str


@record(kw_only=True)
class Knowledge:
    gpus: tuple[GpuModel, ...]
    cuda: tuple[CudaRelease, ...]
    driver_branches: tuple[DriverBranch, ...]
    torch: tuple[TorchRelease, ...]
    torch_index_url: str
    extensions: tuple[Extension, ...]
    pins: tuple[Pin, ...]
    models: tuple[ModelCard, ...]
    rules: tuple[Rule, ...]
    corpus: tuple[CorpusRecord, ...]
    triage: tuple[TriageRecord, ...]
    families: tuple[Family, ...] = ()
    mentions: tuple[Mention, ...] = ()
    amd_gpus: tuple[AmdGpu, ...] = ()
    gfx_support: tuple[GfxSupport, ...] = ()
    problems: tuple[str, ...] = ()  # non-fatal problems found while loading (for kb lint)
    _gpu_index: dict[str, GpuModel] = field(default_factory=dict, repr=False)
    _amd_index: dict[str, AmdGpu] = field(default_factory=dict, repr=False)
    _model_index: dict[str, ModelCard] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for gpu in self.gpus:
            for name in (gpu.id, gpu.name, *gpu.names, *gpu.aliases):
                self._gpu_index.setdefault(alias_key(name), gpu)
        for model in self.models:
            for name in (model.id, model.hf_repo, model.hf_repo.split("/")[-1], *model.aliases):
                self._model_index.setdefault(alias_key(name), model)
        for amd in self.amd_gpus:
            for name in (amd.id, amd.name, *amd.aliases):
                self._amd_index.setdefault(alias_key(name), amd)

    def gpu(self, name: str) -> GpuModel | None:
        return self._gpu_index.get(alias_key(name))

    def amd_gpu(self, name: str) -> AmdGpu | None:
        """An AMD GPU by id, name or alias; NVIDIA's catalog is looked up first by callers, so a
        name both could mean is an NVIDIA card."""
        found = self._amd_index.get(alias_key(name))
        if found is None:  # "AMD Radeon RX Vega56", "AMD Instinct MI50": the brand words are optional
            words = name.split()
            while words and words[0].lower() in _AMD_BRAND_WORDS:
                words = words[1:]
            found = self._amd_index.get(alias_key(" ".join(words))) if words else None
        return found

    def gpu_suggestions(self, name: str) -> list[str]:
        return _suggest(
            name,
            {alias_key(g.id): g.id for g in self.gpus}
            | {alias_key(a): a for g in self.gpus for a in g.aliases},
        )

    def model(self, name: str) -> ModelCard | None:
        """By id, alias or repo id; else the one entry whose name ends with what was typed
        (`llama-3-8b-instruct` -> `meta-llama-3-8b-instruct`)."""
        key = alias_key(name)
        found = self._model_index.get(key)
        if found is not None or len(key) < 4:
            return found
        tails = {m.id: m for k, m in self._model_index.items() if k.endswith(key)}
        return next(iter(tails.values())) if len(tails) == 1 else None

    def model_suggestions(self, name: str) -> list[str]:
        return _suggest(name, {alias_key(m.id): m.id for m in self.models})

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def torch_release(self, version: str) -> TorchRelease | None:
        return next((t for t in self.torch if t.version == version), None)

    def cuda_release(self, version: str) -> CudaRelease | None:
        return next((c for c in self.cuda if c.version == version), None)


def _suggest(name: str, keys: Mapping[str, str]) -> list[str]:
    import difflib

    matches = difflib.get_close_matches(alias_key(name), list(keys), n=5, cutoff=0.6)
    partial = [k for k in keys if alias_key(name) and alias_key(name) in k][:5]
    return list(dict.fromkeys(keys[m] for m in (*matches, *partial)))[:5]


# ---------------------------------------------------------------- loading


def read_toml(path: Path, root: Path) -> tuple[str, dict[str, Any]]:
    # Imported here: with a warm cache, commands never parse TOML.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    rel = str(path.relative_to(root.parent)) if path.is_relative_to(root.parent) else str(path)
    try:
        with path.open("rb") as handle:
            return rel, tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise KnowledgeError(f"{rel}: {exc}") from None


def _sources(t: Table, key: str = "sources", required: bool = True) -> tuple[str, ...]:
    values = t.texts(key, required=required)
    if required and not values:
        raise KnowledgeError(f"{t.where}.{key}: at least one source is required")
    return values


def _gpu(t: Table) -> GpuModel:
    cc = t.req_text("cc")
    gpu = GpuModel(
        id=t.req_text("id"),
        name=t.req_text("name"),
        names=t.texts("names"),
        aliases=t.texts("aliases"),
        segment=t.req_text("segment", choices=SEGMENTS),
        architecture=t.req_text("architecture", choices=ARCHITECTURES),
        cc=cc,
        memory_gib=t.number("memory_gib"),
        bf16=t.boolean("bf16"),
        fp8=t.boolean("fp8"),
        fp4=t.boolean("fp4"),
        p2p=t.text("p2p", choices=frozenset({"nvlink", "pcie", "none"})),
        p2p_note=t.text("p2p_note"),
        sources=_sources(t),
    )
    t.done()
    return gpu


def _amd_gpu(t: Table) -> AmdGpu:
    gpu = AmdGpu(
        id=t.req_text("id"),
        name=t.req_text("name"),
        aliases=t.texts("aliases"),
        gfx=t.req_text("gfx"),
        architecture=t.req_text("architecture", choices=AMD_ARCHITECTURES),
        segment=t.req_text("segment", choices=AMD_SEGMENTS),
        memory_gib=t.number("memory_gib"),
        sources=_sources(t),
    )
    t.done()
    if not re.fullmatch(r"gfx[0-9a-f]{3,4}", gpu.gfx):
        raise KnowledgeError(f"{t.where}.gfx: {gpu.gfx!r} is not an LLVM gfx target like gfx1032")
    return gpu


def _gfx_support(t: Table) -> GfxSupport:
    support = GfxSupport(
        subject=t.req_text("subject", choices=GFX_SUPPORT_SUBJECTS),
        version=t.text("version"),
        as_of=t.text("as_of"),
        os=t.req_text("os", choices=OS_NAMES),
        gfx=t.texts("gfx", required=True),
        note=t.text("note"),
        sources=_sources(t),
    )
    t.done()
    if support.subject != "rocm" and not support.as_of:
        raise KnowledgeError(f"{t.where}.as_of: a tool's list needs the date of the documentation read")
    if support.as_of and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", support.as_of):
        raise KnowledgeError(f"{t.where}.as_of: {support.as_of!r} is not a date like 2026-08-21")
    return support


def _cuda(t: Table) -> CudaRelease:
    release = CudaRelease(
        version=t.req_text("version"),
        updates=t.texts("updates"),
        min_driver_linux=t.text("min_driver_linux"),
        min_driver_windows=t.text("min_driver_windows"),
        minor_compat_driver_linux=t.text("minor_compat_driver_linux"),
        minor_compat_driver_windows=t.text("minor_compat_driver_windows"),
        sm_added=t.texts("sm_added"),
        sm_removed=t.texts("sm_removed"),
        sources=_sources(t),
    )
    t.done()
    return release


def _branch(t: Table) -> DriverBranch:
    branch = DriverBranch(branch=t.req_text("branch"), max_cuda=t.req_text("max_cuda"), sources=_sources(t))
    t.done()
    return branch


def _torch(t: Table) -> TorchRelease:
    arch_raw = t.table("arch") or {}
    arch: dict[str, tuple[str, ...]] = {}
    for variant, ccs in arch_raw.items():
        if not isinstance(ccs, list) or not all(isinstance(c, str) for c in ccs):
            raise KnowledgeError(f"{t.where}.arch.{variant}: expected a list of X.Y")
        arch[variant] = tuple(ccs)
    release = TorchRelease(
        version=t.req_text("version"),
        released=t.text("released"),
        python=t.text("python"),
        pypi_variant=t.text("pypi_variant"),
        variants=t.texts("variants"),
        glibc=t.text("glibc"),
        torchvision=t.text("torchvision"),
        torchaudio=t.text("torchaudio"),
        triton=t.text("triton"),
        arch=arch,
        arch_note=t.text("arch_note"),
        tier=t.text("tier", choices=TIERS) or "metadata",
        sources=_sources(t),
    )
    t.done()
    return release


def _extension(t: Table) -> Extension:
    ext = Extension(
        package=t.req_text("package"),
        versions=t.req_text("versions"),
        shipping=t.text("shipping", choices=frozenset({"wheels", "sdist", "sdist-prebuilt-download"})),
        torch_binding=t.text("torch_binding", choices=frozenset({"exact-pin", "range", "none"})),
        cuda=t.texts("cuda"),
        cc_min=t.text("cc_min"),
        cc=t.texts("cc"),
        needs_toolkit_to_build=t.boolean("needs_toolkit_to_build"),
        note=t.text("note"),
        sources=_sources(t),
    )
    t.done()
    return ext


def _pin(t: Table) -> Pin:
    requires = t.table("requires") or {}
    if not all(isinstance(v, str) for v in requires.values()):
        raise KnowledgeError(f'{t.where}.requires: expected name = "specifier" entries')
    pin = Pin(
        package=t.req_text("package"),
        version=t.req_text("version"),
        requires=dict(requires),
        sources=_sources(t),
    )
    t.done()
    return pin


def _model(t: Table) -> ModelCard:
    card = ModelCard(
        id=t.req_text("id"),
        hf_repo=t.req_text("hf_repo"),
        aliases=t.texts("aliases"),
        series=t.req_text("series"),
        family=t.text("family"),
        variant=t.text("variant"),
        architecture=t.text("architecture"),
        model_type=t.text("model_type"),
        params_b=t.number("params_b"),
        active_params_b=t.number("active_params_b"),
        moe=t.boolean("moe"),
        vision=t.boolean("vision"),
        layers=t.integer("layers"),
        attention_heads=t.integer("attention_heads"),
        kv_heads=t.integer("kv_heads"),
        hidden_size=t.integer("hidden_size"),
        head_dim=t.integer("head_dim"),
        vocab_size=t.integer("vocab_size"),
        context_length=t.integer("context_length"),
        torch_dtype=t.text("torch_dtype"),
        rope_scaling=t.text("rope_scaling"),
        trust_remote_code=t.boolean("trust_remote_code"),
        min_transformers=t.text("min_transformers"),
        min_vllm=t.text("min_vllm"),
        min_sglang=t.text("min_sglang"),
        quantized=t.texts("quantized"),
        notes=t.text("notes"),
        sources=_sources(t),
    )
    t.done()
    return card


def parse_rule(t: Table, file: str) -> Rule:
    when_raw = t.any("when")
    rule = Rule(
        id=t.req_text("id"),
        title=t.req_text("title"),
        kind=t.req_text("kind", choices=KINDS),
        severity=t.req_text("severity", choices=SEVERITIES),
        stages=t.texts("stages", required=True),
        components=t.texts("components", required=True),
        signatures=t.texts("signatures"),
        explanation=t.req_text("explanation"),
        fix=t.req_text("fix"),
        evidence=_sources(t, "evidence"),
        tier=t.req_text("tier", choices=TIERS),
        when=parse_condition(when_raw, f"{t.where}.when") if when_raw is not None else None,
        file=file,
        symptom=bool(t.boolean("symptom")),
        general=bool(t.boolean("general")),
    )
    t.done()
    for stage in rule.stages:
        if stage not in STAGES:
            raise KnowledgeError(f"{t.where}.stages: unknown stage {stage!r}")
    _check_patterns(rule.signatures, f"{t.where}.signatures")
    _check_component_groups(rule.signatures, f"{t.where}.signatures")
    if rule.when is None and not rule.signatures:
        raise KnowledgeError(f"{t.where}: a rule needs a `when` condition or signatures")
    if rule.symptom and not rule.signatures:
        raise KnowledgeError(f"{t.where}: a symptom rule needs signatures (it only explains errors)")
    return rule


def parse_family(t: Table) -> Family:
    family = Family(
        id=t.req_text("id"),
        kind=t.req_text("kind", choices=KINDS),
        components=t.texts("components"),
        strong=t.texts("strong", required=True),
        weak=t.texts("weak"),
        unless=t.texts("unless"),
        boosts=tuple(_boost(b) for b in tables(t.any("boost"), f"{t.where}.boost")),
        subjects=t.texts("subjects"),
        readings=tuple(_reading(r) for r in tables(t.any("reading"), f"{t.where}.reading")),
        implicates=tuple(_implicate(i) for i in tables(t.any("implicates"), f"{t.where}.implicates")),
        declared_packages=bool(t.boolean("declared_packages")),
        title=t.req_text("title"),
        explanation=t.req_text("explanation"),
        fix=t.req_text("fix"),
        evidence=_sources(t, "evidence"),
    )
    t.done()
    for key, patterns in (("strong", family.strong), ("weak", family.weak), ("unless", family.unless)):
        _check_patterns(patterns, f"{t.where}.{key}")
    _check_component_groups(family.subjects, f"{t.where}.subjects", required=True)
    for reading in family.readings:
        if reading.kind == family.kind:
            raise KnowledgeError(f"{t.where}.reading: kind {reading.kind!r} is the family's own")
    return family


def _implicate(t: Table) -> tuple[str, Condition]:
    component = t.req_text("component")
    when = parse_condition(t.any("when"), f"{t.where}.when")
    t.done()
    return component, when


def _reading(t: Table) -> Reading:
    when_raw = t.any("when")
    reading = Reading(
        id=t.req_text("id"),
        kind=t.req_text("kind", choices=KINDS),
        cues=t.texts("cues"),
        when=parse_condition(when_raw, f"{t.where}.when") if when_raw is not None else None,
        first_if_subject_older=bool(t.boolean("first_if_subject_older")),
        title=t.req_text("title"),
        explanation=t.req_text("explanation"),
        fix=t.req_text("fix"),
        evidence=_sources(t, "evidence"),
    )
    t.done()
    _check_patterns(reading.cues, f"{t.where}.cues")
    if not reading.id.startswith("family-"):
        raise KnowledgeError(
            f"{t.where}.id: {reading.id!r} must start with 'family-' (it is a family's reading)"
        )
    return reading


def _boost(t: Table) -> tuple[int, Condition]:
    points = t.integer("points", required=True)
    assert points is not None
    if not 1 <= points <= 2:
        raise KnowledgeError(f"{t.where}.points: expected 1 (a weak cue) or 2 (a strong one)")
    when = parse_condition(t.any("when"), f"{t.where}.when")
    t.done()
    return points, when


def parse_mention(t: Table) -> Mention:
    mention = Mention(component=t.req_text("component"), spellings=t.texts("spellings", required=True))
    t.done()
    _check_patterns(mention.spellings, f"{t.where}.spellings")
    return mention


def _check_component_groups(patterns: tuple[str, ...], where: str, required: bool = False) -> None:
    _check_patterns(patterns, where)
    for i, pattern in enumerate(patterns):
        groups = list(re.compile(pattern).groupindex)
        stray = [g for g in groups if not g.startswith(COMPONENT_GROUP)]
        if stray:
            raise KnowledgeError(
                f"{where}[{i}]: named group {stray[0]!r}: only groups named "
                f"{COMPONENT_GROUP}... are read (they catch an implicated package's name)"
            )
        if required and not groups:
            raise KnowledgeError(f"{where}[{i}]: needs a group named {COMPONENT_GROUP} (the package)")


def _check_patterns(patterns: tuple[str, ...], where: str) -> None:
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise KnowledgeError(f"{where}[{i}]: bad regex: {exc}") from None


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(pattern))


def source_files(root: Path) -> list[Path]:
    """Every curated TOML file of the knowledge base."""
    return sorted(p for p in root.rglob("*.toml"))


def parse_knowledge(root: Path) -> Knowledge:
    """Parse and validate every file under `root` (no cache)."""
    docs = {p.name: read_toml(p, root) for p in _files(root, "*.toml")}

    def top(name: str) -> tuple[str, dict[str, Any]]:
        return docs.get(name, (f"knowledge/{name}", {}))

    gpus_file, gpus_doc = top("gpus.toml")
    cuda_file, cuda_doc = top("cuda.toml")
    torch_file, torch_doc = top("torch.toml")
    ext_file, ext_doc = top("extensions.toml")
    model_file, model_doc = top("models.toml")
    families_file, families_doc = top("families.toml")
    amd_file, amd_doc = top("amd.toml")

    rules: list[Rule] = []
    extra_evidence: dict[str, list[str]] = {}
    for path in _files(root, "rules/*.toml"):
        rel, doc = read_toml(path, root)
        unknown = set(doc) - {"rule", "extra_evidence"}
        if unknown:
            raise KnowledgeError(f"{rel}: unknown top-level key(s) {', '.join(sorted(unknown))}")
        rules.extend(parse_rule(t, rel) for t in tables(doc.get("rule"), f"{rel}: rule"))
        for t in tables(doc.get("extra_evidence"), f"{rel}: extra_evidence"):
            extra_evidence.setdefault(t.req_text("rule"), []).extend(t.texts("links", required=True))
            t.done()
    rules = _merge_evidence(rules, extra_evidence)

    corpus_file, corpus_doc = (
        read_toml(root / "corpus" / "records.toml", root)
        if (root / "corpus" / "records.toml").exists()
        else ("", {})
    )
    corpus = []
    for t in tables(corpus_doc.get("record"), f"{corpus_file}: record"):
        corpus.append(
            CorpusRecord(
                link=t.req_text("link"),
                root_cause=t.req_text("root_cause"),
                symptom=t.req_text("symptom"),
                stage=t.req_text("stage"),
                model=t.req_text("model"),
            )
        )
        t.done()
    triage = []
    for path in _files(root, "corpus/triage*.toml"):
        rel, doc = read_toml(path, root)
        for t in tables(doc.get("record"), f"{rel}: record"):
            triage.append(TriageRecord(link=t.req_text("link"), reason=t.req_text("reason"), file=rel))
            t.done()

    index_url = torch_doc.get("index_url_template", "https://download.pytorch.org/whl/{variant}")
    return Knowledge(
        gpus=tuple(_gpu(t) for t in tables(gpus_doc.get("gpu"), f"{gpus_file}: gpu")),
        cuda=tuple(_cuda(t) for t in tables(cuda_doc.get("cuda"), f"{cuda_file}: cuda")),
        driver_branches=tuple(
            _branch(t) for t in tables(cuda_doc.get("driver_branch"), f"{cuda_file}: driver_branch")
        ),
        torch=tuple(_torch(t) for t in tables(torch_doc.get("torch"), f"{torch_file}: torch")),
        torch_index_url=str(index_url),
        extensions=tuple(_extension(t) for t in tables(ext_doc.get("extension"), f"{ext_file}: extension")),
        pins=tuple(_pin(t) for t in tables(ext_doc.get("pin"), f"{ext_file}: pin")),
        models=tuple(_model(t) for t in tables(model_doc.get("model"), f"{model_file}: model")),
        rules=tuple(rules),
        corpus=tuple(corpus),
        triage=tuple(triage),
        families=tuple(
            parse_family(t) for t in tables(families_doc.get("family"), f"{families_file}: family")
        ),
        mentions=tuple(
            parse_mention(t) for t in tables(families_doc.get("mention"), f"{families_file}: mention")
        ),
        amd_gpus=tuple(_amd_gpu(t) for t in tables(amd_doc.get("amd_gpu"), f"{amd_file}: amd_gpu")),
        gfx_support=tuple(
            _gfx_support(t) for t in tables(amd_doc.get("gfx_support"), f"{amd_file}: gfx_support")
        ),
    )


def _merge_evidence(rules: list[Rule], extra: Mapping[str, Iterable[str]]) -> list[Rule]:
    known = {r.id for r in rules}
    missing = sorted(set(extra) - known)
    if missing:
        raise KnowledgeError(f"extra_evidence names unknown rule(s): {', '.join(missing)}")
    merged = []
    for rule in rules:
        if rule.id in extra:
            evidence = tuple(dict.fromkeys((*rule.evidence, *extra[rule.id])))
            rule = replace(rule, evidence=evidence)
        merged.append(rule)
    return merged


def _fingerprint(root: Path) -> str:
    """The cache key: names, sizes and dates of the knowledge files and of the modules whose
    classes are pickled (a changed class must not be read from an old cache)."""
    here = Path(__file__).parent
    code = [here / name for name in ("knowledge.py", "rules.py", "records.py")]
    parts = [str(SCHEMA_VERSION)]
    for path in [*code, *source_files(root)]:
        stat = path.stat()
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return cache_key("\0".join(parts).encode())


def _cache_dir() -> Path:
    from compatsolve.cachedir import cache_dir

    return cache_dir()


@cache
def load(root: Path | None = None) -> Knowledge:
    """The knowledge base, from the pickle cache when the files have not changed."""
    root = root or knowledge_dir()
    key = _fingerprint(root)
    cached = _cache_dir() / f"knowledge-{key}.pickle"
    try:
        with cached.open("rb") as handle:
            loaded = pickle.load(handle)
        if isinstance(loaded, Knowledge):
            return loaded
    except (OSError, pickle.PickleError, EOFError, AttributeError, TypeError):
        pass
    knowledge = parse_knowledge(root)
    replace_cache_pickle(cached, knowledge, "knowledge-*.pickle")
    return knowledge
