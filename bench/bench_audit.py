"""Benchmark: `compatsolve audit --python VENV/bin/python` beside `VENV/bin/python -m pip check`
on the same environment of ~500 installed distributions, in one run.

The environment is a fresh venv (with pip) into whose site-packages 500 distributions are
written as `*.dist-info/METADATA` + `RECORD` + `INSTALLER`, with Requires-Dist between them (a
few deliberately broken), so both tools read the same metadata. Nothing is executed from it
except pip itself (for `pip check`).

Usage: python bench/bench_audit.py [--runs N] [--dists N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path


def populate(site: Path, count: int) -> None:
    rng = random.Random(0)
    names = [f"bench-pkg-{i:03d}" for i in range(count)]
    for i, name in enumerate(names):
        version = f"{rng.randint(0, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        deps = rng.sample(names[:i], k=min(i, rng.randint(0, 5)))
        lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", "Requires-Python: >=3.8"]
        for dep in deps:
            lines.append(f"Requires-Dist: {dep}>=0.{rng.randint(0, 3)}")
        if i % 97 == 0 and i:
            lines.append(f"Requires-Dist: {names[i - 1]}>=99")  # broken on purpose
        dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("\n".join(lines) + "\n\nA benchmark distribution.\n")
        (dist / "INSTALLER").write_text("pip\n")
        (dist / "RECORD").write_text("")


def timed(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dists", type=int, default=500)
    parser.add_argument("--keep", help="build the venv here and keep it")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="compatsolve-bench-"))
    try:
        if not (root / "bin" / "python").exists():
            venv.EnvBuilder(with_pip=True).create(root)
            site = next(root.glob("lib/python3*/site-packages"))
            populate(site, args.dists)
        python = str(root / "bin" / "python")
        site = next(root.glob("lib/python3*/site-packages"))
        total = sum(1 for _ in site.glob("*.dist-info"))
        pip_check = [python, "-m", "pip", "check"]
        audit = [sys.executable, "-m", "compatsolve", "audit", "--python", python, "--format", "json"]
        for argv in (pip_check, audit):  # warm the page cache
            subprocess.run(argv, capture_output=True, check=False)
        t_pip = timed(pip_check, args.runs)
        t_audit = timed(audit, args.runs)
        print(f"environment: {total} distributions; {args.runs} runs each, median wall time, cold processes")
        print(f"pip check                          : {t_pip:.3f} s")
        print(f"compatsolve audit --python (json)  : {t_audit:.3f} s")
        print(f"ratio audit / pip check            : {t_audit / t_pip:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
