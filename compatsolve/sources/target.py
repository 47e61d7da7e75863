"""`--target SPEC`: a machine described by hand.

Grammar (docs/environment.md): comma-separated `key=value` items; keys gpu, count, cc, vram,
driver, cuda, toolkit, python, os, arch, glibc, avx; a bare first item without `=` is the GPU name.
`A100-80GB,count=8,driver=535.104.05` or `gpu=RTX 4090,cuda=12.4,os=wsl`.
"""

from __future__ import annotations

import math
import re

from compatsolve.environment import AVX_LEVELS, Environment, Gpu, Notice
from compatsolve.errors import InputError
from compatsolve.knowledge import Knowledge
from compatsolve.records import replace

KEYS = ("gpu", "count", "cc", "vram", "driver", "cuda", "toolkit", "python", "os", "arch", "glibc", "avx")
OS_NAMES = {
    "linux": "linux",
    "windows": "windows",
    "win": "windows",
    "wsl": "wsl",
    "wsl2": "wsl",
    "macos": "macos",
    "darwin": "macos",
    "mac": "macos",
}
ARCHES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "sbsa": "aarch64",
}
_DOTTED = re.compile(r"[0-9]+(\.[0-9]+){0,3}")
_CC = re.compile(r"[0-9]{1,2}\.[0-9]")


def parse_target(spec: str, kb: Knowledge, *, lenient: bool = False) -> Environment:
    """Parse a target spec into a partial Environment, or raise InputError saying what is wrong."""
    items = [part.strip() for part in spec.split(",")]
    if not spec.strip() or not any(items):
        raise InputError("--target: empty spec")
    values: dict[str, str] = {}
    for position, item in enumerate(items):
        if not item:
            raise InputError(f"--target {spec!r}: empty item at position {position + 1}")
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            if position != 0:
                raise InputError(f"--target: {item!r} needs key=value (keys: {', '.join(KEYS)})")
            key, value = "gpu", item
        if key not in KEYS:
            raise InputError(f"--target: unknown key {key!r} (keys: {', '.join(KEYS)})")
        if not value:
            raise InputError(f"--target: {key}= needs a value")
        if key in values:
            raise InputError(f"--target: {key} given twice")
        values[key] = value
    return _build(values, kb, lenient)


def _dotted(key: str, value: str, parts: tuple[int, int] = (1, 4)) -> str:
    if not _DOTTED.fullmatch(value) or not parts[0] <= value.count(".") + 1 <= parts[1]:
        raise InputError(f"--target: {key}={value!r} is not a version like 12.1")
    return value


def _positive(key: str, value: str, integer: bool) -> float:
    try:
        number = int(value) if integer else float(value.lower().removesuffix("gib").removesuffix("gb"))
    except ValueError:
        raise InputError(f"--target: {key}={value!r} is not a {'whole ' if integer else ''}number") from None
    if not math.isfinite(number) or number <= 0 or number > 100_000:
        raise InputError(f"--target: {key}={value!r} is out of range")
    return number


def _build(values: dict[str, str], kb: Knowledge, lenient: bool) -> Environment:
    fields: dict[str, object] = {}
    notices: list[Notice] = []
    count = int(_positive("count", values["count"], True)) if "count" in values else None
    cc = values.get("cc")
    if cc is not None and not _CC.fullmatch(cc):
        raise InputError(f"--target: cc={cc!r} is not a compute capability like 8.6")
    vram = _positive("vram", values["vram"], False) if "vram" in values else None
    if "gpu" in values:
        name = values["gpu"]
        if name.lower() in ("none", "cpu"):
            fields["gpus"] = ()
        else:
            model = kb.gpu(name)
            amd = kb.amd_gpu(name) if model is None else None
            if model is None and amd is None:
                close = kb.gpu_suggestions(name)
                hint = (
                    f"; did you mean: {', '.join(close)}?" if close else " (knowledge/gpus.toml lists them)"
                )
                if not lenient:
                    raise InputError(f"--target: unknown GPU {name!r}{hint}")
                notices.append(
                    Notice(
                        source="--target",
                        severity="warning",
                        message=f"GPU {name!r} is not in the GPU catalog{hint}",
                    )
                )
            known = model or amd
            memory = vram if vram is not None else (known.memory_gib if known else None)
            fields["gpus"] = tuple(
                Gpu(
                    index=i,
                    name=known.name if known else name,
                    cc=cc or (model.cc if model else None),
                    catalog_id=known.id if known else None,
                    gfx=amd.gfx if amd else None,
                    memory_total_mib=int(memory * 1024) if memory else None,
                )
                for i in range(count or 1)
            )
    elif cc is not None or count is not None or vram is not None:
        fields["gpus"] = tuple(
            Gpu(
                index=i,
                name=f"GPU (cc {cc or 'unknown'})",
                cc=cc,
                memory_total_mib=int(vram * 1024) if vram else None,
            )
            for i in range(count or 1)
        )
    if "driver" in values:
        fields["driver_version"] = _dotted("driver", values["driver"])
    if "cuda" in values:
        fields["driver_cuda"] = _dotted("cuda", values["cuda"], (2, 3))
    if "toolkit" in values:
        fields["toolkit_cuda"] = _dotted("toolkit", values["toolkit"], (2, 3))
    if "python" in values:
        fields["python_version"] = _dotted("python", values["python"], (2, 3))
        if not values["python"].startswith("3."):
            raise InputError(f"--target: python={values['python']!r}: only Python 3 is supported")
    if "glibc" in values:
        fields["glibc"] = _dotted("glibc", values["glibc"], (2, 2))
    if "os" in values:
        os_name = OS_NAMES.get(values["os"].lower())
        if os_name is None:
            raise InputError(f"--target: os={values['os']!r}: expected linux, windows, wsl or macos")
        fields["os_name"] = os_name
    if "arch" in values:
        arch = ARCHES.get(values["arch"].lower())
        if arch is None:
            raise InputError(f"--target: arch={values['arch']!r}: expected x86_64 or aarch64")
        fields["arch"] = arch
    if "avx" in values:
        level = values["avx"].lower()
        if level not in AVX_LEVELS:
            raise InputError(f"--target: avx={values['avx']!r}: expected {', '.join(AVX_LEVELS)}")
        fields["cpu_avx"] = level
    env = Environment.from_source("--target", **fields)  # type: ignore[arg-type]
    return replace(env, notices=tuple(notices)) if notices else env
