"""Layering the sources into the environment a command judges (compatsolve/sources/assemble.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from compatsolve.environment import Environment, Gpu, RunSettings
from compatsolve.errors import InputError
from compatsolve.sources.assemble import EnvironmentRequest, build_environments, finish, max_cuda_for_driver
from compatsolve.sources.snapshot import to_document

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
with (REPO / "knowledge" / "cuda.toml").open("rb") as _handle:
    CUDA = tomllib.load(_handle).get("cuda", [])

REPORT = (
    "PyTorch version: 2.3.0+cu121\nCUDA used to build PyTorch: 12.1\nNvidia driver version: 535.104.05\n"
    "GPU 0: Tesla T4\n[pip3] vllm==0.5.0\n"
)


def expected_max_cuda(driver: str, key: str = "min_driver_linux") -> str | None:
    """Independent oracle: the newest CUDA in knowledge/cuda.toml whose minimum driver is <= driver."""
    fits = [Version(c["version"]) for c in CUDA if c.get(key) and Version(c[key]) <= Version(driver)]
    return str(max(fits)) if fits else None


@pytest.fixture
def report(tmp_path: Path) -> str:
    path = tmp_path / "report.txt"
    path.write_text(REPORT)
    return str(path)


def test_target_and_with_win_over_report(kb, report: str) -> None:
    (env,) = build_environments(
        EnvironmentRequest(
            reports=(report,), targets=("A100-80GB,driver=550.54.14",), with_packages=("vllm==0.5.3",)
        ),
        kb,
    )
    assert env.driver_version == "550.54.14" and env.origins["driver_version"] == "--target"
    assert env.gpus is not None and env.gpus[0].catalog_id == kb.gpu("A100-80GB").id
    assert env.package("vllm").version == "0.5.3" and env.origins["pkg.vllm"] == "--with"
    assert env.package("torch").version == "2.3.0+cu121"  # still from the report
    assert env.driver_cuda == expected_max_cuda("550.54.14")


def test_report_alone_is_the_machine(kb, report: str) -> None:
    (env,) = build_environments(EnvironmentRequest(reports=(report,)), kb)
    assert env.driver_version == "535.104.05"
    assert env.gpus is not None and env.gpus[0].cc == kb.gpu("Tesla T4").cc  # finish() fills the catalog
    assert env.driver_cuda == expected_max_cuda("535.104.05")
    assert env.origins["driver_cuda"].startswith("derived from the driver")


def test_several_targets_make_a_fleet(kb) -> None:
    envs = build_environments(EnvironmentRequest(targets=("T4", "A100-80GB")), kb)
    assert [e.gpus[0].catalog_id for e in envs] == [kb.gpu("T4").id, kb.gpu("A100-80GB").id]


def test_from_snapshot_then_with(kb, tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text(
        json.dumps(
            to_document(Environment(driver_version="535.104.05", gpus=(Gpu(index=0, name="Tesla T4"),)))
        )
    )
    (env,) = build_environments(
        EnvironmentRequest(from_files=(str(snap),), with_packages=("torch==2.4.0+cu121",)), kb
    )
    assert env.driver_version == "535.104.05" and env.package("torch").version == "2.4.0+cu121"


def test_unknown_model_strict_and_lenient(kb) -> None:
    request = EnvironmentRequest(targets=("T4",), run=RunSettings(model="qwen9-nonexistent"))
    with pytest.raises(InputError, match="unknown model"):
        build_environments(request, kb)
    lenient = EnvironmentRequest(targets=("T4",), run=RunSettings(model="qwen9-nonexistent"), lenient=True)
    (env,) = build_environments(lenient, kb)
    assert env.run.model is None
    assert any(n.source == "--model" and n.severity == "warning" for n in env.notices)


def test_known_model_resolves_to_its_id(kb) -> None:
    card = kb.models[0]
    (env,) = build_environments(EnvironmentRequest(targets=("T4",), run=RunSettings(model=card.hf_repo)), kb)
    assert env.run.model == card.id


def test_site_packages_must_be_a_directory(kb, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        build_environments(EnvironmentRequest(targets=("T4",), site_packages=(str(tmp_path / "nope"),)), kb)


@pytest.mark.parametrize("driver", ["470.82.01", "535.104.05", "550.54.14", "580.65.06", "999.1"])
def test_max_cuda_for_driver_linux(kb, driver: str) -> None:
    assert max_cuda_for_driver(driver, "linux", kb) == expected_max_cuda(driver)


@pytest.mark.parametrize("driver", ["471.11", "551.61"])
def test_max_cuda_for_driver_windows(kb, driver: str) -> None:
    assert max_cuda_for_driver(driver, "windows", kb) == expected_max_cuda(driver, "min_driver_windows")


@pytest.mark.parametrize("driver", ["banana", "1.0"])
def test_max_cuda_for_driver_unknown(kb, driver: str) -> None:
    assert max_cuda_for_driver(driver, "linux", kb) is None


def test_finish_keeps_explicit_driver_cuda(kb) -> None:
    env = finish(Environment(driver_version="535.104.05", driver_cuda="12.0"), kb)
    assert env.driver_cuda == "12.0"
