"""Benchmark: what dating a missing name costs `diagnose` (compatsolve/api_history.py), in one
run and one process, alternating:

- baseline: `diagnose` of the message without the API history (`apis=None`);
- cached: with the history opened from its user-cache file (an index, then the blob of each
  project the message asks about), as every run after the first does;
- JSON: with the history parsed from knowledge/snapshot/apis.json.gz, as a first run does.

The messages are Python's own wordings of a missing name, naming real transformers and peft
names (one import, one attribute of a class, which also reads the name -> projects index).

Usage: python bench/bench_api_history.py [--runs N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an install

from compatsolve import diagnose as diagnosing
from compatsolve.api_history import ApiHistory, read_history, shipped_path
from compatsolve.knowledge import load

MESSAGES = (
    "ImportError: cannot import name 'Qwen2ForCausalLM' from 'transformers'",
    "AttributeError: 'LoraModel' object has no attribute '_get_submodules'",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    kb = load()
    path = shipped_path()
    read_history(path)  # the cache file exists from here on

    def from_json() -> ApiHistory:
        return ApiHistory.from_document(json.loads(gzip.decompress(path.read_bytes())))

    for message in MESSAGES:
        times: dict[str, list[float]] = {"baseline": [], "cached": [], "JSON": []}
        for _ in range(args.runs):
            for label, loader in (
                ("baseline", None),
                ("cached", lambda: read_history(path)),
                ("JSON", from_json),
            ):
                start = time.perf_counter()
                diagnosing.diagnose(message, {"pkg.transformers": "4.36.2"}, kb, apis=loader)
                times[label].append(time.perf_counter() - start)
        base = statistics.median(times["baseline"])
        print(message)
        for label, values in times.items():
            median = statistics.median(values)
            print(f"  {label:9} {median * 1000:8.1f} ms  {median / base:5.2f}x baseline")


if __name__ == "__main__":
    main()
