"""The Environment model: facts() and merge() (compatsolve/environment.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compatsolve.environment import Environment, Gpu, Package, RunSettings, TorchBuild, merge


def pkgs(**versions: str) -> dict[str, Package]:
    return {n.replace("_", "-"): Package(name=n.replace("_", "-"), version=v) for n, v in versions.items()}


def test_empty_environment_has_no_facts() -> None:
    assert Environment().facts() == {}


def test_gpu_facts_lowest_cc_and_smallest_memory() -> None:
    env = Environment(
        gpus=(
            Gpu(index=0, name="a", cc="8.6", memory_total_mib=24576),
            Gpu(index=1, name="b", cc="7.5", memory_total_mib=16384),
        )
    )
    facts = env.facts()
    assert facts["gpu.count"] == 2 and facts["gpu.name"] == "a"
    assert facts["gpu.cc"] == "7.5"
    assert facts["gpu.vram_gib"] == 16.0
    assert facts["gpu.bf16"] is False


def test_gpu_cc_unknown_when_one_gpu_is_unknown() -> None:
    """'lowest cc among the GPUs' is unknown while one GPU's cc is unknown: it must not read as 8.6."""
    env = Environment(gpus=(Gpu(index=0, name="a", cc="8.6"), Gpu(index=1, name="Mystery GPU", cc=None)))
    facts = env.facts()
    assert "gpu.cc" not in facts
    assert "gpu.bf16" not in facts


def test_gpu_vram_unknown_when_one_gpu_memory_is_unknown() -> None:
    env = Environment(gpus=(Gpu(index=0, name="a", memory_total_mib=81920), Gpu(index=1, name="b")))
    assert "gpu.vram_gib" not in env.facts()


def test_no_gpus_known() -> None:
    assert Environment(gpus=()).facts() == {"gpu.count": 0}


def test_catalog_facts(kb) -> None:
    env = Environment(gpus=(Gpu(index=0, name="Tesla T4"),))
    facts = env.facts(kb)
    model = kb.gpu("Tesla T4")
    assert facts["gpu.cc"] == model.cc and facts["gpu.arch"] == model.architecture
    assert facts["gpu.segment"] == model.segment


@pytest.mark.parametrize(
    ("version", "cuda", "variant"),
    [
        ("2.4.0+cu121", "12.1", "cu121"),
        ("2.1.2+cu118", "11.8", "cu118"),
        ("2.7.0+cu128", "12.8", "cu128"),
        ("2.3.0+cpu", None, "cpu"),
        ("2.4.0+rocm6.1", None, "rocm6.1"),
        ("2.4.0", None, None),
    ],
)
def test_torch_build_from_local_label(version: str, cuda: str | None, variant: str | None) -> None:
    facts = Environment(packages=pkgs(torch=version)).facts()
    assert facts["pkg.torch"] == version.split("+")[0]
    assert facts.get("torch.cuda") == cuda
    assert facts.get("torch.variant") == variant


@pytest.mark.parametrize("version", ["2.1.0+cu0", "2.1.0+cu1"])
def test_one_digit_cuda_label_gives_no_none_fact(version: str) -> None:
    """`+cu1` yields cuda '.1', which major_minor() cannot read: torch.cuda must then be absent, not None."""
    facts = Environment(packages=pkgs(torch=version)).facts()
    assert facts.get("torch.cuda", "absent") is not None


def test_probed_torch_build_wins_over_label() -> None:
    env = Environment(packages=pkgs(torch="2.4.0"), torch=TorchBuild(version="2.4.0", cuda="12.4"))
    assert env.facts()["torch.variant"] == "cu124"


@pytest.mark.parametrize(
    ("name", "cu12", "cu13"),
    [
        ("nvidia-cublas-cu12", True, False),
        ("nvidia-nccl-cu13", False, True),
        ("nvidia-cublas", False, False),
        ("nvidia-ml-py", False, False),
    ],
)
def test_nvidia_runtime_flags(name: str, cu12: bool, cu13: bool) -> None:
    facts = Environment(packages={name: Package(name=name, version="1.0")}).facts()
    assert (facts["nvidia.cu12"], facts["nvidia.cu13"]) == (cu12, cu13)


def test_completeness_flags() -> None:
    facts = Environment(packages={}, packages_complete=True, env_vars={"NCCL_P2P_DISABLE": "1"}).facts()
    assert facts["_packages_complete"] is True and facts["_env_complete"] is True
    assert facts["env.NCCL_P2P_DISABLE"] == "1"
    assert "_packages_complete" not in Environment(packages={}).facts()


def test_run_and_model_facts(kb) -> None:
    model_id = kb.models[0].id
    env = Environment(run=RunSettings(model=model_id, engine="vllm", tp=2, dtype="bfloat16"))
    facts = env.facts(kb)
    assert facts["run.engine"] == "vllm" and facts["run.tp"] == 2
    assert facts["model.id"] == model_id and facts["model.series"] == kb.models[0].series


def test_driver_and_toolkit_are_major_minor() -> None:
    facts = Environment(driver_version="535.104.05", driver_cuda="12.2", toolkit_cuda="12.1.105").facts()
    assert facts == {"driver.version": "535.104.05", "driver.cuda": "12.2", "toolkit.cuda": "12.1"}


# ------------------------------------------------------------------ merge


def test_merge_later_layer_wins_and_origins_follow() -> None:
    a = Environment.from_source("a", driver_version="535.104.05", os_name="linux")
    b = Environment.from_source("b", driver_version="550.54.14")
    m = merge(a, b)
    assert m.driver_version == "550.54.14" and m.os_name == "linux"
    assert m.origins == {"driver_version": "b", "os_name": "a"}


def test_merge_unknown_does_not_erase_known() -> None:
    a = Environment.from_source("a", gpus=(Gpu(index=0, name="T4"),))
    assert merge(a, Environment()).gpus == a.gpus
    assert merge(a, Environment(gpus=())).gpus == ()  # "known: none" is knowledge


def test_merge_packages_env_vars_notices_and_run() -> None:
    a = Environment(
        packages=pkgs(torch="2.3.0", vllm="0.5.0"),
        packages_complete=True,
        env_vars={"A": "1"},
        run=RunSettings(engine="vllm"),
    )
    b = Environment(packages=pkgs(vllm="0.5.3"), env_vars={"B": "2"}, run=RunSettings(tp=2))
    m = merge(a, b)
    assert {n: p.version for n, p in m.packages.items()} == {"torch": "2.3.0", "vllm": "0.5.3"}
    assert m.packages_complete is True
    assert m.env_vars == {"A": "1", "B": "2"}
    assert (m.run.engine, m.run.tp) == ("vllm", 2)


def test_with_packages_records_origins() -> None:
    env = Environment().with_packages([Package(name="torch", version="2.4.0")], "--with", complete=False)
    assert env.origins == {"pkg.torch": "--with"} and env.packages_complete is False
    assert env.package("Torch") is not None


_LABELS = st.one_of(st.none(), st.from_regex(r"(cu\d{1,4}|cpu|rocm\d(\.\d)?|xpu)", fullmatch=True))
_TORCH = st.builds(
    lambda v, label: v + (f"+{label}" if label else ""), st.sampled_from(["2.1.0", "2.4.0", "2.7.1"]), _LABELS
)


@settings(max_examples=150, deadline=None)
@given(
    torch=_TORCH,
    ccs=st.lists(st.one_of(st.none(), st.sampled_from(["7.5", "8.0", "bad"])), max_size=3),
    driver=st.one_of(st.none(), st.sampled_from(["535.104.05", "12", "x"])),
)
def test_facts_never_hold_none(torch: str, ccs: list, driver: str | None) -> None:
    """Unknown facts are absent, never present with the value None."""
    env = Environment(
        packages=pkgs(torch=torch),
        driver_cuda=driver,
        gpus=tuple(Gpu(index=i, name="g", cc=cc) for i, cc in enumerate(ccs)),
    )
    facts = env.facts()
    assert all(value is not None for value in facts.values()), facts
