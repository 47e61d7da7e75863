"""Benchmark: `diagnose` on long logs, with the literal prefilter (compatsolve/prefilter.py)
beside the same code with the prefilter switched off (every regex run on the whole text), in one
run and one process, alternating.

The logs are synthetic in shape only: N lines of an engine's start-up chatter (the form of vLLM's
INFO lines) and, at the end, a real error line from tests/rule_cases (a rule's message) or a
user-worded one that only a failure family reads. Sizes: 2,000 characters (a pasted traceback)
and 400,000 (the most `diagnose` reads of a log).

Usage: python bench/bench_diagnose.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an install

from compatsolve import diagnose as diagnosing
from compatsolve import families
from compatsolve.knowledge import load

RULE_ERROR = "RuntimeError: CUDA error: no kernel image is available for execution on the device"
FAMILY_ERROR = "the training freezes with 4 GPUs after the first step"
CHATTER = "INFO 05-14 04:44:35 [model_runner.py:243] Loading weights shard {i} of 30 took 1.2 s"


def log(size: int, error: str) -> str:
    lines, total, i = [], 0, 0
    while total < size:
        line = CHATTER.format(i=i)
        lines.append(line)
        total += len(line) + 1
        i += 1
    return "\n".join(lines)[-size:] + "\n" + error


def timed(run: Callable[[str], object], text: str) -> float:
    start = time.perf_counter()
    run(text)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    kb = load()
    real = diagnosing.may_match
    for size in (2_000, 400_000):
        for label, error in (("rule message", RULE_ERROR), ("family message", FAMILY_ERROR)):
            text = log(size, error)
            with_filter: list[float] = []
            without: list[float] = []
            for _ in range(args.runs):  # alternate so both see the same machine load
                diagnosing.may_match = families.may_match = real
                with_filter.append(timed(lambda t: diagnosing.diagnose(t, {}, kb), text))
                diagnosing.may_match = families.may_match = lambda pattern, folded: True
                without.append(timed(lambda t: diagnosing.diagnose(t, {}, kb), text))
            diagnosing.may_match = families.may_match = real
            a, b = statistics.median(with_filter), statistics.median(without)
            print(
                f"{size:>7} chars, {label:<14}: prefilter {a * 1000:8.1f} ms, "
                f"without {b * 1000:8.1f} ms, ratio {a / b:.2f}x"
            )


if __name__ == "__main__":
    main()
