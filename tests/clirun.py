"""Run the compatsolve CLI in a child process, as a user would: one helper for every test module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, stdin: str | None = None, cwd: Path = REPO, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # carries the test's COMPATSOLVE_CACHE (conftest)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("COLUMNS", "120")
    return subprocess.run(
        [sys.executable, "-m", "compatsolve", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )
