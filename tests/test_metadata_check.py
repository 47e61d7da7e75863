"""The requires-dist check agrees with `pip check` on the same environment.

A throwaway venv (with pip, from ensurepip: no network) gets synthetic distributions with
Requires-Dist between them, some broken; pip's own verdict is the reference.
"""

from __future__ import annotations

import re
import subprocess
import venv
from pathlib import Path

import pytest

from compatsolve.metadata_check import check_requirements
from compatsolve.sources.installed import site_dirs_of_interpreter
from compatsolve.sources.probe import probe_site_packages


def _dist(site: Path, name: str, version: str, requires: list[str]) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n\n")
    (info / "RECORD").write_text("")


@pytest.fixture(scope="module")
def env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(root)
    site = next(root.glob("lib/python3*/site-packages"))
    _dist(site, "cs-base", "1.0.0", [])
    _dist(site, "cs-old", "0.9.0", [])
    _dist(site, "cs-app", "2.0.0", ["cs-base>=1.0", "cs-old>=1.0", "cs-missing>=3"])
    _dist(site, "cs-pinned", "1.2.0", ["cs-base==0.5", "cs-windows-only; sys_platform == 'win32'"])
    _dist(site, "cs-extra", "1.0.0", ["cs-missing; extra == 'full'"])
    return root


def test_same_verdicts_as_pip_check(env_dir: Path) -> None:
    python = env_dir / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    pip_pairs = set()
    for line in done.stdout.splitlines():
        conflict = re.match(r"(\S+) \S+ has requirement (\S+?)[<>=!~;]", line)
        missing = re.match(r"(\S+) \S+ requires (\S+?),? which is not installed", line)
        match = conflict or missing
        if match:
            pip_pairs.add((match.group(1).lower(), match.group(2).lower()))
    dirs, version = site_dirs_of_interpreter(python)
    env = probe_site_packages(dirs, python_version=version, python_abi=None, executable=None, source="t")
    ours = {(f.components[0], f.components[1]) for f in check_requirements(env, {})}
    ours = {pair for pair in ours if pair[0].startswith("cs-")}
    pip_pairs = {pair for pair in pip_pairs if pair[0].startswith("cs-")}
    assert pip_pairs == {("cs-app", "cs-old"), ("cs-app", "cs-missing"), ("cs-pinned", "cs-base")}
    assert ours == pip_pairs
