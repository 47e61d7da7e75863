"""Environment reports pasted from bug reports, in any mix within one text.

Recognised: `python -m torch.utils.collect_env` (old and new layouts), vLLM's `collect_env` /
`vllm collect-env`, `transformers env`, `accelerate env`, `llamafactory-cli env`, `pip list`,
`pip freeze`, `conda list`, nvidia-smi's header and table, `nvcc --version`, and plain lines such
as `torch==2.3.0+cu118` or `transformers 4.41.2`. Every fact found is recorded with the layout
it came from; nothing is inferred that the text does not say.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from compatsolve.environment import Environment, Gpu, Notice, Package, TorchBuild, avx_level
from compatsolve.names import canonicalize_name
from compatsolve.records import field, record
from compatsolve.versions import leading_version, parse_version

MAX_REPORT_CHARS = 5_000_000

# Names reports use for distributions, mapped to PyPI names.
ALIASES = {
    "pytorch": "torch",
    "huggingface_hub": "huggingface-hub",
    "hf_hub": "huggingface-hub",
    "vllm_flash_attn": "vllm-flash-attn",
    "flash_attn": "flash-attn",
    "pytorch-cuda": "",
    "cudatoolkit": "",
    "python": "",
    "cuda": "",
    "nvidia-smi": "",
}
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_VERSION = r"\d+(?:\.\d+)*(?:[a-zA-Z0-9.+!_-]*)"


@record(frozen=False)
class _Collected:
    packages: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (version, layout)
    values: dict[str, tuple[object, str]] = field(default_factory=dict)  # field -> (value, layout)
    gpus: dict[int, dict[str, object]] = field(default_factory=dict)
    gpu_layout: str | None = None
    notices: list[Notice] = field(default_factory=list)
    layouts: set[str] = field(default_factory=set)

    def put(self, key: str, value: object, layout: str, *, override: bool = False) -> None:
        if value in (None, ""):
            return
        self.layouts.add(layout)
        if override or key not in self.values:
            self.values[key] = (value, layout)

    def package(self, name: str, version: str, layout: str) -> None:
        pypi = ALIASES.get(name.lower(), name)
        if not pypi or parse_version(version) is None:
            return
        self.layouts.add(layout)
        self.packages.setdefault(canonicalize_name(pypi), (version, layout))

    def gpu(self, index: int, layout: str, **values: object) -> None:
        self.layouts.add(layout)
        if self.gpu_layout not in (None, layout) and index not in self.gpus:
            pass
        self.gpu_layout = self.gpu_layout or layout
        self.gpus.setdefault(index, {}).update({k: v for k, v in values.items() if v is not None})


def _os_from_platform(text: str, c: _Collected, layout: str) -> None:
    lower = text.lower()
    if "microsoft" in lower and "wsl" in lower:
        c.put("os_name", "wsl", layout)
    elif lower.startswith("linux"):
        c.put("os_name", "linux", layout)
    elif lower.startswith("windows") or "microsoft windows" in lower:
        c.put("os_name", "windows", layout)
    elif lower.startswith(("macos", "darwin")):
        c.put("os_name", "macos", layout)
    arch = re.search(r"(x86_64|aarch64|arm64|amd64)", lower)
    if arch:
        c.put("arch", {"arm64": "aarch64", "amd64": "x86_64"}.get(arch.group(1), arch.group(1)), layout)
    glibc = re.search(r"glibc[-_ ]?(\d+\.\d+)", lower)
    if glibc:
        c.put("glibc", glibc.group(1), layout)


def _torch_line(version_text: str, c: _Collected, layout: str) -> None:
    match = re.match(rf"\s*({_VERSION})", version_text)
    if match:
        c.package("torch", match.group(1), layout)


Handler = Callable[[re.Match[str], _Collected], None]
LINE_PATTERNS: list[tuple[str, re.Pattern[str], Handler]] = []


def _on(layout: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        LINE_PATTERNS.append((layout, re.compile(pattern, re.IGNORECASE), handler))
        return handler

    return register


# ---- torch.utils.collect_env and vLLM's collect_env (shared field names)
CE = "collect_env"


@_on(CE, r"^PyTorch version:\s*(\S+)")
def _(m: re.Match[str], c: _Collected) -> None:
    _torch_line(m.group(1), c, CE)


@_on(CE, r"^CUDA used to build PyTorch:\s*(\d+\.\d+)")
def _(m: re.Match[str], c: _Collected) -> None:
    c.put("torch_cuda", m.group(1), CE)


@_on(CE, r"^CUDA used to build PyTorch:\s*None")
def _(m: re.Match[str], c: _Collected) -> None:
    c.put("torch_cuda", "none", CE)


@_on(CE, r"^ROCM used to build PyTorch:\s*(\d+\.\d+\S*)")
def _(m: re.Match[str], c: _Collected) -> None:
    c.put("torch_hip", m.group(1), CE)


@_on(CE, r"^OS:\s*(.+)$")
def _(m: re.Match[str], c: _Collected) -> None:
    text = m.group(1)
    if re.search(r"windows", text, re.I):
        c.put("os_name", "windows", CE)
    elif re.search(r"mac ?os|darwin", text, re.I):
        c.put("os_name", "macos", CE)
    elif re.search(r"ubuntu|debian|centos|red hat|rhel|rocky|alma|fedora|suse|linux|arch|amazon", text, re.I):
        c.put("os_name", "linux", CE)
    arch = re.search(r"\((x86_64|aarch64|arm64)\)", text)
    if arch:
        c.put("arch", arch.group(1).replace("arm64", "aarch64"), CE)


@_on(CE, r"^\s*Flags:\s*(fpu\b.*)$")
def _(m: re.Match[str], c: _Collected) -> None:
    # lscpu, as collect_env prints it; x86 flag lists start with fpu
    c.put("cpu_avx", avx_level(m.group(1).split()), CE)


@_on(CE, r"^Libc version:\s*glibc-(\d+\.\d+)")
def _(m: re.Match[str], c: _Collected) -> None:
    c.put("glibc", m.group(1), CE)


@_on(CE, r"^Python version:\s*(3\.\d+\.\d+)")
def _(m: re.Match[str], c: _Collected) -> None:
    c.put("python_version", m.group(1), CE)


@_on(CE, r"^Python platform:\s*(\S+)")
def _(m: re.Match[str], c: _Collected) -> None:
    _os_from_platform(m.group(1), c, CE)


@_on(CE, r"^CUDA runtime version:\s*(\d+\.\d+(?:\.\d+)?)")
def _(m: re.Match[str], c: _Collected) -> None:
    c.put("toolkit_cuda", m.group(1), CE)  # collect_env reads this from nvcc


@_on(CE, r"^Nvidia driver version:\s*(\d+\.\d+(?:\.\d+)?)")
def _(m: re.Match[str], c: _Collected) -> None:
    c.put("driver_version", m.group(1), CE)


@_on(CE, r"^GPU models and configuration:\s*(?:GPU (\d+):\s*)?(.*?)\s*$")
def _(m: re.Match[str], c: _Collected) -> None:
    name = m.group(2)
    if name and not re.match(r"(could not collect|n/?a|none)$", name, re.I):
        c.gpu(int(m.group(1) or 0), CE, name=_strip_uuid(name))


@_on(CE, r"^GPU (\d+):\s*(.+?)\s*$")
def _(m: re.Match[str], c: _Collected) -> None:
    c.gpu(int(m.group(1)), CE, name=_strip_uuid(m.group(2)))


@_on(CE, r"^\[(?:pip3?|conda)\]\s+(" + _NAME + r")\s*==\s*(" + _VERSION + r")\s*$")
def _(m: re.Match[str], c: _Collected) -> None:
    c.package(m.group(1), m.group(2), CE)


@_on(CE, r"^\[conda\]\s+(" + _NAME + r")\s+(" + _VERSION + r")\s+\S+")
def _(m: re.Match[str], c: _Collected) -> None:
    c.package(m.group(1), m.group(2), CE)


VL = "vllm collect_env"


@_on(VL, r"^vLLM Version:\s*(\d[^\s@]*)")
def _(m: re.Match[str], c: _Collected) -> None:
    c.package("vllm", m.group(1).removeprefix("v"), VL)


# ---- transformers env / accelerate env / llamafactory-cli env: "- Name version: X"
HF = "hf env"


@_on(HF, r"^-\s*`?(" + _NAME + r")`?\s+version(?:\s*\([^)]*\))?:\s*(" + _VERSION + r")(?:\s*\((\w+)\))?")
def _(m: re.Match[str], c: _Collected) -> None:
    name = m.group(1)
    if name.lower() in ("python", "pytorch", "torch"):
        if name.lower() == "python":
            c.put("python_version", m.group(2), HF)
        else:
            _torch_line(m.group(2), c, HF)
        return
    c.package(name, m.group(2), HF)


@_on(HF, r"^-\s*Platform:\s*(\S+)")
def _(m: re.Match[str], c: _Collected) -> None:
    _os_from_platform(m.group(1), c, HF)


@_on(HF, r"^-\s*GPU type:\s*(.+?)\s*$")
def _(m: re.Match[str], c: _Collected) -> None:
    if not c.gpus:
        c.gpu(0, HF, name=_strip_uuid(m.group(1)))


# ---- nvidia-smi
SMI = "nvidia-smi"


@_on(
    SMI,
    r"NVIDIA-SMI\s+(\d+\.\d+(?:\.\d+)?)\s+Driver Version:\s*(\d+\.\d+(?:\.\d+)?)"
    r"(?:\s+CUDA Version:\s*(\d+\.\d+))?",
)
def _(m: re.Match[str], c: _Collected) -> None:
    c.put("driver_version", m.group(2), SMI, override=True)
    if m.group(3):
        c.put("driver_cuda", m.group(3), SMI, override=True)


@_on(SMI, r"^\|\s+(\d+)\s+(.+?)\s+(?:On|Off)\s+\|\s+[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:")
def _(m: re.Match[str], c: _Collected) -> None:
    c.gpu(int(m.group(1)), SMI, name=m.group(2).strip())
    c.values["_smi_last_gpu"] = (int(m.group(1)), SMI)


@_on(SMI, r"^\|.*?\|\s*(\d+)MiB\s*/\s*(\d+)MiB\s*\|")
def _(m: re.Match[str], c: _Collected) -> None:
    last = c.values.get("_smi_last_gpu")
    if last is not None:
        index = int(last[0])  # type: ignore[call-overload]
        c.gpu(index, SMI, memory_total_mib=int(m.group(2)), memory_free_mib=int(m.group(2)) - int(m.group(1)))


# ---- nvcc --version
@_on("nvcc", r"Cuda compilation tools, release (\d+\.\d+)")
def _(m: re.Match[str], c: _Collected) -> None:
    c.put("toolkit_cuda", m.group(1), "nvcc", override=True)


# ---- pip freeze and plain pins: NAME==VERSION (a whole line)
@_on("pip freeze", r"^(" + _NAME + r")\s*===?\s*(" + _VERSION + r")\s*(?:;.*)?$")
def _(m: re.Match[str], c: _Collected) -> None:
    c.package(m.group(1), m.group(2), "pip freeze")


def _strip_uuid(name: str) -> str:
    return re.sub(r"\s*\(UUID:.*?\)\s*$", "", name).strip()


_ALIGNED_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9 ()/._-]*?[A-Za-z0-9)])\s+:\s")
_PIP_LIST_HEADER = re.compile(r"^Package\s+Version(\s+.*)?$")
_CONDA_HEADER = re.compile(r"^#\s*Name\s+Version\s+Build(\s+Channel)?\s*$")
_TWO_TOKENS = re.compile(
    rf"^({_NAME})\s+v?(\d+(?:\.\d+)+(?:[a-zA-Z0-9.+!_-]*))(?:\s+(\S+))?(?:\s+(\S+))?\s*$"
)


def parse_report(text: str, origin: str, catalog: object = None, *, message: bool = False) -> Environment:
    """Parse a pasted report into a partial Environment. Never raises on content. With
    `message`, the text is an error message or log: the installed versions its sentences state
    count too (a report's prose never makes packages)."""
    text = text[:MAX_REPORT_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    c = _Collected()
    table: str | None = None  # inside a `pip list` or `conda list` table
    for raw in text.split("\n"):
        line = re.sub(r"^(?:>\s*)+", "", raw.strip())  # quoted in a GitHub comment
        line = line.strip().strip("`").strip()
        # vLLM's collect_env (and newer layouts) align the colons: "PyTorch version     : 2.4.0"
        line = _ALIGNED_KEY.sub(r"\1: ", line)
        if not line:
            table = None
            continue
        if _PIP_LIST_HEADER.match(line):
            table = "pip list"
            continue
        if _CONDA_HEADER.match(line):
            table = "conda list"
            continue
        if table and re.fullmatch(r"[-\s]+", line):
            continue
        matched = False
        for _layout, pattern, handler in LINE_PATTERNS:
            found = pattern.search(line) if _layout == SMI else pattern.match(line)
            if found:
                handler(found, c)
                matched = True
                break
        if matched:
            continue
        two = _TWO_TOKENS.match(line)
        if two:
            if table == "conda list":
                c.package(two.group(1), two.group(2), "conda list")
            elif table == "pip list" or (two.group(3) is None):
                c.package(two.group(1), two.group(2), table or "plain line")
    _python_from_paths(text, c)
    if message:
        _stated_versions(text, c)
    return _to_environment(c, origin, catalog)


# How error messages state an installed version: pip's resolver ("... but you have torch 2.3.0
# which is incompatible"), transformers' version checks ("... but found tokenizers==0.15.0") and
# "<name> <version> is installed". A requirement ("requires torch==2.3.1") is not a statement.
_STATED = (
    re.compile(rf"but you have ({_NAME}) ({_VERSION})"),
    re.compile(rf"\bfound ({_NAME})==({_VERSION})"),
    re.compile(rf"\b({_NAME}) ({_VERSION}) is installed"),
)


def _stated_versions(text: str, c: _Collected) -> None:
    for pattern in _STATED:
        for m in pattern.finditer(text):
            c.package(m.group(1), m.group(2).rstrip(".,;:)"), "error message")


_SITE_PATH = re.compile(r"python(3\.\d{1,2})[/\\](?:site|dist)-packages", re.IGNORECASE)
_EXTENSION = re.compile(r"\.cpython-3(\d{1,2})-")


def _python_from_paths(text: str, c: _Collected) -> None:
    """A traceback's own paths name the interpreter: `.../python3.10/site-packages/...` and
    extension files `*.cpython-310-x86_64-linux-gnu.so`. Only when they all name one version."""
    found = {m.group(1) for m in _SITE_PATH.finditer(text)}
    found |= {f"3.{m.group(1)}" for m in _EXTENSION.finditer(text)}
    if len(found) == 1:
        c.put("python_version", found.pop(), "traceback paths")


def _to_environment(c: _Collected, origin: str, catalog: object) -> Environment:
    values = {k: v for k, (v, _) in c.values.items() if not k.startswith("_")}
    origins = {k: f"{origin} ({layout})" for k, (_, layout) in c.values.items() if not k.startswith("_")}
    notices = list(c.notices)
    gpus: tuple[Gpu, ...] | None = None
    if c.gpus:
        built = []
        for index, raw in sorted(c.gpus.items()):
            name = str(raw.get("name") or "unknown GPU")
            model = catalog.gpu(name) if catalog is not None else None  # type: ignore[attr-defined]
            amd = catalog.amd_gpu(name) if catalog is not None and model is None else None  # type: ignore[attr-defined]
            if model is None and amd is None and catalog is not None:
                notices.append(
                    Notice(
                        source=origin,
                        severity="warning",
                        message=f"GPU {name!r} is not in the GPU catalog: its compute capability is unknown",
                    )
                )
            built.append(
                Gpu(
                    index=index,
                    name=name,
                    cc=model.cc if model else None,
                    catalog_id=model.id if model else (amd.id if amd else None),
                    gfx=amd.gfx if amd else None,
                    memory_total_mib=_int(raw.get("memory_total_mib")),
                    memory_free_mib=_int(raw.get("memory_free_mib")),
                )
            )  # type: ignore[arg-type]
        gpus = tuple(built)
        origins["gpus"] = f"{origin} ({c.gpu_layout})"
    torch_cuda = values.pop("torch_cuda", None)
    torch_hip = values.pop("torch_hip", None)
    origins.pop("torch_cuda", None)
    origins.pop("torch_hip", None)
    packages = {name: Package(name=name, version=version) for name, (version, _) in c.packages.items()}
    origins.update({f"pkg.{name}": f"{origin} ({layout})" for name, (_, layout) in c.packages.items()})
    torch = None
    if "torch" in packages and (torch_cuda or torch_hip):
        torch = TorchBuild(
            version=packages["torch"].version,
            cuda=None if torch_cuda in (None, "none") else str(torch_cuda),
            hip=str(torch_hip) if torch_hip else None,
        )
        origins["torch"] = f"{origin} (collect_env)"
    if not c.layouts:
        notices.append(
            Notice(
                source=origin, severity="warning", message="no environment facts recognised in this report"
            )
        )
    else:
        notices.append(Notice(source=origin, message="recognised: " + ", ".join(sorted(c.layouts))))
    return Environment(
        gpus=gpus,
        driver_version=_s(values.get("driver_version")),
        driver_cuda=_s(values.get("driver_cuda")),
        toolkit_cuda=leading_version(str(values["toolkit_cuda"])) if "toolkit_cuda" in values else None,
        os_name=_s(values.get("os_name")),
        arch=_s(values.get("arch")),
        cpu_avx=_s(values.get("cpu_avx")),
        glibc=_s(values.get("glibc")),
        python_version=_s(values.get("python_version")),
        packages=packages or None,
        torch=torch,
        notices=tuple(notices),
        origins=origins,
    )


def _s(value: object) -> str | None:
    return None if value is None else str(value)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None
