"""The one immutable model of "machine + installed packages + settings" that every command judges.

Sources (the live probe, a saved snapshot, a target spec, declared packages, a pasted report)
each produce a partial Environment; `merge` layers them, later sources winning, and `origins`
remembers which source supplied each fact. `facts()` flattens it into the vocabulary of
docs/knowledge.md that rule conditions are written in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from compatsolve.names import canonicalize_name
from compatsolve.records import field, fields, record, replace
from compatsolve.versions import major_minor, parse_version, public_version

if TYPE_CHECKING:  # knowledge imports are kept out of the probe's start-up
    from compatsolve.knowledge import ModelCard

SNAPSHOT_SCHEMA = "compatsolve.environment/1"

# PEP 508 marker values of each operating system compatsolve names (`os` facts).
SYS_PLATFORM = {"linux": "linux", "wsl": "linux", "windows": "win32", "macos": "darwin"}
PLATFORM_SYSTEM = {"linux": "Linux", "wsl": "Linux", "windows": "Windows", "macos": "Darwin"}


# x86 vector extensions, oldest first: the newest one a CPU has (`cpu_avx`) decides which prebuilt
# llama.cpp-based binaries run on it (GPT4All, Ollama, LM Studio and LocalAI ship AVX or AVX2
# builds; knowledge/rules/cpu.toml).
AVX_LEVELS = ("none", "avx", "avx2", "avx512")


def avx_level(flags: Iterable[str]) -> str:
    """The newest AVX level among a CPU's feature flags as Linux names them (/proc/cpuinfo,
    lscpu's "Flags:"): avx512f, avx2, avx; "none" when it has none of them."""
    present = {flag.lower() for flag in flags}
    for level, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx")):
        if flag in present:
            return level
    return "none"


def marker_values(python: str | None, os_name: str | None, arch: str | None) -> dict[str, str]:
    """The PEP 508 marker variables that a target's Python version, OS and architecture decide
    (what that interpreter's `platform` module would report there); unknown inputs are left out."""
    values: dict[str, str] = {}
    if python:
        parts = python.split(".")
        values["python_version"] = ".".join(parts[:2])
        values["python_full_version"] = python if len(parts) > 2 else python + ".0"
    if os_name in SYS_PLATFORM:
        values["sys_platform"] = SYS_PLATFORM[os_name]
        values["platform_system"] = PLATFORM_SYSTEM[os_name]
        values["os_name"] = "nt" if os_name == "windows" else "posix"
    if arch:
        # Windows reports AMD64 / ARM64 and macOS arm64 where Linux says x86_64 / aarch64
        spelled = {"windows": {"x86_64": "AMD64", "aarch64": "ARM64"}, "macos": {"aarch64": "arm64"}}
        values["platform_machine"] = spelled.get(os_name or "", {}).get(arch, arch)
    return values


@record(kw_only=True)
class Gpu:
    index: int
    name: str
    cc: str | None = None  # compute capability, "8.0"
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    catalog_id: str | None = None  # matching knowledge/gpus.toml entry, when known
    gfx: str | None = None  # an AMD GPU's LLVM target ("gfx1032"), from the kfd topology


@record(kw_only=True)
class Package:
    name: str  # normalized (PEP 503)
    version: str  # as installed or declared, local label kept: 2.4.0+cu121
    requires: tuple[str, ...] = ()  # Requires-Dist lines, when read from metadata
    requires_python: str | None = None
    installer: str | None = None


@record(kw_only=True)
class TorchBuild:
    version: str
    cuda: str | None  # "12.1"; None for CPU builds
    git_version: str | None = None
    hip: str | None = None


@record(kw_only=True)
class RunSettings:
    model: str | None = None  # catalog id once resolved
    stage: str | None = None
    engine: str | None = None
    method: str | None = None
    dtype: str | None = None
    quantization: str | None = None
    attention: str | None = None
    tp: int | None = None
    pp: int | None = None
    context: int | None = None


@record(kw_only=True)
class Notice:
    """Something a source found worth saying: an NVML error, WSL, an unrecognised line."""

    source: str
    message: str
    severity: str = "info"


@record(kw_only=True)
class Environment:
    gpus: tuple[Gpu, ...] | None = None  # None: unknown; (): known to have none
    driver_version: str | None = None
    driver_cuda: str | None = None
    toolkit_cuda: str | None = None
    cuda_home: str | None = None
    os_name: str | None = None
    os_release: str | None = None
    arch: str | None = None
    cpu_avx: str | None = None  # one of AVX_LEVELS; None: unknown (and on non-x86 CPUs)
    glibc: str | None = None
    python_version: str | None = None
    python_abi: str | None = None
    python_executable: str | None = None
    packages: Mapping[str, Package] | None = None  # None: unknown
    packages_complete: bool = False  # True when packages enumerate a whole environment
    torch: TorchBuild | None = None
    env_vars: Mapping[str, str] | None = None
    run: RunSettings = field(default_factory=RunSettings)
    # a model outside the catalog, read from its files (sources/hfmodel.py)
    model_card: ModelCard | None = None
    notices: tuple[Notice, ...] = ()
    origins: Mapping[str, str] = field(default_factory=dict)  # field name -> source label

    # ------------------------------------------------------------ building

    @classmethod
    def from_source(cls, source: str, **values: Any) -> Environment:
        """A partial environment whose given fields all come from `source`."""
        origins = {k: source for k, v in values.items() if v is not None and k not in ("notices",)}
        return cls(**values, origins=origins)

    def with_packages(self, packages: Iterable[Package], source: str, complete: bool) -> Environment:
        merged = dict(self.packages or {})
        merged.update({p.name: p for p in packages})
        origins = dict(self.origins)
        origins.update({f"pkg.{p.name}": source for p in packages})
        return replace(self, packages=merged, packages_complete=complete, origins=origins)

    def package(self, name: str) -> Package | None:
        return (self.packages or {}).get(canonicalize_name(name))

    # ------------------------------------------------------------ facts

    def facts(self, catalog: Any = None) -> dict[str, Any]:
        """Flatten into rule facts. `catalog` (Knowledge) adds GPU and model facts from the KB."""
        out: dict[str, Any] = {}
        if self.gpus is not None:
            out["gpu.count"] = len(self.gpus)
        if self.gpus:
            first = self.gpus[0]
            out["gpu.name"] = first.name
            # The weakest GPU decides; if any GPU's value is unknown, so is the fact.
            ccs = [parse_version(g.cc) if g.cc else None for g in self.gpus]
            if all(ccs):
                out["gpu.cc"] = str(min(c for c in ccs if c))
            mems = [g.memory_total_mib for g in self.gpus]
            if all(mems):
                out["gpu.vram_gib"] = round(min(m for m in mems if m) / 1024, 1)
            model = catalog.gpu(first.catalog_id or first.name) if catalog is not None else None
            amd = catalog.amd_gpu(first.catalog_id or first.name) if catalog and model is None else None
            if amd is not None:
                out["gpu.vendor"] = "amd"
                out["gpu.gfx"] = amd.gfx
                out["gpu.arch"] = amd.architecture
                out["gpu.segment"] = amd.segment
                if len(self.gpus) == 1 and amd.memory_gib and "gpu.vram_gib" not in out:
                    out["gpu.vram_gib"] = amd.memory_gib
            elif first.gfx:  # probed: the target is known, the card is not
                out["gpu.vendor"] = "amd"
                out["gpu.gfx"] = first.gfx
                if catalog is not None:
                    archs = {g.architecture for g in catalog.amd_gpus if g.gfx == first.gfx}
                    if len(archs) == 1:
                        out["gpu.arch"] = archs.pop()
            if model is not None:
                out["gpu.vendor"] = "nvidia"
                out["gpu.arch"] = model.architecture
                out["gpu.segment"] = model.segment
                if len(self.gpus) == 1:
                    out.setdefault("gpu.cc", model.cc)
                    if model.memory_gib and "gpu.vram_gib" not in out:
                        out["gpu.vram_gib"] = model.memory_gib
                for key in ("bf16", "fp8", "fp4", "p2p"):
                    value = getattr(model, key)
                    if value is not None:
                        out[f"gpu.{key}"] = value
            if "gpu.cc" in out and "gpu.bf16" not in out:
                version = parse_version(out["gpu.cc"])
                out["gpu.bf16"] = bool(version and version.release >= (8, 0))
        _put(out, "driver.version", self.driver_version)
        _put(out, "driver.cuda", major_minor(self.driver_cuda))
        _put(out, "toolkit.cuda", major_minor(self.toolkit_cuda))
        _put(out, "os.name", self.os_name)
        _put(out, "os.arch", self.arch)
        _put(out, "glibc.version", self.glibc)
        if self.cpu_avx in AVX_LEVELS and self.arch in (None, "x86_64"):
            level = AVX_LEVELS.index(self.cpu_avx)
            out["cpu.avx"], out["cpu.avx2"], out["cpu.avx512"] = level >= 1, level >= 2, level >= 3
        _put(out, "python.version", self.python_version)
        for pkg in (self.packages or {}).values():
            out[f"pkg.{pkg.name}"] = public_version(pkg.version)
        if self.packages is not None:
            out["nvidia.cu12"] = any(n.startswith("nvidia-") and n.endswith("-cu12") for n in self.packages)
            out["nvidia.cu13"] = any(n.startswith("nvidia-") and n.endswith("-cu13") for n in self.packages)
        if self.packages_complete:
            out["_packages_complete"] = True
        torch = self.torch_build()
        if torch is not None:
            cuda = major_minor(torch.cuda) if torch.cuda else None
            if cuda:
                out["torch.cuda"] = cuda
                out["torch.variant"] = "cu" + cuda.replace(".", "")
            elif torch.cuda:
                pass  # a CUDA build whose version text does not parse: unknown
            elif torch.hip:
                out["torch.variant"] = "rocm" + (major_minor(torch.hip) or "")
            else:
                out["torch.variant"] = "cpu"
        for key, value in (self.env_vars or {}).items():
            out[f"env.{key}"] = value
        if self.env_vars is not None:
            out["_env_complete"] = True
        run = self.run
        _put(out, "run.stage", run.stage)
        _put(out, "run.engine", run.engine)
        _put(out, "run.method", run.method)
        _put(out, "run.dtype", run.dtype)
        _put(out, "run.quantization", run.quantization)
        _put(out, "run.attention", run.attention)
        _put(out, "run.tp", run.tp)
        _put(out, "run.pp", run.pp)
        _put(out, "run.context", run.context)
        if run.model:
            card = self.model_card or (catalog.model(run.model) if catalog is not None else None)
            if card is not None:
                out.update(model_facts(card))
        return out

    def torch_build(self) -> TorchBuild | None:
        """torch's build: read from torch/version.py when probed, else from its local label."""
        if self.torch is not None:
            return self.torch
        pkg = self.package("torch")
        if pkg is None:
            return None
        version = parse_version(pkg.version)
        label = version.local if version else None
        if label and label.startswith("cu") and label[2:].isdigit() and len(label) >= 5:
            digits = label[2:]
            return TorchBuild(version=pkg.version, cuda=f"{digits[:-1]}.{digits[-1]}")
        if label and label.startswith("rocm"):
            return TorchBuild(version=pkg.version, cuda=None, hip=label[4:])
        if label == "cpu":
            return TorchBuild(version=pkg.version, cuda=None)
        return None  # a bare PyPI version: the build is not knowable from the name alone


def model_facts(card: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model.id": card.id, "model.series": card.series}
    for name in (
        "family",
        "model_type",
        "architecture",
        "params_b",
        "active_params_b",
        "attention_heads",
        "kv_heads",
        "layers",
        "context_length",
        "torch_dtype",
        "moe",
        "trust_remote_code",
        "vision",
    ):
        _put(out, f"model.{name}", getattr(card, name))
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def merge(*layers: Environment) -> Environment:
    """Layer partial environments: a later layer's known values win over earlier ones."""
    result = Environment()
    for layer in layers:
        values: dict[str, Any] = {}
        for f in fields(Environment):
            if f.name in ("origins", "notices", "packages", "run", "env_vars", "packages_complete"):
                continue
            value = getattr(layer, f.name)
            if value is not None:
                values[f.name] = value
        run_values = {
            f.name: getattr(layer.run, f.name)
            for f in fields(RunSettings)
            if getattr(layer.run, f.name) is not None
        }
        packages = result.packages
        complete = result.packages_complete
        if layer.packages is not None:
            packages = {**(result.packages or {}), **layer.packages}
            complete = complete or layer.packages_complete
        env_vars = result.env_vars
        if layer.env_vars is not None:
            env_vars = {**(result.env_vars or {}), **layer.env_vars}
        result = replace(
            result,
            **values,
            packages=packages,
            packages_complete=complete,
            env_vars=env_vars,
            run=replace(result.run, **run_values),
            notices=result.notices + layer.notices,
            origins={**result.origins, **layer.origins},
        )
    return result
