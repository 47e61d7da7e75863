"""Saved environment snapshots: compatsolve.environment/1 (compatsolve/sources/snapshot.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compatsolve.environment import (
    SNAPSHOT_SCHEMA,
    Environment,
    Gpu,
    Notice,
    Package,
    RunSettings,
    TorchBuild,
)
from compatsolve.errors import InputError
from compatsolve.records import replace
from compatsolve.sources.snapshot import from_document, load_snapshot, to_document


def rich_env() -> Environment:
    return Environment(
        gpus=(
            Gpu(
                index=0,
                name="NVIDIA A100-SXM4-80GB",
                cc="8.0",
                memory_total_mib=81920,
                memory_free_mib=80000,
                catalog_id="a100-sxm4-80gb",
            ),
            Gpu(index=1, name="NVIDIA A100-SXM4-80GB", cc="8.0", memory_total_mib=81920),
        ),
        driver_version="535.104.05",
        driver_cuda="12.2",
        toolkit_cuda="12.1",
        cuda_home="/usr/local/cuda",
        os_name="linux",
        os_release="5.15.0-105-generic",
        arch="x86_64",
        glibc="2.35",
        python_version="3.11.7",
        python_abi="cp311",
        python_executable="/venv/bin/python",
        packages={
            "torch": Package(
                name="torch", version="2.4.0+cu121", requires=("filelock", "sympy"), requires_python=">=3.8"
            ),
            "nvidia-cublas-cu12": Package(name="nvidia-cublas-cu12", version="12.1.3.1"),
        },
        packages_complete=True,
        torch=TorchBuild(version="2.4.0+cu121", cuda="12.1", git_version="e4ee3be", hip=None),
        env_vars={"NCCL_P2P_DISABLE": "1", "CUDA_VISIBLE_DEVICES": "0,1"},
        run=RunSettings(
            model="qwen2-7b-instruct", stage="inference", engine="vllm", dtype="bfloat16", tp=2, context=32768
        ),
        notices=(Notice(source="nvml", message="NVML failed: x", severity="warning"),),
        origins={"gpus": "nvml", "pkg.torch": "installed (running interpreter)"},
    )


def roundtrip(env: Environment) -> Environment:
    return from_document(json.loads(json.dumps(to_document(env, env.facts()))), "snap.json")


def _without_origins(env: Environment) -> Environment:
    return replace(env, origins={})


# ------------------------------------------------------------------ round trip


def test_document_shape() -> None:
    env = rich_env()
    doc = to_document(env, env.facts())
    assert doc["schema"] == SNAPSHOT_SCHEMA == "compatsolve.environment/1"
    assert doc["tool"].startswith("compatsolve ")
    assert doc["machine"]["gpus"][0]["cc"] == "8.0"
    assert [p["name"] for p in doc["packages"]] == sorted(env.packages)
    assert doc["facts"]["gpu.count"] == 2
    json.dumps(doc)  # plain JSON types only


def test_roundtrip_rich_environment() -> None:
    env = rich_env()
    back = roundtrip(env)
    assert _without_origins(back) == _without_origins(env)
    assert back.facts() == env.facts()


def test_roundtrip_origins_say_where() -> None:
    back = roundtrip(rich_env())
    assert back.origins["gpus"] == "snap.json ← nvml"
    assert back.origins["pkg.torch"].startswith("snap.json ← ")


def test_roundtrip_unknowns_stay_unknown() -> None:
    env = Environment()
    back = roundtrip(env)
    assert back.gpus is None and back.packages is None and back.env_vars is None and back.torch is None
    assert back.facts() == {}


def test_roundtrip_known_no_gpu() -> None:
    back = roundtrip(Environment(gpus=(), packages={}, env_vars={}))
    assert back.gpus == () and back.packages == {} and back.env_vars == {}
    assert back.facts()["gpu.count"] == 0


def test_roundtrip_keeps_gpu_indices() -> None:
    """A snapshot of CUDA_VISIBLE_DEVICES=1,0 style ordering: index 0 is a value, not 'missing'."""
    env = Environment(gpus=(Gpu(index=1, name="Tesla T4"), Gpu(index=0, name="Tesla T4")))
    assert [g.index for g in roundtrip(env).gpus] == [1, 0]


def test_missing_gpu_index_defaults_to_position() -> None:
    doc = to_document(Environment(gpus=(Gpu(index=0, name="a"), Gpu(index=1, name="b"))))
    for gpu in doc["machine"]["gpus"]:
        del gpu["index"]
    assert [g.index for g in from_document(doc, "x").gpus] == [0, 1]


def test_packages_complete_needs_packages() -> None:
    doc = to_document(Environment())
    doc["packages_complete"] = True
    assert from_document(doc, "x").packages_complete is False


_NAME = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True)
_VERSION = st.lists(st.integers(0, 40), min_size=1, max_size=4).map(lambda p: ".".join(map(str, p)))
_TEXT = st.one_of(st.none(), st.text(max_size=12))
_GPUS = st.lists(
    st.builds(
        Gpu,
        index=st.integers(0, 15),
        name=st.text(min_size=1, max_size=20),
        cc=st.one_of(st.none(), st.sampled_from(["7.5", "8.0", "8.6", "9.0"])),
        memory_total_mib=st.one_of(st.none(), st.integers(1, 200_000)),
        memory_free_mib=st.one_of(st.none(), st.integers(0, 200_000)),
        catalog_id=_TEXT,
    ),
    max_size=4,
).map(lambda gs: tuple(replace(g, index=i) for i, g in enumerate(gs)))
_PACKAGES = st.dictionaries(
    _NAME, st.builds(lambda v, r: (v, r), _VERSION, st.lists(st.text(max_size=8), max_size=2)), max_size=5
).map(lambda d: {n: Package(name=n, version=v, requires=tuple(r)) for n, (v, r) in d.items()})
_ENVS = st.builds(
    Environment,
    gpus=st.one_of(st.none(), _GPUS),
    driver_version=st.one_of(st.none(), _VERSION),
    driver_cuda=st.one_of(st.none(), _VERSION),
    toolkit_cuda=st.one_of(st.none(), _VERSION),
    os_name=st.one_of(st.none(), st.sampled_from(["linux", "windows", "wsl", "macos"])),
    arch=_TEXT,
    glibc=_TEXT,
    python_version=st.one_of(st.none(), _VERSION),
    packages=st.one_of(st.none(), _PACKAGES),
    packages_complete=st.booleans(),
    torch=st.one_of(st.none(), st.builds(TorchBuild, version=_VERSION, cuda=st.one_of(st.none(), _VERSION))),
    env_vars=st.one_of(
        st.none(), st.dictionaries(st.from_regex(r"[A-Z_]{1,10}", fullmatch=True), st.text(max_size=5))
    ),
    run=st.builds(
        RunSettings,
        engine=_TEXT,
        tp=st.one_of(st.none(), st.integers(1, 16)),
        context=st.one_of(st.none(), st.integers(1, 10**6)),
    ),
    notices=st.lists(
        st.builds(
            Notice,
            source=st.text(max_size=5),
            message=st.text(max_size=20),
            severity=st.sampled_from(["info", "warning", "error"]),
        ),
        max_size=2,
    ).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(_ENVS)
def test_roundtrip_property(env: Environment) -> None:
    if env.packages is None:
        env = replace(env, packages_complete=False)
    back = roundtrip(env)
    assert back.facts() == env.facts()
    assert _without_origins(back) == _without_origins(env)


# ------------------------------------------------------------------ errors name where


def _doc() -> dict:
    env = rich_env()
    return copy.deepcopy(to_document(env, env.facts()))


def _set(doc: dict, path: list, value) -> dict:
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (["schema"], "compatsolve.environment/2", "schema"),
        (["schema"], None, "schema"),
        (["machine"], [], "machine"),
        (["machine", "gpus"], {"0": {}}, "machine.gpus"),
        (["machine", "gpus", 0], "A100", "machine.gpus[0]"),
        (["machine", "gpus", 0, "cc"], 8.0, "machine.gpus[0].cc"),
        (["machine", "gpus", 1, "cc"], 8, "machine.gpus[1].cc"),
        (["machine", "gpus", 0, "name"], "", "machine.gpus[0].name"),
        (["machine", "gpus", 0, "name"], None, "machine.gpus[0].name"),
        (["machine", "gpus", 0, "index"], "0", "machine.gpus[0].index"),
        (["machine", "gpus", 0, "index"], True, "machine.gpus[0].index"),
        (["machine", "gpus", 0, "memory_total_mib"], 81920.5, "machine.gpus[0].memory_total_mib"),
        (["machine", "gpus", 0, "memory_free_mib"], "lots", "machine.gpus[0].memory_free_mib"),
        (["machine", "gpus", 0, "catalog_id"], 3, "machine.gpus[0].catalog_id"),
        (["machine", "driver"], "535", "machine.driver"),
        (["machine", "driver", "version"], 535, "machine.driver.version"),
        (["machine", "driver", "cuda"], 12.2, "machine.driver.cuda"),
        (["machine", "toolkit", "cuda"], 12, "machine.toolkit.cuda"),
        (["machine", "os", "name"], ["linux"], "machine.os.name"),
        (["machine", "glibc"], 2.35, "machine.glibc"),
        (["python"], "3.11", "python"),
        (["python", "version"], 3.11, "python.version"),
        (["torch"], "2.4.0", "torch"),
        (["torch", "cuda"], 12.1, "torch.cuda"),
        (["packages"], {"torch": "2.4.0"}, "packages"),
        (["packages", 0], "torch==2.4.0", "packages[0]"),
        (["packages", 1, "version"], None, "packages[1]"),
        (["packages", 1, "version"], 2.4, "packages[1].version"),
        (["packages", 1, "requires"], "filelock", "packages[1].requires"),
        (["packages", 1, "requires"], [1], "packages[1].requires"),
        (["packages", 1, "requires_python"], 3, "packages[1].requires_python"),
        (["env"], ["NCCL_P2P_DISABLE=1"], "env"),
        (["env"], {"NCCL_P2P_DISABLE": 1}, "env"),
        (["run"], "vllm", "run"),
        (["run", "tp"], "2", "run.tp"),
        (["run", "context"], 1.5, "run.context"),
        (["run", "engine"], 1, "run.engine"),
        (["origins"], ["x"], "origins"),
    ],
)
def test_errors_name_where(path: list, value, where: str) -> None:
    doc = _set(_doc(), path, value)
    with pytest.raises(InputError) as info:
        from_document(doc, "snap.json")
    message = str(info.value)
    assert message.startswith(f"snap.json: {where}: expected"), message
    assert "\n" not in message


@pytest.mark.parametrize("notices", [3, True, 1.5])
def test_notices_of_the_wrong_type_name_where(notices) -> None:
    """`notices` that is not a list must be an InputError naming it, never a TypeError."""
    doc = _set(_doc(), ["notices"], notices)
    with pytest.raises(InputError, match=r"^snap\.json: notices"):
        from_document(doc, "snap.json")


@pytest.mark.parametrize("doc", [None, [], "text", 3])
def test_document_must_be_an_object(doc) -> None:
    with pytest.raises(InputError, match=r"^x: document: expected an object"):
        from_document(doc, "x")


def test_load_snapshot_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_snapshot(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": ')
    with pytest.raises(InputError, match=r"not JSON \(line 1, column"):
        load_snapshot(str(bad))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError):
        load_snapshot(str(binary))
    with pytest.raises(InputError, match="cannot read"):
        load_snapshot(str(tmp_path))  # a directory


def test_load_snapshot_ok(tmp_path: Path) -> None:
    env = rich_env()
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(to_document(env, env.facts())))
    assert load_snapshot(str(path)).facts() == env.facts()


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(
                st.sampled_from(
                    [
                        "schema",
                        "machine",
                        "gpus",
                        "name",
                        "cc",
                        "index",
                        "packages",
                        "version",
                        "requires",
                        "env",
                        "run",
                        "tp",
                        "torch",
                        "python",
                        "driver",
                        "origins",
                        "notices",
                    ]
                ),
                inner,
                max_size=4,
            ),
        ),
        max_leaves=20,
    )
)
def test_any_json_gives_environment_or_input_error(doc) -> None:
    for candidate in (doc, {"schema": SNAPSHOT_SCHEMA, **doc} if isinstance(doc, dict) else doc):
        try:
            env = from_document(candidate, "fuzz.json")
        except InputError:
            continue
        assert isinstance(env, Environment)
        env.facts()


def test_real_h100_snapshot_loads_and_plans() -> None:
    """The snapshot `compatsolve probe --save` wrote on the H100 machine (tests/fixtures) loads
    with --from, keeps its facts, and a plan for that machine fits its driver and GPU."""
    from compatsolve.knowledge import load
    from compatsolve.plan import PlanRequest, make_plan
    from compatsolve.snapshot import load_snapshot
    from compatsolve.sources.assemble import finish
    from compatsolve.sources.snapshot import load_snapshot as load_env

    path = Path(__file__).parent / "fixtures" / "probe_h100.json"
    raw = json.loads(path.read_text())
    kb = load()
    env = finish(load_env(str(path)), kb)
    facts = env.facts(kb)
    assert facts["gpu.cc"] == raw["machine"]["gpus"][0]["cc"]
    assert facts["driver.version"] == raw["machine"]["driver"]["version"]
    assert facts["torch.variant"] == "cu" + raw["torch"]["cuda"].replace(".", "")
    snapshot = load_snapshot()
    assert snapshot is not None
    card = kb.model("qwen2.5-7b-instruct")
    assert card is not None
    plan = make_plan(PlanRequest(model=card, stage="inference"), [env], kb, snapshot)
    assert plan.feasible
    torch = next(p for p in plan.pins if p.name == "torch")
    assert torch.variant is not None
    cuda = torch.variant.removeprefix("cu")
    assert float(f"{cuda[:-1]}.{cuda[-1]}") <= float(raw["machine"]["driver"]["cuda"])


def test_roundtrip_keeps_an_amd_gpus_gfx_target() -> None:
    env = Environment(gpus=(Gpu(index=0, name="AMD GPU (gfx1032)", gfx="gfx1032"),))
    back = roundtrip(env)
    assert back.gpus is not None and back.gpus[0].gfx == "gfx1032"
    # documents written before the field existed still load
    doc = to_document(env)
    del doc["machine"]["gpus"][0]["gfx"]
    assert from_document(doc, "old.json").gpus[0].gfx is None  # type: ignore[index]
