"""The command line, run as a user runs it: `python -m compatsolve ...` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clirun import run_cli

REPO = Path(__file__).resolve().parent.parent
TARGET = "H100,driver=535.104.05,os=linux"


cli = run_cli


def assert_usage_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-2000:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cache_is_isolated() -> None:
    assert os.environ["COMPATSOLVE_CACHE"] != ""
    assert "compatsolve-cache" in os.environ["COMPATSOLVE_CACHE"]


@pytest.mark.parametrize("command", ["probe", "audit"])
def test_unreadable_report(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "no-such-report.txt"
    assert_usage_error(cli(command, "--report", str(missing)), str(missing), "cannot read")


def test_report_is_a_directory(tmp_path: Path) -> None:
    assert_usage_error(cli("probe", "--report", str(tmp_path)), str(tmp_path))


def test_unknown_target_key() -> None:
    assert_usage_error(cli("probe", "--target", "H100,memory=80"), "--target", "unknown key 'memory'")


def test_malformed_target_version() -> None:
    assert_usage_error(cli("audit", "--target", "H100,cuda=twelve"), "--target", "cuda")


def test_malformed_with_version_in_probe() -> None:
    """`probe --with torch==banana` is a typo the user must hear about: exit 2, one line."""
    assert_usage_error(cli("probe", "--target", TARGET, "--with", "torch==banana"), "--with", "torch==banana")


def test_bad_option_value_is_one_line() -> None:
    assert_usage_error(cli("probe", "--format", "xml"), "--format")


def test_bad_snapshot_names_where(tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text(
        json.dumps(
            {
                "schema": "compatsolve.environment/1",
                "machine": {"gpus": [{"index": 0, "name": "Tesla T4", "cc": 7.5}]},
            }
        )
    )
    assert_usage_error(cli("probe", "--from", str(snap)), "machine.gpus[0].cc")


def test_probe_save_writes_snapshot_and_refuses_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    done = cli("probe", "--target", TARGET, "--with", "torch==2.4.0+cu121", "--save", str(out))
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "compatsolve.environment/1"
    assert doc["machine"]["driver"]["version"] == "535.104.05"
    assert doc["facts"]["pkg.torch"] == "2.4.0"
    assert doc["facts"]["torch.variant"] == "cu121"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".env.json.")]  # no temp file left

    out.write_text("old content\n")
    refused = cli("probe", "--target", TARGET, "--save", str(out))
    assert_usage_error(refused, str(out), "--force")
    assert out.read_text() == "old content\n"

    forced = cli("probe", "--target", "T4", "--save", str(out), "--force", "--format", "json")
    assert forced.returncode == 0, forced.stderr
    saved = json.loads(out.read_text())
    assert saved["schema"] == "compatsolve.environment/1"
    assert saved == json.loads(forced.stdout)  # --format json prints what --save writes


def test_probe_save_into_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "env.json"
    assert_usage_error(cli("probe", "--target", TARGET, "--save", str(target)), "does not exist")
    assert not target.exists()


def test_saved_snapshot_loads_back(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    assert cli("probe", "--target", TARGET, "--with", "vllm==0.5.3", "--save", str(out)).returncode == 0
    again = cli("probe", "--from", str(out), "--format", "json")
    assert again.returncode == 0, again.stderr
    first, second = json.loads(out.read_text()), json.loads(again.stdout)
    assert second["facts"] == first["facts"]


@pytest.mark.parametrize(
    "fixture", ["collect_env_h100_torch2.11_cu130.txt", "pip_freeze_fxenv.txt", "nvidia-smi_h100.txt"]
)
@pytest.mark.parametrize("command", ["probe", "audit"])
def test_real_fixture_reports(fixture: str, command: str) -> None:
    path = REPO / "tests" / "fixtures" / fixture
    done = cli(command, "--report", str(path), "--format", "json")
    assert done.returncode in (0, 1), done.stderr  # audit exits 1 when it finds errors
    assert "Traceback" not in done.stderr
    doc = json.loads(done.stdout)
    facts = doc["facts"] if command == "probe" else doc["environment"]
    assert isinstance(facts, dict) and facts


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "--model", "qwen2-7b", "--stage", "inference", "--target", "T4", "--format", "json"],
        ["plan", "--model", "x", "--keep", "torch==2.4.0", "--keep", "vllm==0.6.3", "-o", "f", "--force"],
        ["probe", "--format", "json"],
        ["audit", "--error", "boom", "--tp", "2", "--with", "torch==2.4.0"],
        ["diagnose", "--log", "-", "--format", "markdown"],
        ["kb", "search", "flash", "attn"],
    ],
)
def test_parser_built_for_one_command_parses_like_the_full_parser(argv: list[str]) -> None:
    from compatsolve.cli import build_parser

    assert build_parser(argv).parse_args(argv) == build_parser().parse_args(argv)


@pytest.mark.parametrize("columns", [None, "57", "not-a-number"])
def test_help_width_is_what_shutil_reports(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    import shutil

    from compatsolve.cli import _terminal_columns

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert _terminal_columns() == shutil.get_terminal_size().columns


def test_every_quantization_the_rules_name_is_accepted_by_audit(kb) -> None:
    from compatsolve.quantization import QUANTIZATIONS

    def values(condition: Any) -> set[str]:
        found = set()
        for test in condition.tests:
            if test.fact == "run.quantization":
                found |= {str(v) for v in test.equals}
        for part in (*condition.any_of, *([condition.none_of] if condition.none_of else [])):
            found |= values(part)
        return found

    named = {v for rule in kb.rules if rule.when is not None for v in values(rule.when)}
    assert named and named <= set(QUANTIZATIONS)


def test_quantization_accepts_llama_cpp_types_and_refuses_unknown_names() -> None:
    from compatsolve.quantization import canonical_quantization

    assert canonical_quantization("Q4_K_M") == "gguf"
    assert canonical_quantization("IQ2_XS") == "gguf"
    assert canonical_quantization(" AWQ ") == "awq"
    assert canonical_quantization("bitsandbytes") is None  # 4-bit or 8-bit: the user must say
    refused = run_cli("diagnose", "--error", "x", "--quantization", "exl3")
    assert refused.returncode == 2 and "quantization 'exl3' is not one of" in refused.stderr
    assert "Traceback" not in refused.stderr
    # plan turns a quantization into engine settings: only those it can
    not_planned = run_cli("plan", "--model", "qwen2-7b", "--quantization", "exl2")
    assert not_planned.returncode == 2 and "quantization 'exl2' is not one of" in not_planned.stderr
    accepted = run_cli("diagnose", "--error", "x", "--quantization", "Q4_K_M", "--format", "json")
    assert json.loads(accepted.stdout)["environment"]["run.quantization"] == "gguf"


def test_engine_takes_any_name_and_reports_one_the_rules_do_not_know() -> None:
    from compatsolve.engines import ENGINES, canonical_engine

    assert canonical_engine("LM Studio") == "lmstudio"
    assert canonical_engine("text_generation_inference") == "tgi"
    assert canonical_engine("MLX") == "mlx"
    assert canonical_engine("two words!") is None
    # the failing tool is kept as run.engine and named by an unresolved-fact warning
    unknown = run_cli("diagnose", "--error", "x", "--engine", "MLX", "--format", "json")
    report = json.loads(unknown.stdout)
    assert report["environment"]["run.engine"] == "mlx"
    warnings = [f for f in report["findings"] if f["rule"] == "unresolved-fact"]
    assert len(warnings) == 1 and "'mlx'" in warnings[0]["title"] and warnings[0]["severity"] == "warning"
    # a name the rules use gets no such warning
    known = run_cli("diagnose", "--error", "x", "--engine", "llamacpp", "--format", "json")
    report = json.loads(known.stdout)
    assert report["environment"]["run.engine"] == "llama.cpp" in ENGINES
    assert not [f for f in report["findings"] if f["rule"] == "unresolved-fact"]
    refused = run_cli("audit", "--target", "H100", "--engine", "two words!")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "is not a name" in refused.stderr
    # plan pins only the engines it can solve for
    not_planned = run_cli("plan", "--model", "qwen2-7b", "--stage", "inference", "--engine", "mlx")
    assert not_planned.returncode == 2
    assert "engine 'mlx' is not one of vllm, sglang, transformers" in not_planned.stderr
