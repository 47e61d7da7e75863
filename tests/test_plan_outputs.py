"""Plan output files: requirements, constraints and PEP 751 pylock.toml, written atomically.

The optional online checks (uv accepts the requirements and reads the pylock) run when
COMPATSOLVE_ONLINE_TESTS=1 and `uv` is installed; they need PyPI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from compatsolve.knowledge import load
from compatsolve.snapshot import load_snapshot

PYPI_ONLY = [
    "--model",
    "qwen2.5-3b-instruct",
    "--stage",
    "inference",
    "--engine",
    "transformers",
    "--target",
    "A100-80GB,driver=550.54.15,python=3.11",
]
# driver 520 supports CUDA <= 11.8: torch's cu118 builds, which live on the PyTorch index only
TORCH_INDEX = [
    "--model",
    "qwen2.5-3b-instruct",
    "--stage",
    "inference",
    "--target",
    "Tesla T4,driver=520.61.05,python=3.10",
]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run(
        [sys.executable, "-m", "compatsolve", "plan", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _pins(text: str) -> dict[str, Requirement]:
    logical = text.replace("\\\n", " ")
    out = {}
    for line in logical.splitlines():
        line = line.split(" --hash")[0].strip()
        if line and not line.startswith(("#", "-")):
            req = Requirement(line)
            out[req.name] = req
    return out


def test_requirements_all_from_pypi_carry_snapshot_hashes(tmp_path: Path) -> None:
    done = run(*PYPI_ONLY, "-o", "req.txt", "--format", "requirements", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "req.txt").read_text()
    assert "--extra-index-url" not in text
    snapshot = load_snapshot()
    assert snapshot is not None
    pins = _pins(text)
    assert {"torch", "transformers", "accelerate"} <= set(pins)
    hashes: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line and not line.startswith((" ", "#", "-")):
            current = line.split("==")[0]
        elif line.strip().startswith("--hash=sha256:"):
            hashes.setdefault(current, []).append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    for name, req in pins.items():
        version = next(iter(req.specifier)).version
        release = snapshot.project(name)[version]
        assert hashes.get(name) and set(hashes[name]) <= {f.sha256 for f in release.wheels}


def test_requirements_with_pytorch_index_build(tmp_path: Path) -> None:
    done = run(*TORCH_INDEX, "-o", "req.txt", "--format", "requirements", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "req.txt").read_text()
    pins = _pins(text)
    torch_version = next(iter(pins["torch"].specifier)).version
    variant = torch_version.split("+")[1]
    assert f"--extra-index-url {load().torch_index_url.format(variant=variant)}" in text
    assert "--hash" not in text  # not every hash is known: pip would refuse a partial set
    for companion in ("torchvision", "torchaudio"):
        if companion in pins:  # the same CUDA build as torch, from the same index
            assert next(iter(pins[companion].specifier)).version.endswith(f"+{variant}")


def test_constraints_have_no_index_or_hash_lines(tmp_path: Path) -> None:
    done = run(*PYPI_ONLY, "-o", "c.txt", "--format", "constraints", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [
        line for line in (tmp_path / "c.txt").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert lines and all("==" in line and "--" not in line for line in lines)


def test_pylock_is_valid_pep751(tmp_path: Path) -> None:
    pylock = pytest.importorskip("packaging.pylock")
    done = run(*PYPI_ONLY, "-o", "pylock.toml", "--format", "pylock", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    import tomllib

    doc = tomllib.loads((tmp_path / "pylock.toml").read_text())
    lock = pylock.Pylock.from_dict(doc)
    assert {p.name for p in lock.packages} >= {"torch", "transformers"}
    assert doc["tool"]["compatsolve"]["hardware"]["gpus"] == ["8.0"]
    for package in doc["packages"]:
        for wheel in package["wheels"]:
            assert len(wheel["hashes"]["sha256"]) == 64


def test_pylock_refused_without_offline_hashes(tmp_path: Path) -> None:
    done = run(*TORCH_INDEX, "-o", "pylock.toml", "--format", "pylock", cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "hashes" in done.stderr
    assert not (tmp_path / "pylock.toml").exists()


def test_existing_output_is_kept_without_force(tmp_path: Path) -> None:
    (tmp_path / "req.txt").write_text("mine\n")
    done = run(*PYPI_ONLY, "-o", "req.txt", "--format", "requirements", cwd=tmp_path)
    assert done.returncode == 2 and "--force" in done.stderr
    assert (tmp_path / "req.txt").read_text() == "mine\n"
    done = run(*PYPI_ONLY, "-o", "req.txt", "--format", "requirements", "--force", cwd=tmp_path)
    assert done.returncode == 0 and "torch==" in (tmp_path / "req.txt").read_text()


online = pytest.mark.skipif(
    os.environ.get("COMPATSOLVE_ONLINE_TESTS") != "1" or shutil.which("uv") is None,
    reason="online check: set COMPATSOLVE_ONLINE_TESTS=1 with uv installed",
)


@online
def test_uv_accepts_requirements_and_reads_pylock(tmp_path: Path) -> None:
    assert run(*PYPI_ONLY, "-o", "req.txt", "--format", "requirements", cwd=tmp_path).returncode == 0
    assert run(*PYPI_ONLY, "-o", "pylock.toml", "--format", "pylock", cwd=tmp_path).returncode == 0
    platform = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
    compiled = subprocess.run(
        ["uv", "pip", "compile", "req.txt", *platform, "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compiled.returncode == 0, compiled.stderr
    dry = subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "--dry-run",
            *platform,
            "--target",
            str(tmp_path / "t"),
            "-r",
            "pylock.toml",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stderr
