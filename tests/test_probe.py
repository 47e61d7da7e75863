"""The live probe's parsers and fallbacks (compatsolve/sources/probe.py), with test doubles.

Real inputs: tests/fixtures/nvidia-smi_query_h100.csv, nvidia-smi_h100.txt and
proc_driver_version_h100.txt were captured on an H100 machine; nvcc_version_13.0.txt on the CPU
machine (tests/fixtures/README.md). Other snippets are synthetic, in the tools' documented layouts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compatsolve.environment import Environment
from compatsolve.sources import probe
from compatsolve.sources.probe import (
    SMI_QUERY,
    parse_nvcc_version,
    parse_proc_driver_version,
    parse_smi_query,
    probe_gpus,
    probe_nvml,
    probe_proc,
    probe_smi,
    probe_system,
    probe_toolkit,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# ------------------------------------------------------------------ fake NVML


class FakeNVMLError(Exception):
    """Shaped like pynvml.NVMLError: str() is NVML's message."""


def fake_nvml(
    gpus=(("NVIDIA A100-SXM4-80GB", (8, 0), 80 * 2**30, 79 * 2**30),),
    *,
    driver=b"535.104.05",
    cuda=12020,
    init_error: Exception | None = None,
    count_error: Exception | None = None,
    calls: list[str] | None = None,
) -> SimpleNamespace:
    log = calls if calls is not None else []

    def init() -> None:
        log.append("init")
        if init_error is not None:
            raise init_error

    def count() -> int:
        if count_error is not None:
            raise count_error
        return len(gpus)

    return SimpleNamespace(
        nvmlInit=init,
        nvmlShutdown=lambda: log.append("shutdown"),
        nvmlSystemGetDriverVersion=lambda: driver,
        nvmlSystemGetCudaDriverVersion=lambda: cuda,
        nvmlDeviceGetCount=count,
        nvmlDeviceGetHandleByIndex=lambda i: ("handle", i),
        nvmlDeviceGetName=lambda h: gpus[h[1]][0],
        nvmlDeviceGetCudaComputeCapability=lambda h: gpus[h[1]][1],
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=gpus[h[1]][2], free=gpus[h[1]][3], used=0),
    )


@pytest.mark.parametrize(
    ("driver", "cuda", "driver_cuda"),
    [
        (b"535.104.05", 12020, "12.2"),
        ("550.54.14", 12040, "12.4"),
        ("580.159.04", 13000, "13.0"),
        ("470.82.01", 11040, "11.4"),
    ],
)
def test_probe_nvml_reads_gpus_and_driver(driver, cuda: int, driver_cuda: str) -> None:
    calls: list[str] = []
    env = probe_nvml(fake_nvml(driver=driver, cuda=cuda, calls=calls))
    assert env.driver_version == (driver.decode() if isinstance(driver, bytes) else driver)
    assert env.driver_cuda == driver_cuda
    assert env.gpus is not None and len(env.gpus) == 1
    gpu = env.gpus[0]
    assert (gpu.index, gpu.name, gpu.cc) == (0, "NVIDIA A100-SXM4-80GB", "8.0")
    assert (gpu.memory_total_mib, gpu.memory_free_mib) == (80 * 1024, 79 * 1024)
    assert env.origins["gpus"] == "nvml"
    assert calls == ["init", "shutdown"]


def test_probe_nvml_several_gpus_and_bytes_names() -> None:
    gpus = (
        (b"NVIDIA GeForce RTX 4090", (8, 9), 24 * 2**30, 2**30),
        (b"NVIDIA GeForce RTX 3090", (8, 6), 24 * 2**30, 0),
    )
    env = probe_nvml(fake_nvml(gpus))
    assert env.gpus is not None
    assert [(g.index, g.name, g.cc) for g in env.gpus] == [
        (0, "NVIDIA GeForce RTX 4090", "8.9"),
        (1, "NVIDIA GeForce RTX 3090", "8.6"),
    ]
    assert env.facts()["gpu.cc"] == "8.6"  # the lowest compute capability


def test_probe_nvml_zero_gpus_is_known_none() -> None:
    env = probe_nvml(fake_nvml(()))
    assert env.gpus == ()


def test_nvml_driver_library_mismatch_is_an_error_notice() -> None:
    env = probe_nvml(fake_nvml(init_error=FakeNVMLError("Driver/library version mismatch")))
    assert env.gpus is None and env.driver_version is None
    assert len(env.notices) == 1
    notice = env.notices[0]
    assert notice.severity == "error" and notice.source == "nvml"
    assert "Driver/library version mismatch" in notice.message
    assert "reboot" in notice.message.lower()


@pytest.mark.parametrize(
    "error",
    [
        FakeNVMLError("NVML Shared Library Not Found"),
        OSError("libnvidia-ml.so.1: cannot open shared object file"),
        FakeNVMLError(""),
    ],
)
def test_nvml_other_init_failures_are_warnings(error: Exception) -> None:
    env = probe_nvml(fake_nvml(init_error=error))
    assert env.gpus is None
    assert [n.severity for n in env.notices] == ["warning"]
    assert env.notices[0].message.startswith("NVML failed: ")
    assert len(env.notices[0].message) > len("NVML failed: ")  # an empty message still says what


def test_nvml_failure_mid_query_shuts_down() -> None:
    calls: list[str] = []
    env = probe_nvml(fake_nvml(count_error=FakeNVMLError("Unknown Error"), calls=calls))
    assert env.gpus is None
    assert env.notices[0].severity == "warning" and "Unknown Error" in env.notices[0].message
    assert calls == ["init", "shutdown"]


def test_nvml_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    env = probe_nvml()
    assert env.gpus is None
    assert [n.severity for n in env.notices] == ["info"]
    assert "nvidia-ml-py" in env.notices[0].message


# ------------------------------------------------------------------ nvidia-smi --query-gpu


def test_parse_smi_query_real_fixture() -> None:
    text = _fixture("nvidia-smi_query_h100.csv")
    rows = [line.split(", ") for line in text.strip().splitlines()]
    gpus, driver = parse_smi_query(text)
    assert len(gpus) == len(rows)
    for gpu, row in zip(gpus, rows, strict=True):
        assert (str(gpu.index), gpu.name, gpu.cc) == (row[0], row[1], row[2])
        assert gpu.memory_total_mib == int(row[3]) and gpu.memory_free_mib == int(row[4])
    assert driver == rows[-1][5]


@pytest.mark.parametrize(
    ("text", "expected", "driver"),
    [
        (
            "0, NVIDIA A100-SXM4-80GB, 8.0, 81920, 81000, 535.104.05\n"
            "1, NVIDIA A100-SXM4-80GB, 8.0, 81920, 80000, 535.104.05\n",
            [
                (0, "NVIDIA A100-SXM4-80GB", "8.0", 81920, 81000),
                (1, "NVIDIA A100-SXM4-80GB", "8.0", 81920, 80000),
            ],
            "535.104.05",
        ),
        (
            "0, NVIDIA GeForce RTX 4090, [N/A], [N/A], [N/A], 550.54.14",
            [(0, "NVIDIA GeForce RTX 4090", None, None, None)],
            "550.54.14",
        ),
        (
            "0, Tesla T4, 7.5, 15360.0, 15000.5, 470.82.01",
            [(0, "Tesla T4", "7.5", 15360, 15000)],
            "470.82.01",
        ),
        (
            "index, name, compute_cap, memory.total, memory.free, driver_version\n"
            "0, Tesla T4, 7.5, 15360, 15360, 470.82.01",
            [(0, "Tesla T4", "7.5", 15360, 15360)],
            "470.82.01",
        ),
        ('Field "compute_cap" is not a valid field to query.', [], None),
        ("0, Tesla T4, 7.5\n", [], None),
        ("", [], None),
    ],
)
def test_parse_smi_query_synthetic(text: str, expected: list, driver: str | None) -> None:
    gpus, found_driver = parse_smi_query(text)
    assert [(g.index, g.name, g.cc, g.memory_total_mib, g.memory_free_mib) for g in gpus] == expected
    assert found_driver == driver


@pytest.mark.parametrize(
    "row",
    [
        "0, Tesla T4, 7.5, nan, 15000, 470.82.01",
        "0, Tesla T4, 7.5, inf, 1, 470.82.01",
        "0, Tesla T4, 7.5, 15360, -inf, 470.82.01",
    ],
)
def test_parse_smi_query_non_finite_memory_is_unknown(row: str) -> None:
    """`float()` accepts nan/inf, so _is_number passes them and int() raises: must read as unknown."""
    gpus, _driver = parse_smi_query(row)
    assert len(gpus) == 1 and gpus[0].name == "Tesla T4"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.text(max_size=8),
                st.sampled_from(
                    ["0", "1", "8.0", "81920", "[N/A]", "nan", "inf", "-1", "1e400", "535.104.05"]
                ),
            ),
            max_size=8,
        ).map(", ".join),
        max_size=5,
    ).map("\n".join)
)
def test_parse_smi_query_never_raises(text: str) -> None:
    gpus, _driver = parse_smi_query(text)
    assert all(g.memory_total_mib is None or isinstance(g.memory_total_mib, int) for g in gpus)


# ------------------------------------------------------------------ /proc and nvcc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
            "GCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04)\n",
            "535.104.05",
        ),
        ("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  550.54.15  Release Build\n", "550.54.15"),
        ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.82\n", "470.82"),
        ("GCC version:  gcc version 12.2.0\n", None),
        ("", None),
    ],
)
def test_parse_proc_driver_version(text: str, expected: str | None) -> None:
    assert parse_proc_driver_version(text) == expected


def test_parse_proc_driver_version_real_fixture() -> None:
    text = _fixture("proc_driver_version_h100.txt")
    expected = re.search(r"Kernel Module.*?\s(\d+\.\d+\.\d+)\s", text).group(1)
    assert parse_proc_driver_version(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Cuda compilation tools, release 11.8, V11.8.89\nBuild cuda_11.8.r11.8/compiler.31833905_0", "11.8"),
        ("Cuda compilation tools, release 12.4, V12.4.131", "12.4"),
        ("nvcc: command not found", None),
        ("", None),
    ],
)
def test_parse_nvcc_version(text: str, expected: str | None) -> None:
    assert parse_nvcc_version(text) == expected


def test_parse_nvcc_version_real_fixture() -> None:
    text = _fixture("nvcc_version_13.0.txt")
    assert parse_nvcc_version(text) == re.search(r"release (\d+\.\d+),", text).group(1)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_text_parsers_never_raise(text: str) -> None:
    parse_proc_driver_version(text)
    parse_nvcc_version(text)
    parse_smi_query(text)


# ------------------------------------------------------------------ fallback order


class FakeRunner:
    def __init__(self, outputs: dict[str, str | None]) -> None:
        self.outputs = outputs
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> str | None:
        self.calls.append(argv)
        key = " ".join(argv[1:]) or "header"
        return self.outputs.get(key)


QUERY_ARGS = f"--query-gpu={SMI_QUERY} --format=csv,noheader,nounits"


def _real_smi_runner() -> FakeRunner:
    return FakeRunner(
        {QUERY_ARGS: _fixture("nvidia-smi_query_h100.csv"), "header": _fixture("nvidia-smi_h100.txt")}
    )


def test_probe_gpus_prefers_nvml(tmp_path: Path) -> None:
    runner = _real_smi_runner()
    env = probe_gpus(fake_nvml(), run=runner, proc=tmp_path / "version")
    assert env.gpus is not None and env.gpus[0].name == "NVIDIA A100-SXM4-80GB"
    assert runner.calls == []  # nvidia-smi is not even run when NVML answered


def test_probe_gpus_falls_back_to_proc_and_smi(tmp_path: Path) -> None:
    proc = tmp_path / "version"
    proc.write_text(_fixture("proc_driver_version_h100.txt"))
    runner = _real_smi_runner()
    env = probe_gpus(
        fake_nvml(init_error=FakeNVMLError("Driver/library version mismatch")), run=runner, proc=proc
    )
    query = _fixture("nvidia-smi_query_h100.csv").strip().split(", ")
    header_cuda = re.search(r"CUDA Version: (\S+)", _fixture("nvidia-smi_h100.txt")).group(1)
    assert env.gpus is not None and [g.name for g in env.gpus] == [query[1]]
    assert env.gpus[0].cc == query[2]
    assert env.driver_version == parse_proc_driver_version(proc.read_text()) == query[5]
    assert env.driver_cuda == header_cuda
    assert env.origins["gpus"] == "nvidia-smi"
    assert [c[1:] for c in runner.calls] == [QUERY_ARGS.split(), []]
    # the NVML failure is kept, as an error
    assert any(n.source == "nvml" and n.severity == "error" for n in env.notices)


def test_probe_gpus_proc_only(tmp_path: Path) -> None:
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 2023\n")
    env = probe_gpus(
        fake_nvml(init_error=OSError("no libnvidia-ml")),
        run=FakeRunner({}),
        proc=proc,
        kfd=tmp_path / "no-kfd",
    )
    assert env.driver_version == "535.104.05"
    assert env.origins["driver_version"] == "/proc/driver/nvidia/version"
    assert env.gpus == ()  # known: none found
    messages = [n.message for n in env.notices]
    assert any("nvidia-smi failed" in m for m in messages)
    assert any("no GPU found" in m for m in messages)


def test_probe_gpus_nothing_at_all(tmp_path: Path) -> None:
    env = probe_gpus(
        fake_nvml(init_error=OSError("no lib")),
        run=FakeRunner({}),
        proc=tmp_path / "missing",
        kfd=tmp_path / "none",
    )
    assert env.gpus == () and env.driver_version is None
    assert env.facts()["gpu.count"] == 0


def test_probe_smi_header_missing(tmp_path: Path) -> None:
    runner = FakeRunner({QUERY_ARGS: "0, Tesla T4, 7.5, 15360, 15360, 470.82.01\n"})
    env = probe_smi(runner)
    assert env.gpus is not None and env.driver_version == "470.82.01" and env.driver_cuda is None


def test_probe_proc_unreadable(tmp_path: Path) -> None:
    assert probe_proc(tmp_path / "nope") == Environment()


# ------------------------------------------------------------------ toolkit and system


def test_probe_toolkit_nvcc_output(tmp_path: Path) -> None:
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "nvcc").write_text("")
    runner = FakeRunner({"--version": _fixture("nvcc_version_13.0.txt")})
    env = probe_toolkit({"CUDA_HOME": str(home)}, run=runner)
    assert env.toolkit_cuda == parse_nvcc_version(_fixture("nvcc_version_13.0.txt"))
    assert env.cuda_home == str(home)


def test_probe_toolkit_version_json_fallback(tmp_path: Path) -> None:
    home = tmp_path / "cuda-12.1"
    home.mkdir()
    (home / "version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK", "version": "12.1.1"}}))
    env = probe_toolkit({"CUDA_HOME": str(home)}, run=FakeRunner({}))
    assert env.toolkit_cuda == "12.1.1"
    assert env.facts()["toolkit.cuda"] == "12.1"


def test_probe_system_env_vars() -> None:
    environ = {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "NCCL_P2P_DISABLE": "1",
        "VLLM_USE_V1": "0",
        "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "x",
        "PATH": "/bin",
    }
    env = probe_system(environ)
    assert env.env_vars == {"CUDA_VISIBLE_DEVICES": "0,1", "NCCL_P2P_DISABLE": "1", "VLLM_USE_V1": "0"}
    facts = env.facts()
    assert facts["env.NCCL_P2P_DISABLE"] == "1"
    assert facts["_env_complete"] is True
    assert facts["os.name"] in ("linux", "wsl", "macos", "windows")


def test_run_command_missing_tool() -> None:
    assert probe.run_command(["/nonexistent/definitely-not-a-tool", "--version"]) is None
    assert probe.run_command(["false"]) is None


# AMD GPUs from the kfd topology. The tree is written here in the format the amdgpu driver
# exposes (/sys/class/kfd/kfd/topology/nodes/N/properties: one "name value" per line; CPU nodes
# have gfx_target_version 0). The version-to-target pairs are those tabbyAPI's ROCm guide lists
# (https://github.com/theroyallab/tabbyAPI/wiki/11.-ROCm): 110000 gfx1100, 100302 gfx1032,
# 120001 gfx1201, 110501 gfx1151.


def _kfd(root: Path, versions: list[int]) -> Path:
    for i, version in enumerate(versions):
        node = root / str(i)
        node.mkdir(parents=True)
        node.joinpath("properties").write_text(
            f"cpu_cores_count 0\ngfx_target_version {version}\nsimd_count 8\n"
        )
    return root


def test_gfx_target_from_the_kfd_version() -> None:
    from compatsolve.sources.probe import gfx_target

    pairs = {110000: "gfx1100", 100302: "gfx1032", 120001: "gfx1201", 110501: "gfx1151"}
    assert {v: gfx_target(v) for v in pairs} == pairs
    assert gfx_target(0) is None and gfx_target(101600) is None


def test_probe_kfd_lists_gpu_nodes_only(tmp_path: Path) -> None:
    from compatsolve.knowledge import load
    from compatsolve.sources.probe import probe_kfd

    env = probe_kfd(_kfd(tmp_path / "nodes", [0, 100302, 110000]))
    assert [(g.index, g.gfx) for g in env.gpus or ()] == [(0, "gfx1032"), (1, "gfx1100")]
    assert env.origins["gpus"] == "kfd"
    kb = load()
    facts = env.facts(kb)
    assert facts["gpu.vendor"] == "amd" and facts["gpu.gfx"] == "gfx1032" and facts["gpu.count"] == 2
    assert facts["gpu.arch"] == next(g.architecture for g in kb.amd_gpus if g.gfx == "gfx1032")
    assert probe_kfd(tmp_path / "absent").gpus is None
    assert probe_kfd(_kfd(tmp_path / "cpu-only", [0])).gpus is None


def test_probe_gpus_falls_back_to_kfd_without_nvidia(tmp_path: Path) -> None:
    env = probe_gpus(
        fake_nvml(init_error=OSError("no libnvidia-ml")),
        run=FakeRunner({}),
        proc=tmp_path / "missing",
        kfd=_kfd(tmp_path / "nodes", [0, 110501]),
    )
    assert [g.gfx for g in env.gpus or ()] == ["gfx1151"]
    assert not any("no GPU found" in n.message for n in env.notices)
