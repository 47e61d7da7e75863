"""`--target SPEC` grammar (compatsolve/sources/target.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compatsolve.environment import Environment
from compatsolve.errors import InputError
from compatsolve.knowledge import alias_key
from compatsolve.sources.target import ARCHES, KEYS, OS_NAMES, parse_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent

with (REPO / "knowledge" / "gpus.toml").open("rb") as _handle:
    GPU_ENTRIES = tomllib.load(_handle).get("gpu", [])

# Every spelling knowledge/gpus.toml declares, with the entry that declares it. A spelling two
# entries share (after alias_key folding) is ambiguous and skipped: kb lint reports those.
_OWNERS: dict[str, set[str]] = {}
for _entry in GPU_ENTRIES:
    for _name in (_entry["id"], _entry["name"], *_entry.get("names", []), *_entry.get("aliases", [])):
        _OWNERS.setdefault(alias_key(_name), set()).add(_entry["id"])
CATALOG_SPELLINGS = sorted(
    {
        (name, entry["id"])
        for entry in GPU_ENTRIES
        for name in (entry["id"], entry["name"], *entry.get("names", []), *entry.get("aliases", []))
        if len(_OWNERS[alias_key(name)]) == 1 and "," not in name
    }
)


def _entry(gpu_id: str) -> dict:
    return next(e for e in GPU_ENTRIES if e["id"] == gpu_id)


# ------------------------------------------------------------------ GPU names


@pytest.mark.parametrize(("spelling", "gpu_id"), CATALOG_SPELLINGS, ids=[s for s, _ in CATALOG_SPELLINGS])
def test_every_catalog_spelling_resolves_to_its_entry(kb, spelling: str, gpu_id: str) -> None:
    env = parse_target(spelling, kb)
    assert env.gpus is not None and len(env.gpus) == 1
    gpu = env.gpus[0]
    entry = _entry(gpu_id)
    assert gpu.catalog_id == gpu_id
    assert gpu.name == entry["name"]
    assert gpu.cc == entry["cc"]
    if "memory_gib" in entry:
        assert gpu.memory_total_mib == int(entry["memory_gib"] * 1024)


@pytest.mark.parametrize(
    ("spelling", "must_contain", "memory_gib"),
    [
        ("A100-80GB", "A100", 80),
        ("RTX 4090", "4090", None),
        ("Tesla T4", "T4", None),
        ("H100", "H100", None),
        ("NVIDIA GeForce RTX 4090", "4090", None),
        ("rtx4090", "4090", None),
    ],
)
def test_common_aliases_resolve(kb, spelling: str, must_contain: str, memory_gib: int | None) -> None:
    env = parse_target(spelling, kb)
    assert env.gpus and env.gpus[0].catalog_id is not None, spelling
    gpu = env.gpus[0]
    model = kb.gpu(spelling)
    assert model is not None and gpu.catalog_id == model.id
    assert must_contain.lower() in gpu.name.lower()
    assert gpu.cc == model.cc
    if memory_gib is not None:
        assert gpu.memory_total_mib == memory_gib * 1024


@pytest.mark.parametrize(
    "spec", ["gpu=RTX 4090", "RTX 4090", "  RTX 4090  ", "gpu = RTX 4090", "GPU=rtx 4090"]
)
def test_bare_first_token_and_gpu_key_are_the_same(kb, spec: str) -> None:
    assert parse_target(spec, kb).gpus == parse_target("gpu=RTX 4090", kb).gpus


def test_example_from_docstring(kb) -> None:
    env = parse_target("A100-80GB,count=8,driver=535.104.05", kb)
    assert env.gpus is not None and len(env.gpus) == 8
    assert [g.index for g in env.gpus] == list(range(8))
    assert env.driver_version == "535.104.05"
    assert env.origins["gpus"] == "--target"
    assert env.origins["driver_version"] == "--target"
    env = parse_target("gpu=RTX 4090,cuda=12.4,os=wsl", kb)
    assert env.driver_cuda == "12.4" and env.os_name == "wsl"


@pytest.mark.parametrize("spec", ["none", "cpu", "CPU", "gpu=none"])
def test_no_gpu(kb, spec: str) -> None:
    env = parse_target(spec, kb)
    assert env.gpus == ()
    assert env.facts()["gpu.count"] == 0


@pytest.mark.parametrize(
    ("spec", "close"),
    [("A100-90GB", "a100"), ("RTX 4099", "4090"), ("H1000", "h100")],
)
def test_unknown_gpu_lists_close_matches(kb, spec: str, close: str) -> None:
    with pytest.raises(InputError) as info:
        parse_target(spec, kb)
    message = str(info.value)
    assert "unknown GPU" in message and repr(spec) in message
    assert "did you mean" in message
    assert close in message.lower()


def test_unknown_gpu_without_close_match_points_to_catalog(kb) -> None:
    with pytest.raises(InputError, match=r"gpus\.toml"):
        parse_target("Zzqxj Frobnicator", kb)


def test_unknown_gpu_lenient_is_a_warning(kb) -> None:
    env = parse_target("A100-90GB,count=2", kb, lenient=True)
    assert env.gpus is not None and len(env.gpus) == 2
    assert env.gpus[0].name == "A100-90GB" and env.gpus[0].catalog_id is None
    assert [n.severity for n in env.notices] == ["warning"]


# ------------------------------------------------------------------ keys


@pytest.mark.parametrize(
    ("spec", "attr", "expected"),
    [
        ("H100,driver=535.104.05", "driver_version", "535.104.05"),
        ("H100,driver=550", "driver_version", "550"),
        ("H100,cuda=12.1", "driver_cuda", "12.1"),
        ("H100,cuda=12.4.1", "driver_cuda", "12.4.1"),
        ("H100,toolkit=12.2", "toolkit_cuda", "12.2"),
        ("H100,python=3.11", "python_version", "3.11"),
        ("H100,python=3.10.14", "python_version", "3.10.14"),
        ("H100,glibc=2.35", "glibc", "2.35"),
        ("H100,os=linux", "os_name", "linux"),
        ("H100,arch=x86_64", "arch", "x86_64"),
        ("H100, driver = 535.104.05 ", "driver_version", "535.104.05"),
        ("H100,DRIVER=535.104.05", "driver_version", "535.104.05"),
    ],
)
def test_each_key(kb, spec: str, attr: str, expected: str) -> None:
    env = parse_target(spec, kb)
    assert getattr(env, attr) == expected
    assert env.origins[attr] == "--target"


@pytest.mark.parametrize(("alias", "canonical"), sorted(OS_NAMES.items()))
def test_os_aliases(kb, alias: str, canonical: str) -> None:
    assert parse_target(f"os={alias}", kb).os_name == canonical
    assert parse_target(f"os={alias.upper()}", kb).os_name == canonical


@pytest.mark.parametrize(("alias", "canonical"), sorted(ARCHES.items()))
def test_arch_aliases(kb, alias: str, canonical: str) -> None:
    assert parse_target(f"arch={alias}", kb).arch == canonical
    assert parse_target(f"arch={alias.upper()}", kb).arch == canonical


def test_count_cc_vram_without_a_gpu_name(kb) -> None:
    env = parse_target("cc=8.6,count=2,vram=24", kb)
    assert env.gpus is not None and len(env.gpus) == 2
    assert all(g.cc == "8.6" and g.memory_total_mib == 24 * 1024 for g in env.gpus)
    assert all(g.catalog_id is None for g in env.gpus)
    assert env.facts()["gpu.cc"] == "8.6"


@pytest.mark.parametrize("vram", ["24", "24GB", "24gb", "24GiB", "24.0", "24gib"])
def test_vram_units(kb, vram: str) -> None:
    env = parse_target(f"H100,vram={vram}", kb)
    assert env.gpus is not None and env.gpus[0].memory_total_mib == 24 * 1024


def test_explicit_cc_wins_over_catalog(kb) -> None:
    env = parse_target("T4,cc=8.0", kb)
    assert env.gpus is not None and env.gpus[0].cc == "8.0"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty spec"),
        ("   ", "empty spec"),
        (",", "empty spec"),
        ("H100,,cuda=12.1", "empty item at position 2"),
        ("H100,", "empty item"),
        ("H100,memory=80", "unknown key 'memory'"),
        ("H100,vendor=nvidia", "unknown key 'vendor'"),
        ("=x", "unknown key ''"),
        ("H100,driver", "needs key=value"),
        ("H100,cuda=", "cuda= needs a value"),
        ("H100,cuda=12.1,cuda=12.2", "cuda given twice"),
        ("H100,gpu=A100", "gpu given twice"),
        ("H100,CUDA=12.1,cuda=12.1", "cuda given twice"),
    ],
)
def test_grammar_errors(kb, spec: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_target(spec, kb)
    assert fragment in str(info.value)


def test_unknown_key_lists_the_keys(kb) -> None:
    with pytest.raises(InputError) as info:
        parse_target("H100,memory=80", kb)
    for key in KEYS:
        assert key in str(info.value)


@pytest.mark.parametrize(
    "spec",
    [
        "H100,driver=abc",
        "H100,driver=535.",
        "H100,driver=.535",
        "H100,driver=535..1",
        "H100,driver=1.2.3.4.5",
        "H100,cuda=12",
        "H100,cuda=12.4.1.1",
        "H100,cuda=twelve",
        "H100,cuda=12.1=3",
        "H100,cuda=v12.1",
        "H100,toolkit=12",
        "H100,python=3",
        "H100,python=2.7",
        "H100,python=3.11.7.1",
        "H100,glibc=2",
        "H100,glibc=2.35.1",
        "H100,cc=8",
        "H100,cc=8.6.1",
        "H100,cc=sm_86",
        "H100,cc=100.0",
        "H100,count=0",
        "H100,count=-1",
        "H100,count=1.5",
        "H100,count=two",
        "H100,count=100001",
        "H100,vram=0",
        "H100,vram=-8",
        "H100,vram=lots",
        "H100,vram=inf",
        "H100,os=beos",
        "H100,arch=riscv64",
        "H100,arch=i386",
    ],
)
def test_malformed_values(kb, spec: str) -> None:
    with pytest.raises(InputError) as info:
        parse_target(spec, kb)
    assert str(info.value).startswith("--target")
    key = spec.split(",")[1].split("=")[0]
    assert key in str(info.value)


def test_vram_nan_is_an_input_error(kb) -> None:
    """float('nan') slips past the range check in _positive and crashes in int(); must be an InputError."""
    with pytest.raises(InputError):
        parse_target("H100,vram=nan", kb)


@pytest.mark.parametrize(
    "spec",
    [
        "H100,cuda=\u0661\u0662.\u0661",
        "H100,driver=\u0665\u0663\u0665",
        "H100,cc=\u0668.\u0666",
        "H100,python=3.\u0661\u0661",
    ],
)
def test_non_ascii_digits_are_not_versions(kb, spec: str) -> None:
    """Arabic-Indic digits match `\\d` in Python regexes but are not versions any tool understands."""
    with pytest.raises(InputError):
        parse_target(spec, kb)


# ------------------------------------------------------------------ properties

_KEYISH = st.sampled_from([*KEYS, "GPU", "Cuda", "memory", "", " cc "])
_VALUEISH = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"\d{1,3}(\.\d{1,3}){0,4}", fullmatch=True),
    st.sampled_from(["nan", "inf", "-0", "1e9", "24GB", "A100", "RTX 4090", "none", "wsl", "arm64"]),
)
_ITEM = st.one_of(st.builds(lambda k, v: f"{k}={v}", _KEYISH, _VALUEISH), st.text(max_size=15))
_SPEC = st.one_of(st.text(max_size=60), st.lists(_ITEM, max_size=5).map(",".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=_SPEC, lenient=st.booleans())
def test_any_text_gives_environment_or_input_error(kb, spec: str, lenient: bool) -> None:
    try:
        env = parse_target(spec, kb, lenient=lenient)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(env, Environment)
    env.facts(kb)  # whatever parsed must flatten into facts
