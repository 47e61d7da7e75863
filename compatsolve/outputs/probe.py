"""`compatsolve probe` as a table."""

from __future__ import annotations

from typing import Any

from compatsolve.environment import Environment
from compatsolve.outputs.console import console
from compatsolve.stack import STACK_PROJECTS

AVX_TEXT = {"none": "no AVX", "avx": "AVX (no AVX2)", "avx2": "AVX2", "avx512": "AVX2, AVX-512"}


def render(env: Environment, facts: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    origin = env.origins
    table = Table(title="Machine", show_header=True, header_style="bold")
    table.add_column("fact")
    table.add_column("value")
    table.add_column("from", style="dim")
    if env.gpus is None:
        table.add_row("GPUs", "unknown", "")
    elif not env.gpus:
        table.add_row("GPUs", "none found", origin.get("gpus", ""))
    for gpu in env.gpus or ():
        memory = f"{gpu.memory_total_mib / 1024:.1f} GiB" if gpu.memory_total_mib else "memory unknown"
        free = f", {gpu.memory_free_mib / 1024:.1f} GiB free" if gpu.memory_free_mib is not None else ""
        cc = f"sm_{gpu.cc.replace('.', '')}" if gpu.cc else (gpu.gfx or "cc unknown")
        table.add_row(f"GPU {gpu.index}", f"{gpu.name} ({cc}, {memory}{free})", origin.get("gpus", ""))
    for label, value, key in (
        ("driver", env.driver_version, "driver_version"),
        ("driver's max CUDA", env.driver_cuda, "driver_cuda"),
        ("CUDA toolkit (nvcc)", env.toolkit_cuda, "toolkit_cuda"),
        ("CUDA_HOME", env.cuda_home, "cuda_home"),
        ("OS", " ".join(x for x in (env.os_name, env.os_release) if x) or None, "os_name"),
        ("CPU architecture", env.arch, "arch"),
        ("CPU vector extensions", AVX_TEXT.get(env.cpu_avx or ""), "cpu_avx"),
        ("glibc", env.glibc, "glibc"),
        ("Python", " ".join(x for x in (env.python_version, env.python_abi) if x) or None, "python_version"),
    ):
        table.add_row(label, value or "unknown", origin.get(key, ""))
    torch = env.torch_build()
    if torch is not None:
        build = f"CUDA {torch.cuda}" if torch.cuda else (f"ROCm {torch.hip}" if torch.hip else "CPU-only")
        git = f", git {torch.git_version[:10]}" if torch.git_version else ""
        table.add_row(
            "torch build", f"{torch.version} ({build}{git})", origin.get("torch", origin.get("pkg.torch", ""))
        )
    out.print(table)

    if env.packages is not None:
        pkgs = Table(title=f"Stack packages ({len(env.packages)} distributions in all)", header_style="bold")
        pkgs.add_column("package")
        pkgs.add_column("version")
        pkgs.add_column("from", style="dim")
        shown = [n for n in STACK_PROJECTS if n in env.packages]
        shown += sorted(n for n in env.packages if n.startswith("nvidia-"))
        for name in shown:
            pkgs.add_row(name, env.packages[name].version, origin.get(f"pkg.{name}", ""))
        if not shown:
            pkgs.add_row("(none of the LLM stack)", "", "")
        out.print(pkgs)
    if env.env_vars:
        variables = Table(title="Environment variables", header_style="bold")
        variables.add_column("name")
        variables.add_column("value", overflow="fold")
        for key, value in sorted(env.env_vars.items()):
            variables.add_row(key, value)
        out.print(variables)
    if env.run.model or env.run.stage:
        out.print(f"workload: model={env.run.model} stage={env.run.stage} engine={env.run.engine}")
    for notice in env.notices:
        style = {"error": "bold red", "warning": "yellow"}.get(notice.severity, "dim")
        out.print(f"[{style}]{notice.severity}[/]: {notice.message} [dim]({notice.source})[/]")
