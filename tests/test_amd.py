"""AMD GPUs (knowledge/amd.toml, rules/amd.toml): names resolve to a gfx target, and the support
lists of ROCm and Ollama (read from AMD's and Ollama's documentation, cited per entry) say whether
that target has kernels. The expectations follow those lists: an RX 6600 is gfx1032, which no ROCm
Linux release and no Ollama list names; an RX 7900 XTX is gfx1100, which all of them do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clirun import run_cli as cli

from compatsolve.derive import derive
from compatsolve.errors import KnowledgeError
from compatsolve.families import mentioned_components
from compatsolve.knowledge import load, parse_knowledge
from compatsolve.sources.target import parse_target


def _facts(target: str, **extra: Any) -> dict[str, Any]:
    kb = load()
    return derive({**parse_target(target, kb).facts(kb), **extra}, kb)


def _listed(subject: str, os_name: str, gfx: str) -> bool:
    return any(gfx in s.gfx for s in load().gfx_support if s.subject == subject and s.os == os_name)


def test_names_resolve_with_or_without_the_brand_words() -> None:
    kb = load()
    for name in ("RX 6600", "Radeon RX 6600", "AMD Radeon RX 6600", "rx6600"):
        found = kb.amd_gpu(name)
        assert found is not None and found.gfx == "gfx1032", name
    assert kb.amd_gpu("AMD Instinct MI50") is kb.amd_gpu("MI50") is not None
    assert kb.amd_gpu("RTX 4090") is None  # NVIDIA's catalog answers that
    # no alias of one catalog is a name in the other
    amd = {a.lower() for g in kb.amd_gpus for a in (g.id, g.name, *g.aliases)}
    assert not [g.id for g in kb.gpus if kb.amd_gpu(g.name) or g.id in amd]


def test_a_card_no_list_names_is_unsupported_everywhere() -> None:
    assert not _listed("rocm", "linux", "gfx1032") and not _listed("ollama", "linux", "gfx1032")
    facts = _facts("RX 6600,os=linux")
    assert facts["gpu.vendor"] == "amd" and facts["gpu.gfx"] == "gfx1032"
    assert facts["gpu.arch"] == "rdna2" and "gpu.cc" not in facts
    assert facts["gpu.rocm_supported"] is False and facts["gpu.ollama_supported"] is False


def test_a_listed_card_is_supported_and_an_unknown_os_needs_agreement() -> None:
    assert _listed("rocm", "linux", "gfx1100") and _listed("rocm", "windows", "gfx1100")
    facts = _facts("RX 7900 XTX")  # OS not given: Linux and Windows lists agree
    assert facts["gpu.rocm_supported"] is True and facts["gpu.ollama_supported"] is True
    # gfx906 (MI50): listed by a ROCm release on Linux, never by the Windows HIP SDK lists
    assert _listed("rocm", "linux", "gfx906") and not _listed("rocm", "windows", "gfx906")
    assert "gpu.rocm_supported" not in _facts("MI50")
    assert _facts("MI50,os=linux")["gpu.rocm_supported"] is True


def test_torchs_rocm_release_picks_its_own_list() -> None:
    kb = load()
    releases = {
        s.version: s.gfx for s in kb.gfx_support if s.subject == "rocm" and s.os == "linux" and s.version
    }
    with_906 = [v for v, gfx in releases.items() if "gfx906" in gfx]
    without = [v for v, gfx in releases.items() if "gfx906" not in gfx]
    assert with_906 and without
    for version, expected in ((with_906[0], True), (without[0], False)):
        short = ".".join(version.split(".")[:2])
        facts = _facts("MI50,os=linux", **{"torch.variant": f"rocm{short}"})
        assert facts["gpu.rocm_supported"] is expected, version


def test_nvidia_cards_say_so_and_get_no_gfx_facts() -> None:
    facts = _facts("RTX 4090,os=linux")
    assert facts["gpu.vendor"] == "nvidia"
    assert not {"gpu.gfx", "gpu.rocm_supported", "gpu.ollama_supported"} & facts.keys()


def test_audit_names_ollama_and_rocm_for_an_unsupported_card() -> None:
    done = cli("audit", "--target", "RX 6600,os=linux", "--with", "ollama==0.5.0", "--format", "json")

    rules = {f["rule"]: f["severity"] for f in json.loads(done.stdout)["findings"]}
    assert rules.get("ollama-amd-gpu-gfx-target-not-built") == "error"
    assert rules.get("rocm-lists-no-support-for-amd-gpu-gfx-target") == "warning"
    assert done.returncode == 1
    ok = cli("audit", "--target", "RX 7900 XTX,os=linux", "--with", "ollama==0.5.0", "--format", "json")
    assert not [f for f in json.loads(ok.stdout)["findings"] if "amd" in f["rule"] or "rocm" in f["rule"]]


def test_plan_refuses_an_amd_gpu_in_one_line() -> None:
    done = cli("plan", "--model", "qwen2-7b-instruct", "--stage", "inference", "--target", "RX 7900 XTX")
    assert done.returncode == 2
    assert "AMD GPU" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_amd_names_in_free_text_are_the_gpu() -> None:
    assert "gpu" in mentioned_components("Ollama doesn't use my RX 6600 on Windows", load())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[amd_gpu]]\nid = "x"\nname = "X"\naliases = []\ngfx = "gfx10"\narchitecture = "rdna2"\n'
            'segment = "consumer"\nsources = ["https://llvm.org/docs/AMDGPUUsage.html"]\n',
            "not an LLVM gfx target",
        ),
        (
            '[[gfx_support]]\nsubject = "ollama"\nos = "linux"\ngfx = ["gfx1030"]\n'
            'sources = ["https://github.com/ollama/ollama"]\n',
            "needs the date",
        ),
        (
            '[[gfx_support]]\nsubject = "unsloth"\nos = "linux"\ngfx = ["gfx1030"]\nas_of = "2026-01-01"\n'
            'sources = ["https://github.com/unslothai/unsloth"]\n',
            "subject",
        ),
    ],
)
def test_malformed_amd_entries_are_load_errors(tmp_path: Path, body: str, message: str) -> None:
    root = tmp_path / "knowledge"
    root.mkdir()
    (root / "amd.toml").write_text(body)
    with pytest.raises(KnowledgeError, match=message):
        parse_knowledge(root)


def test_a_pasted_report_naming_an_amd_gpu_resolves_it() -> None:
    from compatsolve.sources.report import parse_report

    # written for this test in collect_env's "key: value" layout
    text = "PyTorch version: 2.4.1+rocm6.1\nGPU models and configuration: AMD Radeon RX 6600\n"
    env = parse_report(text, "report", load())
    assert env.gpus is not None and env.gpus[0].gfx == "gfx1032"
    assert not [n for n in env.notices if "not in the GPU catalog" in n.message]


def test_plan_refuses_a_probed_amd_gpu_too(tmp_path: Path) -> None:
    """A saved environment whose GPU the kfd probe found (a gfx target, no name in the catalog)."""
    from compatsolve.environment import Environment, Gpu
    from compatsolve.sources.snapshot import to_document

    saved = tmp_path / "machine.json"
    env = Environment(gpus=(Gpu(index=0, name="AMD GPU (gfx1100)", gfx="gfx1100"),), python_version="3.11")
    saved.write_text(json.dumps(to_document(env, env.facts())))
    done = cli("plan", "--model", "qwen2-7b-instruct", "--stage", "inference", "--from", str(saved))
    assert done.returncode == 2 and "AMD GPU" in done.stderr and "Traceback" not in done.stderr
