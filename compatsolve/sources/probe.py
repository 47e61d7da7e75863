"""The live probe: this machine's GPUs, driver, CUDA toolkit, OS and Python environment.

GPUs come from NVML first (`import pynvml`, from nvidia-ml-py); when NVML is missing or fails,
the driver version comes from /proc/driver/nvidia/version and the GPU list from
`nvidia-smi --query-gpu`. NVML errors such as "Driver/library version mismatch" become notices,
never crashes. Without an NVIDIA GPU, AMD GPUs come from the amdgpu driver's kfd topology in
sysfs (each GPU node's `gfx_target_version`), without ROCm. Nothing here imports torch or any
package being judged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from compatsolve.environment import Environment, Gpu, Notice, avx_level
from compatsolve.records import replace
from compatsolve.sources import installed

ENV_VAR_NAMES = frozenset(
    {
        "CUDA_HOME",
        "CUDA_PATH",
        "CUDA_VISIBLE_DEVICES",
        "LD_LIBRARY_PATH",
        "PYTORCH_CUDA_ALLOC_CONF",
        "HF_HUB_OFFLINE",
        "TORCH_CUDA_ARCH_LIST",
        "HF_HOME",
        "TRANSFORMERS_OFFLINE",
        "CUDA_DEVICE_ORDER",
        "OMP_NUM_THREADS",
    }
)
ENV_VAR_PREFIXES = ("VLLM_", "NCCL_", "SGLANG_", "TORCH_NCCL_")
SMI_QUERY = "index,name,compute_cap,memory.total,memory.free,driver_version"
SUBPROCESS_TIMEOUT = 10.0

Runner = Callable[[list[str]], str | None]


def run_command(argv: list[str]) -> str | None:
    """Run a read-only tool; None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


# ---------------------------------------------------------------- GPUs


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvml(module: ModuleType | None = None) -> Environment:
    """GPUs, driver and the driver's CUDA version from NVML (`module` may be a test double)."""
    source = "nvml"
    nvml: Any = module
    if nvml is None:
        try:
            import pynvml as loaded
        except ImportError:
            return Environment(notices=(Notice(source=source, message="nvidia-ml-py is not installed"),))
        nvml = loaded
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses, or OSError from a missing libnvidia-ml
        return Environment(notices=(_nvml_notice(exc),))
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda_int = int(nvml.nvmlSystemGetCudaDriverVersion())
        driver_cuda = f"{cuda_int // 1000}.{(cuda_int % 1000) // 10}"
        gpus = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                Gpu(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    cc=f"{major}.{minor}",
                    memory_total_mib=int(memory.total) // 2**20,
                    memory_free_mib=int(memory.free) // 2**20,
                )
            )
    except Exception as exc:
        return Environment(notices=(_nvml_notice(exc),))
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
    return Environment.from_source(source, gpus=tuple(gpus), driver_version=driver, driver_cuda=driver_cuda)


def _nvml_notice(exc: BaseException) -> Notice:
    message = str(exc) or type(exc).__name__
    severity = "error" if "mismatch" in message.lower() else "warning"
    hint = ""
    if "mismatch" in message.lower():
        hint = (
            " — the loaded kernel module and the user-space driver differ (usually after a "
            "driver upgrade without reboot); reboot or reload the nvidia kernel modules"
        )
    return Notice(source="nvml", message=f"NVML failed: {message}{hint}", severity=severity)


_PROC_DRIVER = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)")


def parse_proc_driver_version(text: str) -> str | None:
    match = _PROC_DRIVER.search(text)
    return match.group(1) if match else None


def probe_proc(path: Path = Path("/proc/driver/nvidia/version")) -> Environment:
    try:
        driver = parse_proc_driver_version(path.read_text(errors="replace"))
    except OSError:
        return Environment()
    return Environment.from_source("/proc/driver/nvidia/version", driver_version=driver)


def parse_smi_query(text: str) -> tuple[tuple[Gpu, ...], str | None]:
    """Rows of `nvidia-smi --query-gpu=SMI_QUERY --format=csv,noheader,nounits`."""
    gpus, driver = [], None
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 6 or not re.fullmatch(r"[0-9]+", cells[0]):
            continue
        gpus.append(
            Gpu(
                index=int(cells[0]),
                name=cells[1],
                cc=cells[2] if re.fullmatch(r"\d+\.\d+", cells[2]) else None,
                memory_total_mib=int(float(cells[3])) if _is_number(cells[3]) else None,
                memory_free_mib=int(float(cells[4])) if _is_number(cells[4]) else None,
            )
        )
        driver = cells[5] or driver
    return tuple(gpus), driver


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


_SMI_CUDA = re.compile(r"CUDA Version:\s*(\d+\.\d+)")


def probe_smi(run: Runner = run_command) -> Environment:
    if shutil.which("nvidia-smi") is None and run is run_command:
        return Environment()
    out = run(["nvidia-smi", f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"])
    if out is None:
        return Environment(
            notices=(Notice(source="nvidia-smi", message="nvidia-smi failed", severity="warning"),)
        )
    gpus, driver = parse_smi_query(out)
    header = run(["nvidia-smi"]) or ""
    cuda = _SMI_CUDA.search(header)
    return Environment.from_source(
        "nvidia-smi", gpus=gpus, driver_version=driver, driver_cuda=cuda.group(1) if cuda else None
    )


KFD_NODES = Path("/sys/class/kfd/kfd/topology/nodes")


def gfx_target(version: int) -> str | None:
    """kfd's `gfx_target_version` as an LLVM target: major * 10000 + minor * 100 + stepping, the
    minor and stepping written in hex (100302 -> gfx1032, 110501 -> gfx1151, 90010 -> gfx90a)."""
    major, minor, stepping = version // 10000, version // 100 % 100, version % 100
    if not major or minor > 15 or stepping > 15:
        return None
    return f"gfx{major}{minor:x}{stepping:x}"


def probe_kfd(nodes: Path = KFD_NODES) -> Environment:
    """AMD GPUs from the kfd topology: nodes whose `gfx_target_version` is not 0 (CPU nodes are)."""
    if not nodes.is_dir():
        return Environment()
    gpus: list[Gpu] = []
    for node in sorted((p for p in nodes.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        try:
            text = (node / "properties").read_text()
        except OSError:
            continue
        values = dict(line.split(None, 1) for line in text.splitlines() if len(line.split()) == 2)
        version = values.get("gfx_target_version", "0")
        gfx = gfx_target(int(version)) if version.isdigit() and int(version) else None
        if gfx:
            gpus.append(Gpu(index=len(gpus), name=f"AMD GPU ({gfx})", gfx=gfx))
    return Environment(gpus=tuple(gpus), origins={"gpus": "kfd"}) if gpus else Environment()


def probe_gpus(
    nvml: ModuleType | None = None,
    run: Runner = run_command,
    proc: Path = Path("/proc/driver/nvidia/version"),
    kfd: Path = KFD_NODES,
) -> Environment:
    """NVML, else /proc for the driver plus nvidia-smi for the GPUs, else AMD GPUs from the kfd
    topology; no GPU is a plain answer."""
    from compatsolve.environment import merge

    via_nvml = probe_nvml(nvml)
    if via_nvml.gpus is not None:
        return via_nvml
    fallback = merge(via_nvml, probe_proc(proc), probe_smi(run))
    if fallback.gpus is None:
        # Without an NVIDIA GPU, NVML's absence is expected, not a problem to report as a finding.
        quiet = tuple(replace(n, severity="info") if n.source == "nvml" else n for n in fallback.notices)
        fallback = replace(fallback, notices=quiet)
        amd = probe_kfd(kfd)
        if amd.gpus:
            return merge(fallback, amd)
        no_gpu = Notice(
            source="probe", message="no GPU found (NVML, nvidia-smi and the kfd topology gave none)"
        )
        return merge(fallback, Environment(gpus=(), notices=(no_gpu,), origins={"gpus": "probe"}))
    return fallback


# ---------------------------------------------------------------- toolkit, OS, Python


_NVCC_RELEASE = re.compile(r"release (\d+\.\d+)")


def parse_nvcc_version(text: str) -> str | None:
    match = _NVCC_RELEASE.search(text)
    return match.group(1) if match else None


def probe_toolkit(environ: dict[str, str], run: Runner = run_command) -> Environment:
    home = environ.get("CUDA_HOME") or environ.get("CUDA_PATH")
    nvcc = shutil.which("nvcc") or (str(Path(home) / "bin" / "nvcc") if home else None)
    if nvcc and Path(nvcc).exists():
        out = run([nvcc, "--version"])
        version = parse_nvcc_version(out or "")
        if version:
            return Environment.from_source(f"nvcc ({nvcc})", toolkit_cuda=version, cuda_home=home)
    for root in ([Path(home)] if home else []) + sorted(Path("/usr/local").glob("cuda*")):
        try:
            data = json.loads((root / "version.json").read_text())
            version = data["cuda"]["version"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return Environment.from_source(
            f"{root}/version.json", toolkit_cuda=str(version), cuda_home=home or str(root)
        )
    return Environment.from_source("environment", cuda_home=home)


def probe_cpu_avx(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The newest AVX level of the CPU, from the first "flags" line of /proc/cpuinfo (what the
    kernel lets processes use: a VM whose hypervisor masks AVX shows none); None if unreadable."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return avx_level(value.split())
    except OSError:
        return None
    return None


def probe_system(environ: dict[str, str]) -> Environment:
    libc, libc_version = platform.libc_ver()
    system = platform.system().lower()
    os_name = {"darwin": "macos"}.get(system, system)
    notices = []
    release = platform.release()
    if os_name == "linux" and ("microsoft" in release.lower() or Path("/usr/lib/wsl/lib").is_dir()):
        os_name = "wsl"
        has_libcuda = any(Path("/usr/lib/wsl/lib").glob("libcuda.so*"))
        notices.append(
            Notice(
                source="probe",
                message="WSL2 detected"
                + (
                    " (libcuda from the Windows driver under /usr/lib/wsl/lib)"
                    if has_libcuda
                    else "; no libcuda under /usr/lib/wsl/lib: the Windows NVIDIA driver is not exposed"
                ),
            )
        )
    env_vars = {k: v for k, v in environ.items() if k in ENV_VAR_NAMES or k.startswith(ENV_VAR_PREFIXES)}
    arch = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    return Environment.from_source(
        "probe",
        os_name=os_name,
        os_release=release,
        arch=arch,
        cpu_avx=probe_cpu_avx() if arch == "x86_64" and os_name in ("linux", "wsl") else None,
        glibc=libc_version if libc == "glibc" and libc_version else None,
        env_vars=env_vars,
        notices=tuple(notices),
    )


def probe_python_here() -> Environment:
    site_dirs = [
        Path(p)
        for p in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
        if Path(p).is_dir()
    ]
    return probe_site_packages(
        site_dirs,
        python_version=platform.python_version(),
        python_abi=_abi_tag(),
        executable=sys.executable,
        source="running interpreter",
    )


def _abi_tag() -> str:
    tag = sys.implementation.cache_tag or ""  # "cpython-311"
    name, _, digits = tag.partition("-")
    prefix = {"cpython": "cp", "pypy": "pp"}.get(name, name)
    threaded = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    return f"{prefix}{digits}{threaded}"


def probe_site_packages(
    site_dirs: list[Path],
    *,
    python_version: str | None,
    python_abi: str | None,
    executable: str | None,
    source: str,
) -> Environment:
    base = Environment.from_source(
        source,
        python_version=python_version,
        python_abi=python_abi,
        python_executable=executable,
        torch=installed.read_torch_build(site_dirs),
    )
    packages = installed.read_distributions(site_dirs)
    return base.with_packages(packages.values(), f"installed ({source})", complete=True)


def probe_machine(environ: dict[str, str] | None = None) -> Environment:
    """Everything about this machine except the Python packages."""
    from compatsolve.environment import merge

    environ = dict(os.environ if environ is None else environ)
    return merge(probe_system(environ), probe_gpus(), probe_toolkit(environ))
