"""Plan output files: requirements, constraints and PEP 751 pylock.toml, written atomically.

The optional online checks (uv accepts the requirements and reads the pylock) run when
COMPATSOLVE_ONLINE_TESTS=1 and `uv` is installed; they need PyPI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from clirun import run_cli
from packaging.requirements import Requirement
from packaging.version import Version

from compatsolve.knowledge import load
from compatsolve.outputs import plan as view
from compatsolve.plan import Plan
from compatsolve.resolve import PYPI_INDEX, Candidate
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
    return run_cli("plan", *args, cwd=cwd)


def _pins(text: str) -> dict[str, Requirement]:
    logical = text.replace("\\\n", " ")
    out = {}
    for line in logical.splitlines():
        line = line.split(" --hash")[0].strip()
        if line and not line.startswith(("#", "-")):
            req = Requirement(line)
            out[req.name] = req
    return out


def test_requirements_leave_hashes_out_while_dependencies_are_open(tmp_path: Path) -> None:
    """pip's hash-checking mode refuses any package without a pinned, hashed line, dependencies
    included (checked with pip 23.2: "In --require-hashes mode, all requirements must have their
    versions pinned with =="), so a plan whose pins need packages outside the snapshot gets no
    hashes and says which packages pip resolves."""
    done = run(*PYPI_ONLY, "-o", "req.txt", "--format", "requirements", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "req.txt").read_text()
    assert "--extra-index-url" not in text and "--hash" not in text
    pins = _pins(text)
    assert {"torch", "transformers", "accelerate"} <= set(pins)
    (note,) = [line for line in text.splitlines() if line.startswith("# no hashes:")]
    left = {name.strip() for name in note.split(":")[-1].split(",")}
    assert left and not (left & set(pins))
    # every name it gives is a real Requires-Dist of some pinned release (snapshot metadata)
    snapshot = load_snapshot()
    assert snapshot is not None
    required = set()
    for name, req in pins.items():
        release = snapshot.project(name)[next(iter(req.specifier)).version]
        required |= {Requirement(line).name.lower().replace("_", "-") for line in release.requires_dist or ()}
    assert left <= required


def _closed_plan() -> Plan:
    """A plan whose pins need nothing outside themselves (real snapshot releases)."""
    snapshot = load_snapshot()
    assert snapshot is not None
    pins = []

    def for_target(filename: str) -> bool:  # CPython 3.11 on x86_64 Linux, as the online check asks
        return (
            "manylinux" in filename
            and "x86_64" in filename
            and ("cp311-cp311" in filename or "abi3" in filename)
        )

    for name in ("safetensors", "numpy"):
        version, release = max(
            (
                (v, r)
                for v, r in snapshot.project(name).items()
                if not r.yanked and any(for_target(w) for w in r.wheel_names)
            ),
            key=lambda vr: Version(vr[0]),
        )
        wheels = tuple(w for w in release.wheel_names if for_target(w))[:1]
        pins.append(Candidate(name, Version(version), None, release, wheels, False, PYPI_INDEX))
    plan = Plan(feasible=True, pins=pins, snapshot_date=snapshot.date)
    plan.packages = [{"name": c.name, "reason": "test"} for c in pins]
    return plan


def test_closed_plan_gets_hashes_and_a_valid_pylock() -> None:
    pylock = pytest.importorskip("packaging.pylock")
    plan = _closed_plan()
    text = view.requirements(plan)
    for cand in plan.pins:
        (wheel,) = cand.wheels
        assert len(wheel.sha256) == 64 and f"--hash=sha256:{wheel.sha256}" in text
    import tomllib

    doc = tomllib.loads(view.pylock(plan, {"python": "3.11", "gpus": []}))
    lock = pylock.Pylock.from_dict(doc)
    assert {p.name for p in lock.packages} == {"safetensors", "numpy"}
    for package, cand in zip(doc["packages"], plan.pins, strict=True):
        assert [w["hashes"]["sha256"] for w in package["wheels"]] == [w.sha256 for w in cand.wheels]


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


def test_pylock_refused_while_dependencies_are_open(tmp_path: Path) -> None:
    """An installer installs a lock's packages and nothing else: no lock that leaves some out."""
    done = run(*PYPI_ONLY, "-o", "pylock.toml", "--format", "pylock", cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "outside the PyPI snapshot" in done.stderr
    assert not (tmp_path / "pylock.toml").exists()


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
    (tmp_path / "pylock.toml").write_text(view.pylock(_closed_plan(), {"python": "3.11", "gpus": []}))
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
