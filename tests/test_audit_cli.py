"""audit / diagnose end to end through the CLI: the JSON contract, exit codes, Markdown, and
robustness of the error/log input (fuzzed: never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

from clirun import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compatsolve import diagnose as diagnosing
from compatsolve.knowledge import KINDS, TAXONOMY_COMPONENTS_RE, load

FINDING_KEYS = {
    "rule",
    "kind",
    "severity",
    "components",
    "title",
    "explanation",
    "fix",
    "evidence",
    "confidence",
    "explains_error",
}


cli = run_cli


def test_audit_json_contract_and_exit_code_on_a_known_failure() -> None:
    done = cli(
        "audit",
        "--target",
        "Tesla T4,driver=535.104.05",
        "--with",
        "vllm==0.6.3",
        "--with",
        "torch==2.5.1",
        "--model",
        "qwen2.5-7b-instruct",
        "--stage",
        "inference",
        "--engine",
        "vllm",
        "--dtype",
        "bfloat16",
        "--format",
        "json",
    )
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema"] == "compatsolve.findings/1"
    assert doc["environment"]["gpu.cc"] == "7.5"
    rules = {f["rule"] for f in doc["findings"]}
    assert "requires-dist" in rules  # vllm 0.6.3 pins torch==2.4.0 (snapshot metadata)
    for finding in doc["findings"]:
        assert set(finding) == FINDING_KEYS
        assert finding["kind"] in KINDS and finding["severity"] in ("error", "warning", "info")
        assert finding["explains_error"] is None
        assert all(TAXONOMY_COMPONENTS_RE.match(c) for c in finding["components"])
    kinds = {f["kind"] for f in doc["findings"] if f["severity"] == "error"}
    assert "dtype-unsupported-on-gpu" in kinds


def test_audit_clean_environment_exits_zero() -> None:
    done = cli(
        "audit", "--target", "A100-80GB,driver=550.54.15", "--with", "torch==2.4.0+cu121", "--format", "json"
    )
    doc = json.loads(done.stdout)
    assert done.returncode == (1 if any(f["severity"] == "error" for f in doc["findings"]) else 0)
    assert not [f for f in doc["findings"] if f["severity"] == "error"]


def test_diagnose_ranks_from_the_message_alone() -> None:
    done = cli(
        "diagnose",
        "--error",
        "RuntimeError: FlashAttention only supports Ampere GPUs or newer.",
        "--format",
        "json",
    )
    doc = json.loads(done.stdout)
    top = doc["findings"][0]
    assert top["explains_error"] is True and top["kind"] == "gpu-arch-unsupported"
    assert "flash-attn" in top["components"]


def test_diagnose_facts_confirm_and_sharpen() -> None:
    error = "RuntimeError: FlashAttention only supports Ampere GPUs or newer."
    alone = json.loads(cli("diagnose", "--error", error, "--format", "json").stdout)["findings"][0]
    confirmed = json.loads(
        cli(
            "diagnose",
            "--error",
            error,
            "--target",
            "Tesla T4",
            "--with",
            "flash-attn==2.5.8",
            "--attention",
            "flash_attention_2",
            "--format",
            "json",
        ).stdout
    )["findings"][0]
    assert confirmed["rule"] == alone["rule"]
    assert confirmed["confidence"] > alone["confidence"]
    assert confirmed["severity"] == "error"


def test_diagnose_facts_rule_a_cause_out() -> None:
    error = "RuntimeError: FlashAttention only supports Ampere GPUs or newer."
    done = cli(
        "diagnose",
        "--error",
        error,
        "--target",
        "A100-80GB",
        "--with",
        "flash-attn==2.5.8",
        "--format",
        "json",
    )
    rules = [f["rule"] for f in json.loads(done.stdout)["findings"] if f["explains_error"]]
    assert "flash-attn2-needs-ampere" not in rules


def test_markdown_is_ready_to_paste() -> None:
    done = cli(
        "diagnose",
        "--log",
        "-",
        "--format",
        "markdown",
        stdin="Traceback...\nImportError: libcudart.so.12: cannot open shared object file: No such file\n",
    )
    assert done.returncode in (0, 1)
    assert done.stdout.startswith("### compatsolve report")
    assert "<details><summary>Facts used</summary>" in done.stdout


def test_non_environmental_error_explains_nothing() -> None:
    done = cli(
        "diagnose", "--error", "KeyError: 'input_ids' in my_dataset_collator at line 12", "--format", "json"
    )
    assert done.returncode == 0
    assert not [f for f in json.loads(done.stdout)["findings"] if f["explains_error"]]


def test_unusable_input_is_one_line_exit_2(tmp_path: Path) -> None:
    for args in (
        ("diagnose",),
        ("diagnose", "--log", str(tmp_path / "missing.log")),
        ("audit", "--report", str(tmp_path / "nope.txt")),
        ("diagnose", "--error", "x", "--log", "-"),
    ):
        done = cli(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_unknown_model_and_gpu_are_warnings_in_audit() -> None:
    done = cli("audit", "--target", "Imaginary GPU 9000", "--model", "no-such-model", "--format", "json")
    doc = json.loads(done.stdout)
    unresolved = [f for f in doc["findings"] if f["rule"] == "unresolved-fact"]
    assert len(unresolved) >= 2 and all(f["severity"] == "warning" for f in unresolved)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=3000))
def test_diagnose_never_raises_on_any_text(text: str) -> None:
    found, ruled_out = diagnosing.diagnose(text, {}, load())
    for finding in found:
        assert finding.explains_error is True
    assert isinstance(ruled_out, list)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "no kernel image is available for execution on the device",
                "CUDA out of memory",
                "undefined symbol: _ZN3c104cuda9SetDeviceEi",
                "\x1b[31mERROR\x1b[0m",
                "\r\n",
                "KeyError: 'qwen2'",
                "Bfloat16 is only supported on GPUs with compute capability of at least 8.0",
                "😀",
                "\x00",
            ]
        ),
        max_size=12,
    ).map(" ".join)
)
def test_diagnose_on_log_fragments_orders_and_scores(text: str) -> None:
    found, _ = diagnosing.diagnose(text, {"gpu.cc": "7.5"}, load())
    scores = [f.score for f in found]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < f.confidence < 1 for f in found)


# pip's own conflict report (the form of facebookresearch/xformers issues 752 and 954): xformers
# 0.0.26.post1 pins torch==2.3.0 in its PyPI metadata, so beside torch 2.3.1 the metadata check
# confirms a conflict the message names.
PIP_CONFLICT = (
    "torchvision 0.18.1+cu121 requires torch==2.3.1, but you have torch 2.3.0 which is incompatible."
)
CONFLICTING = ("--with", "torch==2.3.1", "--with", "xformers==0.0.26.post1", "--with", "torchvision==0.18.1")


def _findings(*args: str) -> list[dict[str, object]]:
    done = cli(*args, "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    findings: list[dict[str, object]] = json.loads(done.stdout)["findings"]
    return findings


def test_pip_conflict_report_is_explained_by_the_confirmed_requires_dist_conflict() -> None:
    findings = _findings("diagnose", "--error", PIP_CONFLICT, *CONFLICTING)
    first = findings[0]
    assert first["rule"] == "requires-dist" and first["explains_error"] is True
    assert first["kind"] == "package-pin-conflict" and set(first["components"]) == {"xformers", "torch"}  # type: ignore[arg-type]


def test_requires_dist_conflict_does_not_explain_an_unrelated_error() -> None:
    unrelated = "KeyError: 'input_ids'"
    assert not [
        f for f in _findings("diagnose", "--error", unrelated, *CONFLICTING) if f["rule"] == "requires-dist"
    ]
    audited = [
        f for f in _findings("audit", "--error", unrelated, *CONFLICTING) if f["rule"] == "requires-dist"
    ]
    assert audited and not any(f["explains_error"] for f in audited)


def test_pip_conflict_naming_other_packages_is_not_claimed() -> None:
    other = "fastai 2.7.11 requires pandas<2, but you have pandas 2.2.0 which is incompatible."
    findings = _findings("audit", "--error", other, *CONFLICTING)
    assert not [f for f in findings if f["rule"] == "requires-dist" and f["explains_error"]]


# A traceback's own paths (the form every Python traceback of an installed package has).
TRACEBACK = """Traceback (most recent call last):
  File "/opt/conda/lib/python3.10/site-packages/flash_attn/__init__.py", line 3, in <module>
    from flash_attn.flash_attn_interface import flash_attn_func
ImportError: /opt/conda/lib/python3.10/site-packages/flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so: \
undefined symbol: _ZN3c104cuda9SetDeviceEi
"""


def test_diagnose_reads_the_facts_a_log_states(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text(TRACEBACK)
    doc = json.loads(cli("diagnose", "--log", str(log), "--target", "A100", "--format", "json").stdout)
    assert doc["environment"]["python.version"] == "3.10"
    # explicit facts win over what the log states
    doc = json.loads(
        cli("diagnose", "--log", str(log), "--target", "A100,python=3.11", "--format", "json").stdout
    )
    assert doc["environment"]["python.version"] == "3.11"


def test_paths_of_two_interpreters_state_no_python_version() -> None:
    from compatsolve.sources.report import parse_report

    two = TRACEBACK + '  File "/usr/lib/python3.12/site-packages/x.py", line 1\n'
    assert parse_report(TRACEBACK, "t").python_version == "3.10"
    assert parse_report(two, "t").python_version is None


def test_versions_a_message_states_are_facts_requirements_are_not() -> None:
    from compatsolve.sources.report import parse_report

    # the forms of pip's resolver report and of transformers' dependency check
    stated = parse_report(PIP_CONFLICT, "t", message=True).packages or {}
    assert {n: p.version for n, p in stated.items()} == {"torch": "2.3.0"}
    text = "tokenizers>=0.19 is required, but found tokenizers==0.15.0."
    found = parse_report(text, "t", message=True).packages or {}
    assert found["tokenizers"].version == "0.15.0"
    assert parse_report("vllm 0.8.1 requires torch==2.5.1", "t", message=True).packages is None
    assert parse_report(PIP_CONFLICT, "t").packages is None  # a report's prose makes no packages


FIXTURES = Path(__file__).parent / "fixtures"


def test_diagnose_names_the_packages_a_pip_conflict_report_names() -> None:
    """The signature's component groups catch both sides of pip's real report (fixture made with
    pip 23.2.1; see tests/fixtures/README.md): the finding implicates requests and charset-normalizer."""
    report = (FIXTURES / "pip_install_conflict_report.txt").read_text()
    findings, _ = diagnosing.diagnose(report, {}, load())
    top = findings[0]
    assert top.rule == "pip-installed-set-violates-declared-requirements"
    assert {"requests", "charset-normalizer"} <= set(top.components)
    # packages that the report only mentions as installed are not implicated
    assert "urllib3" not in top.components


def test_a_signature_group_that_diagnose_would_not_read_is_rejected(tmp_path: Path) -> None:
    from compatsolve.errors import KnowledgeError
    from compatsolve.knowledge import parse_knowledge

    root = tmp_path / "knowledge"
    (root / "rules").mkdir(parents=True)
    (root / "rules" / "x.toml").write_text(
        """[[rule]]
id = "x"
title = "t"
kind = "package-pin-conflict"
severity = "warning"
stages = ["inference"]
components = ["python"]
signatures = ["(?P<package>\\\\S+) requires"]
explanation = "e"
fix = "f"
evidence = ["https://pip.pypa.io/en/stable/topics/dependency-resolution/"]
tier = "reported"
"""
    )
    try:
        parse_knowledge(root)
    except KnowledgeError as exc:
        assert "signatures[0]" in str(exc) and "'package'" in str(exc)
    else:
        raise AssertionError("a named group other than component... was accepted")


def _rows(*args: str) -> tuple[int, list[tuple[str, str, bool]]]:
    done = cli(*args, "--format", "json")
    doc = json.loads(done.stdout)
    return done.returncode, [(f["rule"], f["severity"], f["explains_error"]) for f in doc["findings"]]


BLACKWELL_ON_CU126 = ("--target", "RTX 5090", "--with", "torch==2.7.0+cu126")


def test_a_message_nothing_reads_gets_the_environments_established_failures_as_possible_causes() -> None:
    code, rows = _rows("diagnose", "--error", "it stops right after start", *BLACKWELL_ON_CU126)
    assert rows and all(explains and severity == "warning" for _, severity, explains in rows)
    assert ("torch-kernels-miss-gpu-arch", "warning", True) in rows
    assert code == 0  # a possible cause is not an established explanation
    # audit --error keeps the problem itself, as an error, beside the possible explanation
    code, rows = _rows("audit", "--error", "it stops right after start", *BLACKWELL_ON_CU126)
    assert ("torch-kernels-miss-gpu-arch", "error", False) in rows
    assert ("torch-kernels-miss-gpu-arch", "warning", True) in rows
    assert code == 1


def test_no_possible_causes_when_the_message_is_read_or_the_facts_establish_nothing() -> None:
    # a family reads it (several GPUs hang): the family first; the established problem of another
    # kind is still listed, after it, as a possible cause
    _, rows = _rows(
        "diagnose", "--error", "training hangs with 4 GPUs at the first all_reduce", *BLACKWELL_ON_CU126
    )
    assert rows[0][0] == "family-multi-gpu-communication"
    assert ("torch-kernels-miss-gpu-arch", "warning", True) in rows[1:]
    # a torch build that covers the GPU: nothing established, nothing offered
    _, rows = _rows(
        "diagnose",
        "--error",
        "it stops right after start",
        "--target",
        "RTX 5090",
        "--with",
        "torch==2.7.0+cu128",
    )
    assert not any(rule == "torch-kernels-miss-gpu-arch" for rule, _, _ in rows)


def test_a_named_package_the_facts_do_not_declare_is_tried_as_installed() -> None:
    """ "pip install flash-attn fails" on a Tesla M40 (cc 5.2): the flash-attn rules whose GPU
    facts hold here are possible causes, if flash-attn is installed at the version they name."""
    error = "i run the pip install flash-attn, but it fails"
    code, rows = _rows("diagnose", "--error", error, "--target", "Tesla M40")
    hypotheses = [r for r in rows if r[0].startswith("flash-attn")]
    assert hypotheses and all(sev == "warning" and explains for _, sev, explains in hypotheses)
    assert code == 0
    # a GPU that the kernels cover: nothing to suppose
    _, rows = _rows("diagnose", "--error", error, "--target", "A100")
    assert not [r for r in rows if r[0].startswith("flash-attn")]
    # declared, the package is a fact, not a supposition: the rule itself decides
    _, rows = _rows("diagnose", "--error", error, "--target", "A100", "--with", "flash-attn==2.5.8")
    assert not [r for r in rows if r[0].startswith("flash-attn") and r[2]]
