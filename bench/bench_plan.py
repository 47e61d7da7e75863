"""Benchmark: `compatsolve plan` (cold process) beside `rigsolve solve` (from PyPI) on the same
request, in one run.

The closest request both can answer: a torch + transformers stack for one Tesla T4 with driver
535.104.05 and Python 3.10. rigsolve's bundled matrix has no vLLM and no accelerate, so it is
asked for torch + transformers; compatsolve plans the transformers inference stack for a model
(torch, transformers, accelerate and their stack dependencies, plus runtime settings). rigsolve must be
installed in some environment: pass its executable with --rigsolve (e.g. a venv made with
`python -m venv /tmp/rig && /tmp/rig/bin/pip install rigsolve`).

Both tools should run the way users run them: installed by pip into a virtual environment (pip
byte-compiles the modules at install time). Pass such an install with --compatsolve (e.g.
`python -m venv /tmp/cs && /tmp/cs/bin/pip install .`); without it, this interpreter runs
`-m compatsolve`, which is slower when bytecode is not written (PYTHONDONTWRITEBYTECODE) and when
the interpreter's site-packages has .pth files that import at start-up.

Usage: python bench/bench_plan.py --rigsolve /tmp/rig/bin/rigsolve [--compatsolve /tmp/cs/bin/compatsolve]
       [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET = "T4,driver=535.104.05,python=3.10"


def run_once(argv: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    code = subprocess.run(argv, capture_output=True, check=False).returncode
    return time.perf_counter() - start, code


def timed_pair(first: list[str], second: list[str], runs: int) -> tuple[list[float], list[float], int, int]:
    """Alternate the two commands run by run, so that drifts of the machine (CPU frequency, a
    neighbour's load on a shared host) fall on both alike."""
    a_times, b_times, a_code, b_code = [], [], 0, 0
    for _ in range(runs):
        elapsed, a_code = run_once(first)
        a_times.append(elapsed)
        elapsed, b_code = run_once(second)
        b_times.append(elapsed)
    return a_times, b_times, a_code, b_code


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rigsolve", required=True)
    parser.add_argument("--compatsolve", help="an installed compatsolve executable (default: -m here)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    launcher = [args.compatsolve] if args.compatsolve else [sys.executable, "-m", "compatsolve"]
    plan = [
        *launcher,
        "plan",
        "--model",
        "qwen2.5-1.5b-instruct",
        "--stage",
        "inference",
        "--engine",
        "transformers",
        "--target",
        TARGET,
        "--format",
        "json",
    ]
    rig = [
        args.rigsolve,
        "solve",
        "--want",
        "torch",
        "transformers",
        "--target",
        TARGET + ",linux",
        "--output",
        "json",
    ]
    for argv in (plan, rig):
        subprocess.run(argv, capture_output=True, check=False)
    plan_times, rig_times, rc_plan, rc_rig = timed_pair(plan, rig, args.runs)
    t_plan, t_rig = statistics.median(plan_times), statistics.median(rig_times)
    ratios = sorted(p / r for p, r in zip(plan_times, rig_times, strict=True))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    print(
        f"request: torch + transformers stack on {TARGET}; {args.runs} runs each, alternating, cold processes"
    )
    print(f"compatsolve plan   : {t_plan:.3f} s median (exit {rc_plan}) via {' '.join(launcher)}")
    print(f"rigsolve solve     : {t_rig:.3f} s median (exit {rc_rig})")
    print(
        f"ratio plan / rigsolve: {t_plan / t_rig:.2f}x of the medians; "
        f"run by run {quartiles[1]:.2f}x (quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f})"
    )


if __name__ == "__main__":
    main()
