"""Pasted environment reports (compatsolve/sources/report.py).

The real fixtures under tests/fixtures/ were captured from real tools (see tests/fixtures/README.md);
each test reads the value it expects out of the fixture text with its own small regex, so the
assertions follow the fixture rather than a number typed here. The nvidia-smi / nvcc / conda /
vLLM snippets further down are SYNTHETIC: written by hand in the documented layouts of those tools.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from compatsolve.environment import Environment
from compatsolve.sources.report import parse_report

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _one(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.M)
    assert match, f"fixture lacks {pattern!r}"
    return match.group(1)


def _parse(name: str, kb) -> Environment:
    return parse_report(_read(name), name, kb)


# ------------------------------------------------------------------ real fixtures: collect_env


@pytest.mark.parametrize("name", ["collect_env_cpu_torch2.13.txt", "collect_env_h100_torch2.11_cu130.txt"])
def test_collect_env_common_facts(kb, name: str) -> None:
    text = _read(name)
    env = _parse(name, kb)
    torch = env.package("torch")
    assert torch is not None and torch.version == _one(r"^PyTorch version: (\S+)$", text)
    assert env.python_version == _one(r"^Python version: (3\.\d+\.\d+)", text)
    assert env.glibc == _one(r"^Libc version: glibc-(\d+\.\d+)", text)
    assert env.os_name == "linux"  # both fixtures say "OS: ... Linux distribution"
    assert env.arch == _one(r"^OS: .*\((\w+)\)$", text)
    assert env.toolkit_cuda == _one(r"^CUDA runtime version: (\d+\.\d+\.\d+)", text)
    assert env.origins["pkg.torch"] == f"{name} (collect_env)"
    assert any("recognised: collect_env" in n.message for n in env.notices)
    facts = env.facts(kb)
    assert facts["pkg.torch"] == _one(r"^PyTorch version: ([\d.]+)", text)


def test_collect_env_cpu_build(kb) -> None:
    name = "collect_env_cpu_torch2.13.txt"
    text = _read(name)
    env = _parse(name, kb)
    assert "Could not collect" in _one(r"^GPU models and configuration: (.*)$", text)
    assert env.gpus is None  # "Could not collect" is not a GPU name
    assert env.driver_version is None  # "Nvidia driver version: Could not collect"
    assert _one(r"^PyTorch version: \S+\+(\w+)$", text) == "cpu"
    facts = env.facts(kb)
    assert facts["torch.variant"] == "cpu"
    assert "torch.cuda" not in facts
    # only the [pip3] lines of the report are packages; nothing else is invented
    pip_lines = re.findall(r"^\[pip3\] (\S+)==", text, re.M)
    assert set(env.packages or {}) == {canonicalize_name(n) for n in pip_lines}


def test_collect_env_h100(kb) -> None:
    name = "collect_env_h100_torch2.11_cu130.txt"
    text = _read(name)
    env = _parse(name, kb)
    gpu_name = _one(r"^GPU models and configuration: GPU 0: (.+?)\s*$", text)
    assert env.gpus is not None and [g.name for g in env.gpus] == [gpu_name]
    model = kb.gpu(gpu_name)
    assert model is not None and env.gpus[0].cc == model.cc and env.gpus[0].catalog_id == model.id
    assert env.driver_version == _one(r"^Nvidia driver version: (\S+)$", text)
    built = _one(r"^CUDA used to build PyTorch: (\d+\.\d+)$", text)
    assert env.torch is not None and env.torch.cuda == built
    facts = env.facts(kb)
    assert facts["torch.cuda"] == built
    assert facts["torch.variant"] == "cu" + built.replace(".", "")
    assert facts["gpu.count"] == 1
    # the "PyTorch version:" line wins over the "[pip3] torch==" line (it keeps the local label)
    assert env.package("torch").version == _one(r"^PyTorch version: (\S+)$", text)
    for pkg_name, version in re.findall(r"^\[pip3\] (\S+)==(\S+)$", text, re.M):
        if canonicalize_name(pkg_name) != "torch":
            assert env.package(pkg_name).version == version
    has_cu13 = bool(re.search(r"^\[pip3\] nvidia-\S+-cu13==", text, re.M))
    assert facts["nvidia.cu13"] is has_cu13


# ------------------------------------------------------------------ real fixtures: HF env


def test_transformers_env(kb) -> None:
    name = "transformers_env_cpu.txt"
    text = _read(name)
    env = _parse(name, kb)
    assert env.package("transformers").version == _one(r"^- `transformers` version: (\S+)$", text)
    assert env.package("huggingface-hub").version == _one(r"^- Huggingface_hub version: (\S+)$", text)
    assert env.package("safetensors").version == _one(r"^- Safetensors version: (\S+)$", text)
    assert env.package("accelerate").version == _one(r"^- Accelerate version: (\S+)$", text)
    assert env.python_version == _one(r"^- Python version: (\S+)$", text)
    assert env.glibc == _one(r"^- Platform: .*glibc(\d+\.\d+)$", text)
    assert env.os_name == "linux" and env.arch == "x86_64"
    assert env.package("deepspeed") is None  # "DeepSpeed version: not installed"


def test_transformers_env_torch_line(kb) -> None:
    """transformers 5.x prints `- PyTorch version (accelerator?): X (NA)`; torch must be read from it."""
    name = "transformers_env_cpu.txt"
    text = _read(name)
    expected = _one(r"^- PyTorch version \([^)]*\): (\S+)", text)
    env = _parse(name, kb)
    torch = env.package("torch")
    assert torch is not None, "the PyTorch line of `transformers env` was not recognised"
    assert torch.version == expected


def test_accelerate_env(kb) -> None:
    name = "accelerate_env_cpu.txt"
    text = _read(name)
    env = _parse(name, kb)
    assert env.package("accelerate").version == _one(r"^- `Accelerate` version: (\S+)$", text)
    assert env.package("torch").version == _one(r"^- PyTorch version: (\S+)$", text)
    assert env.package("numpy").version == _one(r"^- Numpy version: (\S+)$", text)
    assert env.python_version == _one(r"^- Python version: (\S+)$", text)
    assert env.facts(kb)["torch.variant"] == "cpu"


# ------------------------------------------------------------------ real fixtures: pip


def _pairs(pattern: str, text: str) -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in re.findall(pattern, text, re.M)}


def test_pip_freeze(kb) -> None:
    name = "pip_freeze_fxenv.txt"
    text = _read(name)
    env = _parse(name, kb)
    expected = _pairs(r"^([A-Za-z0-9._-]+)==(\S+)$", text)
    assert expected, "fixture has no pins"
    assert {k: p.version for k, p in (env.packages or {}).items()} == expected
    assert env.facts(kb)["pkg.torch"] == expected["torch"].split("+")[0]
    assert all(origin.endswith("(pip freeze)") for k, origin in env.origins.items() if k.startswith("pkg."))


def test_pip_list(kb) -> None:
    name = "pip_list_fxenv.txt"
    text = _read(name)
    env = _parse(name, kb)
    body = text.split("\n", 2)[2]  # skip the header and its dashes
    expected = _pairs(r"^([A-Za-z0-9._-]+)\s+(\d\S*)\s*$", body)
    assert expected
    assert {k: p.version for k, p in (env.packages or {}).items()} == expected


def test_pip_list_and_freeze_agree(kb) -> None:
    freeze = _parse("pip_freeze_fxenv.txt", kb).packages or {}
    listed = _parse("pip_list_fxenv.txt", kb).packages or {}
    for name, pkg in freeze.items():
        assert listed[name].version == pkg.version


# ------------------------------------------------------------------ real fixtures: nvidia-smi, nvcc


def test_nvidia_smi_table_real(kb) -> None:
    name = "nvidia-smi_h100.txt"
    text = _read(name)
    env = _parse(name, kb)
    assert env.driver_version == _one(r"Driver Version: (\S+)", text)
    assert env.driver_cuda == _one(r"CUDA Version: (\S+)", text)
    used, total = re.search(r"(\d+)MiB /\s+(\d+)MiB", text).groups()
    gpu_name = _one(r"^\|\s+0\s+(.+?)\s+On\s+\|", text)
    assert env.gpus is not None and len(env.gpus) == 1
    gpu = env.gpus[0]
    assert gpu.name == gpu_name and gpu.index == 0
    assert gpu.memory_total_mib == int(total)
    assert gpu.memory_free_mib == int(total) - int(used)
    assert gpu.catalog_id == kb.gpu(gpu_name).id
    facts = env.facts(kb)
    assert facts["driver.cuda"] == env.driver_cuda
    assert facts["gpu.vram_gib"] == round(int(total) / 1024, 1)


def test_nvcc_real(kb) -> None:
    name = "nvcc_version_13.0.txt"
    env = _parse(name, kb)
    assert env.toolkit_cuda == _one(r"release (\d+\.\d+),", _read(name))
    assert env.origins["toolkit_cuda"] == f"{name} (nvcc)"


@pytest.mark.parametrize("name", ["nvidia-smi_query_h100.csv", "proc_driver_version_h100.txt"])
def test_probe_outputs_are_not_report_layouts(kb, name: str) -> None:
    """CSV query rows and /proc text are probe inputs (test_probe.py), not pasted-report layouts."""
    env = _parse(name, kb)
    assert env.packages is None
    assert [n.severity for n in env.notices] == ["warning"]


def test_all_real_fixtures_mixed(kb) -> None:
    """One text holding every fixture (as an issue that pastes several outputs)."""
    names = [
        "collect_env_h100_torch2.11_cu130.txt",
        "nvidia-smi_h100.txt",
        "nvcc_version_13.0.txt",
        "transformers_env_cpu.txt",
        "pip_freeze_fxenv.txt",
    ]
    text = "\n\n".join(_read(n) for n in names)
    env = parse_report(text, "mixed", kb)
    smi = _read("nvidia-smi_h100.txt")
    ce = _read("collect_env_h100_torch2.11_cu130.txt")
    assert env.driver_cuda == _one(r"CUDA Version: (\S+)", smi)
    assert env.driver_version == _one(r"Driver Version: (\S+)", smi)
    assert env.toolkit_cuda == _one(r"release (\d+\.\d+),", _read("nvcc_version_13.0.txt"))
    # the first report that names torch wins (collect_env came first)
    assert env.package("torch").version == _one(r"^PyTorch version: (\S+)$", ce)
    assert env.package("transformers").version == _one(
        r"^- `transformers` version: (\S+)$", _read("transformers_env_cpu.txt")
    )
    assert env.package("tokenizers").version == _one(r"^tokenizers==(\S+)$", _read("pip_freeze_fxenv.txt"))
    assert env.gpus is not None and len(env.gpus) == 1
    notice = next(n.message for n in env.notices if n.message.startswith("recognised:"))
    for layout in ("collect_env", "nvidia-smi", "nvcc", "hf env", "pip freeze"):
        assert layout in notice


# ------------------------------------------------------------------ synthetic snippets
# Written by hand in the documented layouts (nvidia-smi 535-era and 470-era tables, nvcc, conda list,
# vLLM collect_env, transformers 4.x env); not captured from a real machine.

SMI_535 = """\
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: 12.2     |
|-----------------------------------------+----------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |
|=========================================+======================+======================|
|   0  NVIDIA A100-SXM4-80GB          On  | 00000000:07:00.0 Off |                    0 |
| N/A   30C    P0              61W / 400W |      4MiB / 81920MiB |      0%      Default |
+-----------------------------------------+----------------------+----------------------+
|   1  NVIDIA A100-SXM4-80GB          On  | 00000000:0F:00.0 Off |                    0 |
| N/A   31C    P0              63W / 400W |  10240MiB / 81920MiB |      0%      Default |
+-----------------------------------------+----------------------+----------------------+
"""

SMI_470 = """\
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |
|-------------------------------+----------------------+----------------------+
| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |
|===============================+======================+======================|
|   0  Tesla T4            Off  | 00000000:00:04.0 Off |                    0 |
| N/A   36C    P8     9W /  70W |      0MiB / 15109MiB |      0%      Default |
+-------------------------------+----------------------+----------------------+
"""


def test_smi_535_two_gpus(kb) -> None:
    env = parse_report(SMI_535, "smi", kb)
    assert env.driver_version == "535.104.05" and env.driver_cuda == "12.2"
    assert env.gpus is not None and [g.index for g in env.gpus] == [0, 1]
    assert [g.memory_free_mib for g in env.gpus] == [81920 - 4, 81920 - 10240]
    assert all(g.catalog_id == kb.gpu("NVIDIA A100-SXM4-80GB").id for g in env.gpus)
    assert env.facts(kb)["gpu.count"] == 2


def test_smi_470_off_persistence(kb) -> None:
    env = parse_report(SMI_470, "smi", kb)
    assert env.driver_version == "470.82.01" and env.driver_cuda == "11.4"
    assert env.gpus is not None and env.gpus[0].name == "Tesla T4"
    assert env.gpus[0].memory_total_mib == 15109


@pytest.mark.parametrize(
    ("text", "release"),
    [
        (
            "nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2022 NVIDIA Corporation\n"
            "Built on Wed_Sep_21_10:33:58_PDT_2022\nCuda compilation tools, release 11.8, V11.8.89\n"
            "Build cuda_11.8.r11.8/compiler.31833905_0\n",
            "11.8",
        ),
        ("Cuda compilation tools, release 12.1, V12.1.105", "12.1"),
        ("```\nCuda compilation tools, release 12.4, V12.4.131\n```", "12.4"),
    ],
)
def test_nvcc_snippets(kb, text: str, release: str) -> None:
    assert parse_report(text, "nvcc", kb).toolkit_cuda == release


def test_nvcc_wins_over_collect_env_runtime(kb) -> None:
    text = "CUDA runtime version: 12.1.105\nCuda compilation tools, release 12.4, V12.4.131\n"
    assert parse_report(text, "x", kb).toolkit_cuda == "12.4"


def test_smi_driver_wins_over_collect_env_driver(kb) -> None:
    text = "Nvidia driver version: 530.30.02\n" + SMI_535
    assert parse_report(text, "x", kb).driver_version == "535.104.05"


def test_conda_list(kb) -> None:
    text = (
        "# packages in environment at /opt/conda/envs/llm:\n#\n"
        "# Name                    Version                   Build  Channel\n"
        "pytorch                   2.1.0           py3.10_cuda12.1_cudnn8.9.2_0    pytorch\n"
        "pytorch-cuda              12.1                 ha16c6d3_5    pytorch\n"
        "transformers              4.36.2             pyhd8ed1ab_0    conda-forge\n"
        "flash-attn                2.5.8                    pypi_0    pypi\n"
    )
    env = parse_report(text, "conda", kb)
    assert {k: p.version for k, p in (env.packages or {}).items()} == {
        "torch": "2.1.0",
        "transformers": "4.36.2",
        "flash-attn": "2.5.8",
    }


def test_vllm_collect_env_multi_gpu(kb) -> None:
    text = (
        "PyTorch version: 2.3.1+cu121\nCUDA used to build PyTorch: 12.1\n"
        "GPU models and configuration: \nGPU 0: NVIDIA GeForce RTX 4090\nGPU 1: NVIDIA GeForce RTX 4090\n"
        "vLLM Version: 0.5.3.post1\n[pip3] flash_attn==2.5.9.post1\n"
    )
    env = parse_report(text, "vllm", kb)
    assert env.package("vllm").version == "0.5.3.post1"
    assert env.package("flash-attn").version == "2.5.9.post1"
    assert env.gpus is not None and len(env.gpus) == 2
    assert env.torch is not None and env.torch.cuda == "12.1"


def test_transformers_4x_env(kb) -> None:
    text = (
        "- `transformers` version: 4.41.2\n- Platform: Linux-5.15.0-105-generic-x86_64-with-glibc2.35\n"
        "- Python version: 3.10.12\n- PyTorch version (GPU?): 2.3.0+cu121 (True)\n- GPU type: NVIDIA A10G\n"
    )
    env = parse_report(text, "hf", kb)
    assert env.package("torch").version == "2.3.0+cu121"
    assert env.glibc == "2.35" and env.python_version == "3.10.12"
    assert env.gpus is not None and env.gpus[0].name == "NVIDIA A10G"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("torch==2.3.0+cu118", {"torch": "2.3.0+cu118"}),
        (
            "> torch==2.3.0+cu118\n> `transformers==4.41.2`",
            {"torch": "2.3.0+cu118", "transformers": "4.41.2"},
        ),
        ("torch==2.3.0\r\nvllm==0.5.3\r\n", {"torch": "2.3.0", "vllm": "0.5.3"}),
        ("transformers 4.41.2", {"transformers": "4.41.2"}),
        ("Flash_Attn==2.5.8", {"flash-attn": "2.5.8"}),
        ("pytorch==2.1.0", {"torch": "2.1.0"}),
        ("cuda==12.1\npython==3.10.1\ncudatoolkit==11.8", {}),
        ("torch==not-a-version", {}),
        ('triton==2.3.0 ; platform_system == "Linux"', {"triton": "2.3.0"}),
    ],
)
def test_plain_lines(kb, text: str, expected: dict[str, str]) -> None:
    env = parse_report(text, "x", kb)
    assert {k: p.version for k, p in (env.packages or {}).items()} == expected


@pytest.mark.parametrize(
    "text",
    [
        "I installed torch 2.3.0 yesterday and it broke",
        "After upgrading transformers to 4.41.2 the model fails",
        "torch 2.3.0 is broken",
        "Using vllm 0.5.3 with cuda 12.1 on two GPUs",
        "Please help, thanks!",
    ],
)
def test_prose_is_not_a_package(kb, text: str) -> None:
    env = parse_report(text, "prose", kb)
    assert env.packages is None
    assert any(n.severity == "warning" for n in env.notices)


def test_unknown_gpu_gives_a_warning_notice(kb) -> None:
    env = parse_report("GPU 0: NVIDIA Frobnicator 9000", "x", kb)
    assert env.gpus is not None and env.gpus[0].cc is None
    assert any("not in the GPU catalog" in n.message for n in env.notices)


def test_empty_text(kb) -> None:
    env = parse_report("", "empty", kb)
    assert env.packages is None and env.gpus is None
    assert [n.severity for n in env.notices] == ["warning"]


def test_huge_text_is_cut_not_fatal(kb) -> None:
    text = "torch==2.3.0\n" + "x" * 6_000_000 + "\nvllm==0.5.3\n"
    env = parse_report(text, "big", kb)
    assert env.package("torch") is not None and env.package("vllm") is None


# ------------------------------------------------------------------ properties

_FIXTURE_LINES = sorted(
    {
        line
        for p in sorted(FIXTURES.iterdir())
        if p.is_file() and p.suffix in (".txt", ".csv")
        for line in p.read_text(encoding="utf-8").splitlines()
    }
)
_LINE = st.one_of(
    st.text(max_size=80), st.sampled_from(_FIXTURE_LINES), st.sampled_from(SMI_535.splitlines())
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINE, max_size=25), newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_text_gives_an_environment(kb, lines: list[str], newline: str) -> None:
    env = parse_report(newline.join(lines), "fuzz", kb)
    assert isinstance(env, Environment)
    assert env.notices  # always says what it recognised, or that it recognised nothing
    env.facts(kb)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_unicode_gives_an_environment_without_catalog(text: str) -> None:
    assert isinstance(parse_report(text, "fuzz", None), Environment)


_WORDS = st.sampled_from(
    [
        "torch",
        "transformers",
        "vllm",
        "flash-attn",
        "cuda",
        "python",
        "version",
        "2.3.0",
        "4.41.2",
        "12.1",
        "0.5.3",
        "I",
        "installed",
        "with",
        "and",
        "the",
        "model",
        "fails",
        "after",
        "upgrading",
        "on",
        "my",
        "machine",
        "is",
        "broken",
        "works",
        "fine",
        "to",
        "v2.1",
        "nvidia",
        "driver",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sentences=st.lists(st.lists(_WORDS, min_size=3, max_size=12).map(" ".join), min_size=1, max_size=6))
def test_prose_never_invents_packages(kb, sentences: list[str]) -> None:
    """Sentences of three or more words mention packages; they never declare one."""
    env = parse_report("\n".join(sentences), "prose", kb)
    assert env.packages is None, sentences


def test_vllm_collect_env_real_h100_fixture() -> None:
    """vLLM's collect_env (aligned `Key   : value` layout), captured on the H100 machine."""
    import re

    from compatsolve.knowledge import load
    from compatsolve.sources.report import parse_report

    text = (Path(__file__).parent / "fixtures" / "vllm_collect_env_h100.txt").read_text()
    env = parse_report(text, "vllm_collect_env_h100.txt", load())
    expect_torch = re.search(r"^PyTorch version\s*:\s*(\S+)", text, re.M)
    expect_driver = re.search(r"^Nvidia driver version\s*:\s*(\S+)", text, re.M)
    expect_gpu = re.search(r"^GPU models and configuration\s*:\s*GPU 0:\s*(.+?)\s*$", text, re.M)
    expect_glibc = re.search(r"^Libc version\s*:\s*glibc-(\S+)", text, re.M)
    assert expect_torch and expect_driver and expect_gpu and expect_glibc
    torch = env.torch_build()
    assert torch is not None and torch.version.split("+")[0] == expect_torch.group(1).split("+")[0]
    assert env.driver_version == expect_driver.group(1)
    assert env.gpus and env.gpus[0].name == expect_gpu.group(1)
    assert env.gpus[0].cc is not None  # resolved through the GPU catalog
    assert env.glibc == expect_glibc.group(1)
    assert any("vllm collect_env" in n.message for n in env.notices)
