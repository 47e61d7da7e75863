"""Real-hardware check of the NVML probe and its nvidia-smi fallback: runs only where an NVIDIA
GPU and nvidia-smi exist (the GPU machine), and is skipped elsewhere (CI has no GPU)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from compatsolve.sources import probe

pytestmark = pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no NVIDIA GPU here")


def _smi_rows() -> list[list[str]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={probe.SMI_QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()]


def test_nvml_probe_agrees_with_nvidia_smi() -> None:
    env = probe.probe_nvml()
    rows = _smi_rows()
    assert env.gpus is not None and len(env.gpus) == len(rows)
    for gpu, row in zip(env.gpus, rows, strict=True):
        assert gpu.name == row[1]
        assert gpu.cc == row[2]
        assert gpu.memory_total_mib == pytest.approx(int(row[3]), abs=2)
    assert env.driver_version == rows[0][5]
    header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=True).stdout
    assert f"CUDA Version: {env.driver_cuda}" in header


def test_fallback_without_nvml_matches_nvml() -> None:
    class Broken:
        @staticmethod
        def nvmlInit() -> None:
            raise OSError("NVML Shared Library Not Found")

    via_nvml = probe.probe_nvml()
    fallback = probe.probe_gpus(nvml=Broken)  # type: ignore[arg-type]
    assert fallback.gpus is not None and via_nvml.gpus is not None
    assert [(g.name, g.cc) for g in fallback.gpus] == [(g.name, g.cc) for g in via_nvml.gpus]
    assert fallback.driver_version == via_nvml.driver_version
    assert fallback.driver_cuda == via_nvml.driver_cuda
