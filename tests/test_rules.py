"""Rule conditions: parsing and three-valued evaluation (compatsolve/rules.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compatsolve.errors import KnowledgeError
from compatsolve.rules import Condition, Truth, is_known_fact, parse_condition, parse_fact_test

T, F, U = Truth.TRUE, Truth.FALSE, Truth.UNKNOWN


def ev(when: dict, facts: dict) -> Truth:
    return parse_condition(when, "test.when").evaluate(facts)


def test_truth_is_only_truthy_when_true() -> None:
    assert bool(T) is True
    assert bool(F) is False
    assert bool(U) is False


# ------------------------------------------------------------------ version ranges


@pytest.mark.parametrize(
    ("test", "value", "expected"),
    [
        (">=2", "2.5.8", T),
        (">=2", "1.0.9", F),
        (">=2", None, U),
        (">=2", "not-a-version", U),
        ("<8.0", "7.5", T),
        ("<8.0", "8.0", F),
        ("<8.0", "8.6", F),
        (">=2.0,<2.4", "2.3.1", T),
        (">=2.0,<2.4", "2.4.0", F),
        (">=2.0, <2.4", "1.9", F),
        ("==2.4.0", "2.4.0", T),
        ("==2.4.*", "2.4.1", T),
        ("!=2.4.0", "2.4.0", F),
        ("~=4.41", "4.45.2", T),
        ("~=4.41", "5.0", F),
        (">=2.3", "2.4.0rc1", T),  # pre-releases take part in comparisons
        ("<2.4", "2.4.0rc1", F),  # PEP 440: <V excludes V's own pre-releases
        (">=535", "535.104.05", T),
        ("<535", "470.82.01", T),
        (">=12.1", 12.4, T),  # a number fact compares as a version
        (">=8", 8, T),
        ("< 8.0", "7.0", T),
    ],
)
def test_version_ranges(test: str, value, expected: Truth) -> None:
    facts = {} if value is None else {"gpu.cc": value}
    assert ev({"gpu.cc": test}, facts) is expected


def test_range_on_package_fact() -> None:
    when = {"pkg.flash-attn": ">=2", "gpu.cc": "<8.0"}
    assert ev(when, {"pkg.flash-attn": "2.5.8", "gpu.cc": "7.5"}) is T
    assert ev(when, {"pkg.flash-attn": "2.5.8", "gpu.cc": "8.0"}) is F
    assert ev(when, {"pkg.flash-attn": "2.5.8"}) is U
    assert ev(when, {"gpu.cc": "8.0"}) is F  # FALSE dominates UNKNOWN in an "all"


# ------------------------------------------------------------------ @fact comparisons


@pytest.mark.parametrize(
    ("test", "facts", "expected"),
    [
        (">@driver.cuda", {"torch.cuda": "12.4", "driver.cuda": "12.2"}, T),
        (">@driver.cuda", {"torch.cuda": "12.1", "driver.cuda": "12.2"}, F),
        (">@driver.cuda", {"torch.cuda": "12.2", "driver.cuda": "12.2"}, F),
        (">=@driver.cuda", {"torch.cuda": "12.2", "driver.cuda": "12.2"}, T),
        ("==@driver.cuda", {"torch.cuda": "12.2", "driver.cuda": "12.2.0"}, T),
        ("!=@driver.cuda", {"torch.cuda": "12.2", "driver.cuda": "12.4"}, T),
        ("<@driver.cuda", {"torch.cuda": "11.8", "driver.cuda": "12.4"}, T),
        ("<=@driver.cuda", {"torch.cuda": "13.0", "driver.cuda": "12.4"}, F),
        (">@driver.cuda", {"torch.cuda": "12.4"}, U),
        (">@driver.cuda", {"driver.cuda": "12.4"}, U),
        (">@driver.cuda", {"torch.cuda": "12.4", "driver.cuda": "n/a"}, U),
        (">@driver.cuda,<=13.0", {"torch.cuda": "12.4", "driver.cuda": "12.2"}, T),
        (">@driver.cuda,<=13.0", {"torch.cuda": "13.1", "driver.cuda": "12.2"}, F),
        (">@driver.cuda,<=13.0", {"torch.cuda": "12.4"}, U),
        ("<=13.0,>@driver.cuda", {"torch.cuda": "13.1"}, F),  # a FALSE literal part decides
    ],
)
def test_fact_comparisons(test: str, facts: dict, expected: Truth) -> None:
    assert ev({"torch.cuda": test}, facts) is expected


@pytest.mark.parametrize("test", [">@gpu.nonsense", "~=@driver.cuda", ">@"])
def test_bad_fact_comparisons(test: str) -> None:
    with pytest.raises(KnowledgeError, match=r"test\.when\.torch\.cuda"):
        parse_condition({"torch.cuda": test}, "test.when")


# ------------------------------------------------------------------ equality


@pytest.mark.parametrize(
    ("test", "value", "expected"),
    [
        ("vllm", "vllm", T),
        ("vllm", "VLLM", T),  # text is case-insensitive
        ("vllm", " vllm ", T),
        ("vllm", "sglang", F),
        (["float16", "auto"], "auto", T),
        (["float16", "auto"], "bfloat16", F),
        ("vllm", None, U),
    ],
)
def test_text_equality(test, value, expected: Truth) -> None:
    facts = {} if value is None else {"run.engine": value}
    assert ev({"run.engine": test}, facts) is expected


@pytest.mark.parametrize(
    ("fact", "test", "value", "expected"),
    [
        ("model.moe", True, True, T),
        ("model.moe", True, False, F),
        ("model.moe", False, False, T),
        ("model.moe", True, 1, F),  # a bool never equals a number
        ("model.moe", True, "true", F),
        ("gpu.count", 8, 8, T),
        ("gpu.count", 8, 8.0, T),
        ("gpu.count", 8, 4, F),
        ("gpu.count", [2, 4, 8], 4, T),
        ("gpu.vram_gib", 24.0, 24, T),
        ("run.tp", 2, True, F),
        ("env.NCCL_P2P_DISABLE", "1", "1", T),
        ("env.NCCL_P2P_DISABLE", "1", "0", F),
    ],
)
def test_typed_equality(fact: str, test, value, expected: Truth) -> None:
    assert ev({fact: test}, {fact: value}) is expected


# ------------------------------------------------------------------ presence


@pytest.mark.parametrize(
    ("fact", "test", "facts", "expected"),
    [
        ("pkg.xformers", "*", {"pkg.xformers": "0.0.26"}, T),
        ("pkg.xformers", "*", {}, U),
        ("pkg.xformers", "*", {"_packages_complete": True}, F),
        ("pkg.xformers", "-", {"pkg.xformers": "0.0.26"}, F),
        ("pkg.xformers", "-", {}, U),
        ("pkg.xformers", "-", {"_packages_complete": True}, T),
        ("pkg.xformers", "-", {"_packages_complete": False}, U),
        ("pkg.xformers", "-", {"_packages_complete": "true"}, U),  # only the real flag counts
        ("pkg.xformers", " - ", {"_packages_complete": True}, T),
        ("env.NCCL_P2P_DISABLE", "-", {"_env_complete": True}, T),
        ("env.NCCL_P2P_DISABLE", "-", {"_packages_complete": True}, U),
        ("env.NCCL_P2P_DISABLE", "*", {"env.NCCL_P2P_DISABLE": "1"}, T),
        ("pkg.vllm", "-", {"_env_complete": True}, U),
        ("gpu.name", "-", {"_packages_complete": True, "_env_complete": True}, U),  # never complete
        ("gpu.name", "*", {"gpu.name": "Tesla T4"}, T),
    ],
)
def test_presence(fact: str, test: str, facts: dict, expected: Truth) -> None:
    assert ev({fact: test}, facts) is expected


# ------------------------------------------------------------------ any / not


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"run.engine": "vllm"}, T),
        ({"pkg.vllm": "0.5.3"}, T),
        ({"run.engine": "transformers", "_packages_complete": True}, F),
        ({"run.engine": "transformers"}, U),  # pkg.vllm undecided
        ({}, U),
    ],
)
def test_any(facts: dict, expected: Truth) -> None:
    assert ev({"any": [{"run.engine": "vllm"}, {"pkg.vllm": "*"}]}, facts) is expected


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"env.NCCL_P2P_DISABLE": "1"}, F),
        ({"env.NCCL_P2P_DISABLE": "0"}, T),
        ({}, U),
    ],
)
def test_not(facts: dict, expected: Truth) -> None:
    assert ev({"not": {"env.NCCL_P2P_DISABLE": "1"}}, facts) is expected


def test_nested_combination() -> None:
    when = {
        "gpu.count": ">1",
        "any": [{"run.engine": "vllm"}, {"any": [{"pkg.vllm": "*"}, {"pkg.sglang": "*"}]}],
        "not": {"gpu.p2p": "nvlink"},
    }
    assert ev(when, {"gpu.count": 2, "pkg.sglang": "0.3", "gpu.p2p": "pcie"}) is T
    assert ev(when, {"gpu.count": 2, "pkg.sglang": "0.3", "gpu.p2p": "nvlink"}) is F
    assert ev(when, {"gpu.count": 2, "pkg.sglang": "0.3"}) is U
    assert ev(when, {"gpu.count": 1, "pkg.sglang": "0.3"}) is F
    cond = parse_condition(when, "w")
    assert cond.facts() == {"gpu.count", "run.engine", "pkg.vllm", "pkg.sglang", "gpu.p2p"}


def test_condition_facts_include_compared_facts() -> None:
    cond = parse_condition({"torch.cuda": ">@driver.cuda", "not": {"toolkit.cuda": "<@torch.cuda"}}, "w")
    assert cond.facts() == {"torch.cuda", "driver.cuda", "toolkit.cuda"}


# ------------------------------------------------------------------ parse errors


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ("gpu.cc = 8", "w"),
        ([{"gpu.cc": "8.0"}], "w"),
        ({}, "w"),
        ({"any": []}, "w.any"),
        ({"any": {"gpu.cc": "8.0"}}, "w.any"),
        ({"any": [{"gpu.cc": "8.0"}, {}]}, "w.any[1]"),
        ({"any": [{"gpu.cc": "8.0"}, "x"]}, "w.any[1]"),
        ({"not": {}}, "w.not"),
        ({"not": {"gpu.colour": "red"}}, "w.not.gpu.colour"),
        ({"gpu.colour": "red"}, "w.gpu.colour"),
        ({"pkg.": "*"}, "w.pkg."),
        ({"gpu.cc": ">=8.0,foo"}, "w.gpu.cc"),
        ({"gpu.cc": ">=8.0,"}, "w.gpu.cc"),
        ({"pkg.torch": ">=two"}, "w.pkg.torch"),
        ({"gpu.cc": {"min": "8.0"}}, "w.gpu.cc"),
        ({"gpu.cc": []}, "w.gpu.cc"),
        ({"gpu.cc": [["8.0"]]}, "w.gpu.cc"),
        ({"gpu.cc": None}, "w.gpu.cc"),
    ],
)
def test_parse_errors_name_where(raw, where: str) -> None:
    with pytest.raises(KnowledgeError) as info:
        parse_condition(raw, "w")
    assert str(info.value).startswith(where + ":") or str(info.value).startswith(where + " "), str(info.value)


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("gpu.cc", True),
        ("pkg.flash-attn", True),
        ("env.NCCL_P2P_DISABLE", True),
        ("pkg.", False),
        ("env.", False),
        ("gpu.colour", False),
        ("torch.cuda_major", True),
        ("memory.weights_gib", True),
    ],
)
def test_is_known_fact(name: str, known: bool) -> None:
    assert is_known_fact(name) is known


def test_parse_fact_test_shapes() -> None:
    assert parse_fact_test("pkg.x", "*", "w").presence is True
    assert parse_fact_test("pkg.x", "-", "w").presence is False
    assert parse_fact_test("run.dtype", ["float16", "auto"], "w").equals == ("float16", "auto")
    t = parse_fact_test("torch.cuda", ">@driver.cuda,<13", "w")
    assert t.specifier is not None and [c.other for c in t.comparisons] == ["driver.cuda"]


# ------------------------------------------------------------------ properties

_VERSIONS = st.lists(st.integers(0, 30), min_size=1, max_size=3).map(lambda p: ".".join(map(str, p)))


@settings(max_examples=200, deadline=None)
@given(value=_VERSIONS, bound=_VERSIONS)
def test_range_complements(value: str, bound: str) -> None:
    facts = {"gpu.cc": value}
    ge, lt = ev({"gpu.cc": f">={bound}"}, facts), ev({"gpu.cc": f"<{bound}"}, facts)
    assert {ge, lt} == {T, F}
    assert ev({"not": {"gpu.cc": f">={bound}"}}, facts) is lt


@settings(max_examples=200, deadline=None)
@given(a=_VERSIONS, b=_VERSIONS)
def test_fact_comparison_agrees_with_literal(a: str, b: str) -> None:
    facts = {"torch.cuda": a, "driver.cuda": b}
    assert ev({"torch.cuda": ">@driver.cuda"}, facts) is ev({"torch.cuda": f">{b}"}, facts)


_FACT_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=False, width=32),
    st.text(max_size=10),
    _VERSIONS,
)
_FACTS = st.dictionaries(
    st.sampled_from(
        [
            "gpu.cc",
            "pkg.vllm",
            "run.engine",
            "model.moe",
            "gpu.count",
            "driver.cuda",
            "_packages_complete",
            "env.X",
        ]
    ),
    _FACT_VALUES.filter(lambda v: v is not None),
    max_size=8,
)
_WHEN = st.sampled_from(
    [
        {"gpu.cc": "<8.0"},
        {"pkg.vllm": "*"},
        {"pkg.vllm": "-"},
        {"run.engine": ["vllm", "sglang"]},
        {"model.moe": True},
        {"gpu.count": 8},
        {"gpu.cc": ">@driver.cuda"},
        {"env.X": "-"},
        {"any": [{"pkg.vllm": ">=0.5"}, {"gpu.cc": "<8.0"}], "not": {"run.engine": "vllm"}},
    ]
)


@settings(max_examples=300, deadline=None)
@given(when=_WHEN, facts=_FACTS)
def test_evaluation_never_raises_and_not_is_involutive(when: dict, facts: dict) -> None:
    value = ev(when, facts)
    assert isinstance(value, Truth)
    negated = Condition(none_of=parse_condition(when, "w")).evaluate(facts)
    assert {value, negated} in ({T, F}, {U})


@settings(max_examples=200, deadline=None)
@given(when=_WHEN, facts=_FACTS, extra=st.text(min_size=1, max_size=8))
def test_unrelated_facts_do_not_change_the_answer(when: dict, facts: dict, extra: str) -> None:
    assert ev(when, facts) is ev(when, {**facts, f"unrelated.{extra}": "x"})


def test_an_assumed_fact_holds_as_tested_but_never_as_absent() -> None:
    from compatsolve.rules import Truth, parse_condition

    cond = parse_condition({"pkg.flash-attn": ">=2", "gpu.cc": "<8.0"}, "t")
    facts = {"gpu.cc": "7.5"}
    assert cond.evaluate(facts) is Truth.UNKNOWN
    assert cond.evaluate(facts, frozenset({"pkg.flash-attn"})) is Truth.TRUE
    assert cond.evaluate({"gpu.cc": "8.6"}, frozenset({"pkg.flash-attn"})) is Truth.FALSE
    # a known fact is never overridden by the assumption
    known = {"gpu.cc": "7.5", "pkg.flash-attn": "1.0.9"}
    assert cond.evaluate(known, frozenset({"pkg.flash-attn"})) is Truth.FALSE
    # "absent" is not assumed, and nothing is assumed inside a `not`
    absent = parse_condition({"pkg.flash-attn": "-", "gpu.cc": "<8.0"}, "t")
    assert absent.evaluate(facts, frozenset({"pkg.flash-attn"})) is Truth.FALSE
    negated = parse_condition({"gpu.cc": "<8.0", "not": {"pkg.flash-attn": "*"}}, "t")
    assert negated.evaluate(facts, frozenset({"pkg.flash-attn"})) is Truth.UNKNOWN
