"""Saved environment snapshots (`probe --save FILE`, `--from FILE`): the JSON contract
`compatsolve.environment/1`, documented in docs/json.md."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compatsolve import __version__
from compatsolve.environment import (
    AVX_LEVELS,
    SNAPSHOT_SCHEMA,
    Environment,
    Gpu,
    Notice,
    Package,
    RunSettings,
    TorchBuild,
)
from compatsolve.errors import InputError
from compatsolve.records import fields


def to_document(env: Environment, facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema": SNAPSHOT_SCHEMA,
        "tool": f"compatsolve {__version__}",
        "machine": {
            "gpus": None
            if env.gpus is None
            else [
                {
                    "index": g.index,
                    "name": g.name,
                    "cc": g.cc,
                    "memory_total_mib": g.memory_total_mib,
                    "memory_free_mib": g.memory_free_mib,
                    "catalog_id": g.catalog_id,
                    "gfx": g.gfx,
                }
                for g in env.gpus
            ],
            "driver": {"version": env.driver_version, "cuda": env.driver_cuda},
            "toolkit": {"cuda": env.toolkit_cuda, "cuda_home": env.cuda_home},
            "os": {"name": env.os_name, "release": env.os_release, "arch": env.arch},
            "cpu": {"avx": env.cpu_avx},
            "glibc": env.glibc,
        },
        "python": {"version": env.python_version, "abi": env.python_abi, "executable": env.python_executable},
        "torch": None
        if env.torch is None
        else {
            "version": env.torch.version,
            "cuda": env.torch.cuda,
            "git_version": env.torch.git_version,
            "hip": env.torch.hip,
        },
        "packages": None
        if env.packages is None
        else [
            {
                "name": p.name,
                "version": p.version,
                "requires": list(p.requires),
                "requires_python": p.requires_python,
            }
            for p in sorted(env.packages.values(), key=lambda p: p.name)
        ],
        "packages_complete": env.packages_complete,
        "env": None if env.env_vars is None else dict(sorted(env.env_vars.items())),
        "run": {f.name: getattr(env.run, f.name) for f in fields(RunSettings)},
        "notices": [{"source": n.source, "message": n.message, "severity": n.severity} for n in env.notices],
        "origins": dict(sorted(env.origins.items())),
        "facts": dict(sorted(facts.items())) if facts is not None else None,
    }


class _Reader:
    """Typed access into a parsed document; every error names the file and the path inside it."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, where: str, expected: str) -> InputError:
        return InputError(f"{self.origin}: {where}: expected {expected}")

    def table(self, value: Any, where: str, optional: bool = True) -> dict[str, Any]:
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, "an object")
        return value

    def text(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(where, "a string")
        return value

    def integer(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, "an integer")
        return value


def from_document(doc: Any, origin: str) -> Environment:
    r = _Reader(origin)
    doc = r.table(doc, "document", optional=False)
    if doc.get("schema") != SNAPSHOT_SCHEMA:
        raise r.fail("schema", f"{SNAPSHOT_SCHEMA!r}, got {doc.get('schema')!r}")
    machine = r.table(doc.get("machine"), "machine")
    gpus = None
    if machine.get("gpus") is not None:
        if not isinstance(machine["gpus"], list):
            raise r.fail("machine.gpus", "a list")
        gpus = []
        for i, raw in enumerate(machine["gpus"]):
            w = f"machine.gpus[{i}]"
            raw = r.table(raw, w, optional=False)
            name = r.text(raw.get("name"), f"{w}.name")
            if not name:
                raise r.fail(f"{w}.name", "a GPU name")
            index = r.integer(raw.get("index"), f"{w}.index")
            gpus.append(
                Gpu(
                    index=i if index is None else index,
                    name=name,
                    cc=r.text(raw.get("cc"), f"{w}.cc"),
                    memory_total_mib=r.integer(raw.get("memory_total_mib"), f"{w}.memory_total_mib"),
                    memory_free_mib=r.integer(raw.get("memory_free_mib"), f"{w}.memory_free_mib"),
                    catalog_id=r.text(raw.get("catalog_id"), f"{w}.catalog_id"),
                    gfx=r.text(raw.get("gfx"), f"{w}.gfx"),
                )
            )
    driver = r.table(machine.get("driver"), "machine.driver")
    toolkit = r.table(machine.get("toolkit"), "machine.toolkit")
    os_info = r.table(machine.get("os"), "machine.os")
    cpu_avx = r.text(r.table(machine.get("cpu"), "machine.cpu").get("avx"), "machine.cpu.avx")
    if cpu_avx is not None and cpu_avx not in AVX_LEVELS:
        raise r.fail("machine.cpu.avx", "one of " + ", ".join(AVX_LEVELS))
    python = r.table(doc.get("python"), "python")
    torch_raw = doc.get("torch")
    torch = None
    if torch_raw is not None:
        t = r.table(torch_raw, "torch")
        version = r.text(t.get("version"), "torch.version")
        if version:
            torch = TorchBuild(
                version=version,
                cuda=r.text(t.get("cuda"), "torch.cuda"),
                git_version=r.text(t.get("git_version"), "torch.git_version"),
                hip=r.text(t.get("hip"), "torch.hip"),
            )
    packages = None
    if doc.get("packages") is not None:
        if not isinstance(doc["packages"], list):
            raise r.fail("packages", "a list")
        packages = {}
        for i, raw in enumerate(doc["packages"]):
            w = f"packages[{i}]"
            raw = r.table(raw, w, optional=False)
            name, version = r.text(raw.get("name"), f"{w}.name"), r.text(raw.get("version"), f"{w}.version")
            if not name or not version:
                raise r.fail(w, "name and version")
            requires = raw.get("requires") or []
            if not isinstance(requires, list) or not all(isinstance(x, str) for x in requires):
                raise r.fail(f"{w}.requires", "a list of strings")
            packages[name] = Package(
                name=name,
                version=version,
                requires=tuple(requires),
                requires_python=r.text(raw.get("requires_python"), f"{w}.requires_python"),
            )
    env_vars = doc.get("env")
    if env_vars is not None and (
        not isinstance(env_vars, dict) or not all(isinstance(v, str) for v in env_vars.values())
    ):
        raise r.fail("env", "an object of strings")
    run_raw = r.table(doc.get("run"), "run")
    run_values: dict[str, Any] = {}
    for key in (f.name for f in fields(RunSettings)):
        value = run_raw.get(key)
        if value is not None:
            run_values[key] = (
                r.integer(value, f"run.{key}")
                if key in ("tp", "pp", "context")
                else r.text(value, f"run.{key}")
            )
    raw_notices = doc.get("notices") or []
    if not isinstance(raw_notices, list):
        raise r.fail("notices", "a list")
    notices = tuple(
        Notice(
            source=str(n.get("source", "")),
            message=str(n.get("message", "")),
            severity=str(n.get("severity", "info")),
        )
        for n in raw_notices
        if isinstance(n, dict)
    )
    origins = {str(k): f"{origin} ← {v}" for k, v in r.table(doc.get("origins"), "origins").items()}
    return Environment(
        gpus=tuple(gpus) if gpus is not None else None,
        driver_version=r.text(driver.get("version"), "machine.driver.version"),
        driver_cuda=r.text(driver.get("cuda"), "machine.driver.cuda"),
        toolkit_cuda=r.text(toolkit.get("cuda"), "machine.toolkit.cuda"),
        cuda_home=r.text(toolkit.get("cuda_home"), "machine.toolkit.cuda_home"),
        os_name=r.text(os_info.get("name"), "machine.os.name"),
        os_release=r.text(os_info.get("release"), "machine.os.release"),
        arch=r.text(os_info.get("arch"), "machine.os.arch"),
        cpu_avx=cpu_avx,
        glibc=r.text(machine.get("glibc"), "machine.glibc"),
        python_version=r.text(python.get("version"), "python.version"),
        python_abi=r.text(python.get("abi"), "python.abi"),
        python_executable=r.text(python.get("executable"), "python.executable"),
        torch=torch,
        packages=packages,
        packages_complete=bool(doc.get("packages_complete")) and packages is not None,
        env_vars=dict(env_vars) if env_vars is not None else None,
        run=RunSettings(**run_values),
        notices=notices,
        origins=origins,
    )


def load_snapshot(path: str) -> Environment:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return from_document(doc, path)
