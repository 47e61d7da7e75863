"""The CPU's AVX level: read from /proc/cpuinfo (probe), lscpu's "Flags:" line in a pasted report,
`--target ...,avx=`, and kept in snapshots; knowledge/rules/cpu.toml judges it.

Fixtures: this machine's /proc/cpuinfo is read as it is (the live probe's input); the two
collect_env reports are real outputs of torch's collect_env (tests/fixtures/README.md), whose
lscpu "Flags:" lines name the features of the machines they ran on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from compatsolve.environment import AVX_LEVELS, avx_level
from compatsolve.errors import InputError
from compatsolve.sources.probe import probe_cpu_avx
from compatsolve.sources.report import parse_report
from compatsolve.sources.snapshot import from_document, to_document
from compatsolve.sources.target import parse_target
from tests.clirun import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CPUINFO = Path("/proc/cpuinfo")


def _flags(report: str) -> set[str]:
    match = re.search(r"^Flags:\s*(.+)$", (FIXTURES / report).read_text(encoding="utf-8"), re.M)
    assert match, f"{report} has no lscpu Flags line"
    return set(match.group(1).split())


def test_avx_level_is_the_newest_extension_present() -> None:
    assert avx_level(["fpu", "sse4_2"]) == "none"
    assert avx_level(["fpu", "avx", "f16c"]) == "avx"
    assert avx_level(["avx", "avx2", "fma"]) == "avx2"
    assert avx_level(["avx", "avx2", "avx512f", "avx512bw"]) == "avx512"
    # feature names that only contain "avx" are not AVX itself
    assert avx_level(["avx_vnni", "avx512_bf16"]) == "none"


@pytest.mark.parametrize(
    ("report", "flag"),
    [("collect_env_h100_torch2.11_cu130.txt", "avx512f"), ("collect_env_cpu_torch2.13.txt", "avx2")],
)
def test_report_reads_lscpu_flags(kb, report: str, flag: str) -> None:
    flags = _flags(report)
    assert flag in flags
    expected = "avx512" if "avx512f" in flags else "avx2"
    env = parse_report((FIXTURES / report).read_text(encoding="utf-8"), report, kb)
    assert env.cpu_avx == expected
    facts = env.facts()
    assert facts["cpu.avx"] is True and facts["cpu.avx2"] is True
    assert facts["cpu.avx512"] is (expected == "avx512")


def test_report_of_a_vm_that_hides_avx(kb) -> None:
    """The same report with AVX masked (a hypervisor CPU model without it) reads as "none"."""
    text = (FIXTURES / "collect_env_cpu_torch2.13.txt").read_text(encoding="utf-8")
    line = re.search(r"^Flags:.*$", text, re.M)
    assert line
    masked = " ".join(f for f in line.group(0).split() if not f.startswith("avx"))
    env = parse_report(text.replace(line.group(0), masked), "masked", kb)
    assert env.cpu_avx == "none"
    assert env.facts()["cpu.avx"] is False


@pytest.mark.skipif(not CPUINFO.exists(), reason="no /proc/cpuinfo on this machine")
def test_probe_reads_proc_cpuinfo() -> None:
    text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None
    )
    level = probe_cpu_avx()
    if flags is None:  # not an x86 kernel: nothing to read
        assert level is None
    else:
        assert level == avx_level(flags)
        assert ("avx2" in flags) == (level in ("avx2", "avx512"))


def test_probe_without_cpuinfo_is_unknown(tmp_path: Path) -> None:
    assert probe_cpu_avx(tmp_path / "missing") is None
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: test\n", encoding="utf-8")
    assert probe_cpu_avx(tmp_path / "cpuinfo") is None


@pytest.mark.parametrize("level", AVX_LEVELS)
def test_target_avx_key(kb, level: str) -> None:
    facts = parse_target(f"RTX 3090,avx={level}", kb).facts()
    rank = AVX_LEVELS.index(level)
    assert (facts["cpu.avx"], facts["cpu.avx2"], facts["cpu.avx512"]) == (rank >= 1, rank >= 2, rank >= 3)


def test_target_avx_errors_and_other_cpus(kb) -> None:
    with pytest.raises(InputError, match="avx='sse'"):
        parse_target("RTX 3090,avx=sse", kb)
    # AVX is an x86 notion: on an Arm CPU the facts stay unknown
    assert "cpu.avx" not in parse_target("RTX 3090,arch=aarch64,avx=none", kb).facts()


def test_snapshot_keeps_the_avx_level(kb) -> None:
    env = parse_target("RTX 3090,os=linux,avx=avx", kb)
    doc = json.loads(json.dumps(to_document(env)))
    assert from_document(doc, "snap.json").cpu_avx == "avx"
    doc["machine"]["cpu"]["avx"] = "sse9"
    with pytest.raises(InputError, match=r"machine\.cpu\.avx"):
        from_document(doc, "snap.json")


def test_audit_flags_ollama_on_a_cpu_without_avx() -> None:
    without = run_cli(
        "audit", "--target", "RTX 3060,os=linux,avx=none", "--engine", "ollama", "--format", "json"
    )
    assert without.returncode == 1, without.stderr
    rules = {f["rule"]: f for f in json.loads(without.stdout)["findings"]}
    finding = rules["ollama-gpu-runners-need-avx-cpu"]
    assert finding["severity"] == "error" and finding["kind"] == "gpu-arch-unsupported"
    assert "ollama" in finding["components"]
    with_avx = run_cli(
        "audit", "--target", "RTX 3060,os=linux,avx=avx2", "--engine", "ollama", "--format", "json"
    )
    assert "ollama-gpu-runners-need-avx-cpu" not in {
        f["rule"] for f in json.loads(with_avx.stdout)["findings"]
    }


def test_diagnose_reads_the_ollama_message_and_the_facts_decide() -> None:
    message = 'level=WARN source=gpu.go:128 msg="CPU does not have AVX or AVX2, disabling GPU support."'

    def diagnose(avx: str) -> list[dict[str, object]]:
        target = f"RTX 3060,os=linux,avx={avx}"
        result = run_cli(
            "diagnose", "--error", message, "--engine", "ollama", "--target", target, "--format", "json"
        )
        findings: list[dict[str, object]] = json.loads(result.stdout)["findings"]
        return findings

    first = diagnose("none")[0]
    assert first["rule"] == "ollama-gpu-runners-need-avx-cpu"
    assert first["explains_error"] is True and first["severity"] == "error"
    # a CPU with AVX rules the cause out: the message then comes from something else
    assert "ollama-gpu-runners-need-avx-cpu" not in {f["rule"] for f in diagnose("avx2")}


def test_every_engine_the_rules_name_is_accepted_by_audit(kb) -> None:
    from compatsolve.engines import ENGINES

    named = {
        value
        for rule in kb.rules
        if rule.when is not None
        for value in re.findall(r'"run\.engine" = "([^"*]+)"', Path(rule.file).read_text(encoding="utf-8"))
    }
    assert named <= set(ENGINES)
