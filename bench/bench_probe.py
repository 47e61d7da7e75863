"""Benchmark: `compatsolve probe --format json` (cold process) beside
`python -m torch.utils.collect_env` on the same machine, in one run; and `compatsolve --help`.

Usage: python bench/bench_probe.py [--runs N] [--python PYTHON_WITH_TORCH]
Prints the median wall time of each and the ratio. collect_env needs torch importable by
--python (default: this interpreter); without it that row is skipped and said so.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(argv: list[str], runs: int) -> float | None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.stderr.write(f"{' '.join(argv)} failed: {done.stderr.decode()[-300:]}\n")
            return None
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    # One warm-up each so both read files from the page cache, then the timed runs.
    probe = [sys.executable, "-m", "compatsolve", "probe", "--format", "json"]
    collect = [args.python, "-m", "torch.utils.collect_env"]
    helptext = [sys.executable, "-m", "compatsolve", "--help"]
    for argv in (probe, collect, helptext):
        subprocess.run(argv, capture_output=True, check=False)
    t_probe = timed(probe, args.runs)
    t_collect = timed(collect, args.runs)
    t_help = timed(helptext, args.runs)
    t_python = timed([sys.executable, "-c", "pass"], args.runs)
    print(f"runs per command: {args.runs} (median wall time, cold processes)")
    print(f"python -c pass (interpreter start)     : {t_python:.3f} s" if t_python else "python: failed")
    print(f"compatsolve --help                      : {t_help:.3f} s" if t_help else "help: failed")
    print(f"compatsolve probe --format json         : {t_probe:.3f} s" if t_probe else "probe: failed")
    if t_collect is None:
        print("python -m torch.utils.collect_env       : skipped (torch not importable by --python)")
    else:
        print(f"python -m torch.utils.collect_env       : {t_collect:.3f} s")
        if t_probe:
            print(f"ratio collect_env / probe               : {t_collect / t_probe:.1f}x")


if __name__ == "__main__":
    main()
