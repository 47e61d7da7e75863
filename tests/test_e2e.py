"""End-to-end evaluation on failures from public issues that are NOT in the study corpus the rules
were mined from, described as a user would give them to `compatsolve audit --error`: hardware,
packages, model and the error line.

Two suites:
- tests/e2e/cases.toml, the development suite. Its sources are outside the study corpus, but the
  rule miners also read the stack's trackers, so some of its threads are cited as rule evidence
  too (in-sample); the figures are printed for both parts.
- tests/e2e/heldout.toml ... heldout27.toml, the held-out suites, each collected
  by someone who did not read the rules, from threads that no file of knowledge/ or tests/ cited.
  A test keeps it that way: a rule may not cite a held-out source. Measured once at collection,
  before any rule was written after seeing them: heldout 7/14 detected and ranked first, 0/5
  false alarms; heldout2 5/16 and 0/4; heldout3 (after 70 more rules were mined from the
  trackers) 6/16 and 0/4; heldout4 (after a second mining round, 306 rules) 10/17 and 0/4;
  heldout5 (after a third round, 351 rules) 8/16 and 0/4; heldout6 (359 rules, and again after
  a fourth round of 30 rules and 33 catalog models, 389 rules, before anyone saw it) 7/17 and 0/5;
  heldout7 (390 rules, and again after a fifth round of 67 rules, 457 rules) 11/19 and 0/5;
  heldout8 (457 rules, and again after a sixth round of 33 general rules, 490 rules) 12/19
  and 0/5; heldout9 (490 rules, and again after 25 rules mined from the engines' own
  start-up checks, 515 rules) 9/19 and 0/5.
  Session 4 added failure families (knowledge/families.toml: when no rule names a message, the
  kind of failure it reads as, as a warning). heldout10-12 were collected while the first
  version was written: 515 rules alone 1/19, 6/19, 11/19; with families 1/19, 7/19, 14/19
  (false alarms 0/5, 2/5, 1/5 with and without). heldout13-15 were collected after that and
  scored with the revised families, which were never shown them: rules alone 3/19, 9/19
  (8 first), 7/19; with families 3/19, 12/19 (11 first), 15/19 (14 first); false alarms 0/15.
  heldout16-18 were collected while a second revision (facts that sharpen a family, tool names,
  a literal prefilter) was written and scored with it before anyone looked at them: rules alone
  7/19, 6/19, 8/19; with the first revision 9/19, 10/19, 11/19; with the second 10/19, 11/19,
  11/19, all ranked first; false alarms 1/15 with each. heldout19-21 were collected while a third
  revision (more cues, read from heldout13-18's misses) and the local-model reader were written:
  rules alone 3/19, 7/19, 7/19; every revision 8/19, 7/19, 9/19, all first; false alarms 0/15.
  The third revision added nothing on them: cues written after seeing misses fit those misses.
  heldout22-24 were collected after all that and scored with the final code: rules alone 7/19,
  3/19 (2 first), 12/19 (11 first); with families 9/19, 6/19 (5 first), 13/19 (12 first);
  false alarms 1/15 with and without. heldout25-27 (56 environmental cases) were collected at
  the end and scored with the final code: rules alone 10/19, 7/19, 2/18; with families 12/19,
  7/19, 3/18, all ranked first; false alarms 0/16 without, 1/16 with.
  Session 5: heldout28-33 (93 environmental cases, 23 not) were collected at its start and scored
  before anyone looked at them: the 515 rules alone 2/13, 4/16, 5/16, 9/16, 4/16, 4/16 (28/93);
  the session-4 code (families) 6, 6, 5, 11, 7, 9 (44/93, all first); the session-5 code at that
  moment (signature component groups, possible causes from the facts) 7, 6, 5, 12, 8, 9 (47/93,
  46 first); false alarms 1/23 with each (heldout29, accepted below). heldout34-39 (96
  environmental, 24 not) were collected at its end and scored with the final code: rules alone
  1, 2, 8, 7, 4, 6 (28/96); the session-4 code 4, 5, 10, 11, 8, 9 (47/96, 46 first); the final
  code 4, 4, 10, 12, 8, 9 (47/96, 46 first); no false alarm. The session's 24 new rules and cues,
  read from heldout10-33's misses, gained one case there and lost one to a label boundary.
  Session 6: heldout40-45 (94 environmental, 25 not) were collected at its start, after the
  family readings (a missing name read both as removed by a newer release and as not yet in an
  older one, ordered by PyPI release dates) were written, and scored before anyone looked at
  them: rules alone 4, 3, 6, 5, 4, 3 (25/94, 24 first); the session-5 code 5, 4, 6, 7, 6, 8
  (36/94, 35 first); with the readings 6, 5, 6, 7, 6, 8 (38/94, 35 first); false alarms 2/25
  with each (heldout41, heldout45, accepted below).
  heldout46-51 (80 environmental, 23 not) were collected after the readings and the components
  the families' kinds implicate by definition were committed, and scored before anyone looked at
  them: rules alone 5, 2, 2, 3, 3, 6 (21/80); the session-5 code 9, 3, 5, 5, 5, 7 (34/80, all
  first); the session-6 code 9, 4, 6, 5, 5, 8 (37/80, 35 first); false alarms 2/23 with each
  (heldout46, heldout51, accepted below).
  heldout52-57 (76 environmental, 25 not) were collected at the end, after an AMD GPU catalog
  (gfx targets, ROCm and Ollama support lists) and possible causes after a family were added,
  and scored before anyone looked at them: rules alone 0, 1, 2, 8, 1, 3 (15/76); the session-5
  code 5, 1, 8, 11, 7, 5 (37/76, 35 first); with the readings and implied components 5, 2, 9,
  11, 7, 7 (41/76, 37 first); the final code the same 41/76 (the AMD rules and the later
  possible causes found nothing more there); false alarms 1/25 with each (heldout53).
  Session 7: heldout58-63 (74 environmental, 23 not) were collected at its start, while the API
  history (which releases define a missing name, from each release's source on PyPI), the
  release-files check and four engine GPU floors were being written, and scored after those were
  committed, before anyone looked at them: rules alone 2, 5, 4, 4, 1, 3 (19/74); the session-6
  code 6, 8, 6, 8, 6, 6 (40/74, 37 first); the session-7 code the same 40/74, 38 first; no false
  alarm with any. (A class member's history was then made a lead, never an error, after one of
  these cases showed an attribute set from outside its class.)
  Session 10: heldout76-81 (86 environmental, 25 not) were collected at its start, while the
  `--engine` change and the Requires-Python / WSL / cuDNN-pair rules were written, and scored with
  the session-9 code: 51/86 (49 first), no false alarm; after the rules written from their misses,
  61/86 (60 first).
  Rules added afterwards for the failure families they exposed raised the earlier suites'
  scores, so only the at-collection figures measure generalisation.

Measured: for environmental cases, whether the true cause (kind and an implicated component) is
found among the error-explaining findings (detection) and ranked first; for non-environmental
cases (user code, data), whether an error-severity finding wrongly claims to explain the error
(false alarm). The audit issue's goals are 90 % detected and 75 % ranked first. The floors below
are regression guards at the levels measured when they were last raised, not the goals.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from compatsolve import audit as auditing
from compatsolve import diagnose as diagnosing
from compatsolve.api_history import load_history
from compatsolve.engines import canonical_engine
from compatsolve.environment import RunSettings
from compatsolve.knowledge import load
from compatsolve.names import canonicalize_name
from compatsolve.quantization import canonical_quantization
from compatsolve.snapshot import published
from compatsolve.sources.assemble import EnvironmentRequest, build_environments

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FLOORS = {  # suite: (detection, ranked first)
    "cases": (0.95, 0.90),
    "heldout": (1.00, 1.00),
    "heldout2": (0.65, 0.65),
    "heldout3": (0.90, 0.90),
    "heldout4": (0.85, 0.85),
    "heldout5": (0.90, 0.85),
    "heldout6": (0.80, 0.75),
    "heldout7": (0.85, 0.80),
    "heldout8": (0.90, 0.90),
    "heldout9": (0.80, 0.80),
    "heldout10": (0.50, 0.50),
    "heldout11": (0.65, 0.55),
    "heldout12": (0.85, 0.85),
    "heldout13": (0.50, 0.45),
    "heldout14": (0.70, 0.60),
    "heldout15": (0.90, 0.85),
    "heldout16": (0.65, 0.65),
    # heldout17 and heldout26 (session 9): each lost a case when the harness began to read
    # `quantization` as `--quantization` does; "bitsandbytes" (4- or 8-bit?) is refused there, and
    # passed raw it had made two bitsandbytes rules' conditions false and left the message to a family
    "heldout17": (0.70, 0.70),
    "heldout18": (0.75, 0.70),
    "heldout19": (0.65, 0.60),
    "heldout20": (0.50, 0.40),
    "heldout21": (0.45, 0.45),
    "heldout22": (0.60, 0.60),
    "heldout23": (0.40, 0.35),
    "heldout24": (0.80, 0.70),
    "heldout25": (0.75, 0.70),
    "heldout26": (0.45, 0.45),
    "heldout27": (0.35, 0.30),
    "heldout28": (0.75, 0.75),
    "heldout29": (0.55, 0.35),
    "heldout30": (0.50, 0.35),
    "heldout31": (0.85, 0.80),
    "heldout32": (0.55, 0.55),
    "heldout33": (0.60, 0.55),
    "heldout34": (0.35, 0.15),
    "heldout35": (0.40, 0.30),
    "heldout36": (0.60, 0.60),
    "heldout37": (0.75, 0.75),
    "heldout38": (0.55, 0.55),
    "heldout39": (0.60, 0.60),
    "heldout40": (0.40, 0.25),
    "heldout41": (0.35, 0.30),
    "heldout42": (0.55, 0.40),
    "heldout43": (0.50, 0.50),
    "heldout44": (0.50, 0.50),
    "heldout45": (0.55, 0.55),
    "heldout46": (0.75, 0.75),
    "heldout47": (0.35, 0.30),
    "heldout48": (0.35, 0.30),
    "heldout49": (0.45, 0.45),
    "heldout50": (0.40, 0.40),
    "heldout51": (0.50, 0.50),
    "heldout52": (0.55, 0.55),
    "heldout53": (0.10, 0.10),
    "heldout54": (0.60, 0.40),
    "heldout55": (0.75, 0.75),
    "heldout56": (0.50, 0.50),
    "heldout57": (0.75, 0.65),
    "heldout58": (0.85, 0.85),
    "heldout59": (0.50, 0.50),
    "heldout60": (0.40, 0.40),
    "heldout61": (0.65, 0.65),
    "heldout62": (0.50, 0.45),
    "heldout63": (0.40, 0.35),
    # collected in session 8, scored at collection (docs/audit.md)
    # heldout64 first 0.40 -> 0.30 (session 10): a model the catalog lacks is now sized from its name
    # (InternVL2-Llama3-76B), and on the catalog's default 16 GB V100 its weights exceed 8 cards, a
    # true statement that now outranks the weak flash-attn finding of a message that names no error
    "heldout64": (0.65, 0.30),
    "heldout65": (0.65, 0.50),
    "heldout66": (0.30, 0.30),
    "heldout67": (0.75, 0.65),
    "heldout68": (0.55, 0.55),
    "heldout69": (0.60, 0.60),
    # session 9's fresh round (collected while the cuDNN / macOS rules were written)
    "heldout70": (0.20, 0.10),
    "heldout71": (0.60, 0.60),
    "heldout72": (0.60, 0.55),
    "heldout73": (0.55, 0.55),
    "heldout74": (0.20, 0.20),
    "heldout75": (0.50, 0.50),
    # session 10's fresh round (collected while --engine and the Requires-Python rule were written)
    "heldout76": (0.45, 0.45),
    "heldout77": (0.50, 0.50),
    "heldout78": (0.75, 0.75),
    "heldout79": (0.50, 0.50),
    "heldout80": (0.55, 0.40),
    "heldout81": (0.80, 0.80),
}
# Non-environmental cases where an error finding explains the message, accepted as measured at
# collection. heldout11: twice "DeepSpeed Zero-3 is not compatible with `low_cpu_mem_usage=True`
# or with passing a `device_map`" -- the rule deepspeed-zero3-with-device-map names that setting,
# the collector judged it the user's code (a label boundary of config-error, left as labelled).
# heldout12: "Torch not compiled with CUDA enabled" on Apple Silicon; the first finding is
# cuda-requested-on-macos (CUDA code path on macOS: the code's fault, as the thread found), but
# the general rule torch-build-without-cuda-used-for-cuda, an error, also claims it.
# heldout16: an image model's GGUF (sd3) loaded into LM Studio: "unknown model architecture: 'sd3'"
# is what ollama-too-old-for-model-architecture (an error) names; the cause was the wrong kind of
# model, not an old runtime.
# heldout24: "CUDA Setup failed despite GPU being available" from a bitsandbytes release whose own
# CUDA setup was buggy (fixed by upgrading); bitsandbytes-cannot-find-cuda-runtime names the
# runtime library the message says it could not set up.
# heldout25: GPUStack's "No suitable workers ... adjust --gpu-memory-utilization" for a model larger
# than one worker's GPUs: weights-exceed-gpu-memory (an audit error, promoted because the message
# reads as memory) is a true fact, but the thread's cause was that GPUStack could not yet spread a
# deployment over workers.
# heldout29: "cpu_adam.so: cannot open shared object file" after a DeepSpeed CPU-Adam JIT build:
# stale-torch-extensions-jit-cache names that failure; the thread's cause was a DeepSpeed bug fixed in
# its code (the same claim with the session-start code and with the rules alone).
# heldout41: "Watchdog caught collective operation timeout: WorkNCCL(...ALLREDUCE...)" while one rank
# tokenized a large corpus: distributed-timeout-while-rank0-preprocesses-or-loads (config-error) names
# exactly that; the collector judged the cause the user's data preparation, not the environment.
# heldout45: "version `GLIBC_2.34' not found (required by tgpt)": binary-needs-newer-glibc names the
# message; the thread's cause was a release binary linked dynamically by mistake, re-released.
# heldout46: "version `GLIBCXX_3.4.32' not found" in LocalAI's NeMo backend image:
# system-libstdcxx-too-old-for-binary names it; the cause was the image's own build, fixed by LocalAI.
# heldout51: "ggml was not compiled with any CUDA arch <= 750": ggml-cuda-binary-lacks-gpu-arch-device-code
# names it; the thread bisected it to a llama.cpp regression, the build was fine.
# heldout53: the same deepspeed-zero3-with-device-map boundary as heldout11 (a training script passing
# device_map under ZeRO-3).
# All five were claimed the same way by the rules alone and by the session-5 code at collection.
# heldout37 (session 7): "No module named 'flash_attn.ops.triton'" with flash-attn 2.1.2 declared.
# The API history is right that 2.1.2 ships no flash_attn.ops.triton package (its directory had no
# __init__.py, so it was left out) and that 2.2.0 has it; the collector labelled the broken
# release a packaging bug, not an environment fact.
# heldout32 (session 9): "Failed to load the default metallib. This library is using language
# version 4.0 which is not supported on this OS" on macOS 15: macos-older-than-binary-deployment-target
# names it (its fix says app builders should pin mlx-metal for their lowest macOS); this collector
# judged vMLX's bundling the cause, while heldout38's and heldout44's judged the same message an OS
# too old for the binary.
# heldout74 (session 9): "no device code compatible with CUDA arch 750" from koboldcpp 1.92.1:
# ggml-cuda-binary-lacks-gpu-arch-device-code names it; the collector filed the release's missing
# sm_75 code as a regression fixed in the next build.
ACCEPTED_FALSE_ALARMS = {
    "heldout11": 2,
    "heldout12": 1,
    "heldout16": 1,
    "heldout24": 1,
    "heldout25": 1,
    "heldout29": 1,
    "heldout37": 1,
    "heldout41": 1,
    "heldout45": 1,
    "heldout46": 1,
    "heldout51": 1,
    "heldout53": 1,
    "heldout32": 1,
    "heldout74": 1,
}
E2E = Path(__file__).parent / "e2e"
SUITES: dict[str, list[dict[str, Any]]] = {
    name: tomllib.loads((E2E / f"{name}.toml").read_text())["case"] for name in FLOORS
}
CASES = SUITES["cases"]
CORPUS = {
    r["link"]
    for r in tomllib.loads(
        (Path(__file__).parent.parent / "knowledge" / "corpus" / "records.toml").read_text()
    )["record"]
}


def judge(case: dict[str, Any]) -> list[Any]:
    kb = load()
    run = RunSettings(
        model=case.get("model"),
        stage=case.get("stage"),
        # as `--engine` reads it: any name, the known ones in their canonical spelling
        engine=canonical_engine(case["engine"]) if "engine" in case else None,
        dtype=case.get("dtype"),
        # as `--quantization` reads it; a spelling it refuses is left out, as the user would
        quantization=canonical_quantization(case["quantization"]) if "quantization" in case else None,
        tp=case.get("tp"),
    )
    request = EnvironmentRequest(
        targets=(case["target"],) if case.get("target") else (),
        with_packages=tuple(case.get("packages", ())),
        run=run,
        lenient=True,
        error_text=case["error"],
        # a described case has no live machine: an empty report stands in for "no probe"
        reports=() if case.get("target") else ("/dev/null",),
    )
    env = build_environments(request, kb)[0]
    judged = auditing.audit(env, kb)
    findings, _ = diagnosing.diagnose(
        case["error"], judged.facts, kb, extra=judged.findings, published=published, apis=load_history
    )
    return findings


def _hit(finding: Any, case: dict[str, Any]) -> bool:
    # components are normalized PyPI names (shared/taxonomy.md): a case's "llama.cpp" is llama-cpp
    expected = {canonicalize_name(c) for c in case.get("components", ())}
    return finding.kind == case["kind"] and (not expected or bool(set(finding.components) & expected))


def _cited_urls() -> set[str]:
    root = Path(__file__).parent.parent / "knowledge"
    text = "\n".join(p.read_text() for p in root.rglob("*.toml"))
    return set(re.findall(r"https://github\.com/[^\s\"']+", text))


def test_cases_are_public_and_outside_the_mined_corpus() -> None:
    assert len(CASES) >= 40
    for suite in SUITES.values():
        for case in suite:
            assert case["source"].startswith("https://github.com/")
            assert case["source"] not in CORPUS
    ids = [c["id"] for suite in SUITES.values() for c in suite]
    assert len(ids) == len(set(ids))


def test_heldout_sources_stay_uncited() -> None:
    """A held-out thread cited by a rule is no longer held out: move its case to cases.toml."""
    cited = _cited_urls()
    held_out = [c for name, suite in SUITES.items() if name != "cases" for c in suite]
    assert not [c["id"] for c in held_out if c["source"] in cited]


def _evaluate(cases: list[dict[str, Any]]) -> dict[str, Any]:
    cited = _cited_urls()
    rows = []
    for case in cases:
        findings = judge(case)
        explaining = [f for f in findings if f.explains_error]
        rows.append(
            {
                "id": case["id"],
                "environmental": case["environmental"],
                "in_sample": case["source"] in cited,
                "found": case["environmental"] and any(_hit(f, case) for f in explaining),
                "first": case["environmental"] and bool(explaining) and _hit(explaining[0], case),
                "false_alarm": (not case["environmental"])
                and any(f.severity == "error" and f.explains_error for f in findings),
                # weaker: a warning (a family, a possible cause) offered as the explanation
                "warned": (not case["environmental"]) and bool(explaining),
            }
        )
    env_rows = [r for r in rows if r["environmental"]]
    other = [r for r in rows if not r["environmental"]]
    out_of_sample = [r for r in env_rows if not r["in_sample"]]
    return {
        "environmental": len(env_rows),
        "detected": sum(r["found"] for r in env_rows),
        "ranked_first": sum(r["first"] for r in env_rows),
        "out_of_sample": len(out_of_sample),
        "out_of_sample_detected": sum(r["found"] for r in out_of_sample),
        "out_of_sample_first": sum(r["first"] for r in out_of_sample),
        "non_environmental": len(other),
        "false_alarms": sum(r["false_alarm"] for r in other),
        "warnings_offered": sum(r["warned"] for r in other),
        "missed": [r["id"] for r in env_rows if not r["found"]],
        "alarms": [r["id"] for r in other if r["false_alarm"]],
    }


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    summaries = {name: _evaluate(cases) for name, cases in SUITES.items()}
    for name, summary in summaries.items():
        print(f"\ne2e {name}:", summary)
    return summaries


@pytest.mark.parametrize("suite", list(FLOORS))
@pytest.mark.parametrize(("metric", "floor_index"), [("detected", 0), ("ranked_first", 1)])
def test_rates(results: dict[str, dict[str, Any]], suite: str, metric: str, floor_index: int) -> None:
    r = results[suite]
    rate = r[metric] / r["environmental"]
    print(f"{suite}: {metric} {r[metric]}/{r['environmental']} = {rate:.0%}; missed {r['missed']}")
    assert rate >= FLOORS[suite][floor_index]


@pytest.mark.parametrize("suite", list(FLOORS))
def test_no_false_alarm_on_non_environmental_cases(results: dict[str, dict[str, Any]], suite: str) -> None:
    r = results[suite]
    print(f"{suite}: false alarms {r['false_alarms']}/{r['non_environmental']}: {r['alarms']}")
    # heldout28's collector found 3 before the search budget ran out, heldout62's and heldout80's 2
    assert r["non_environmental"] >= (2 if suite in ("heldout62", "heldout80") else 3)
    assert r["false_alarms"] == ACCEPTED_FALSE_ALARMS.get(suite, 0)
