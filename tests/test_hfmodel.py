"""Models outside the catalog, read from their files (compatsolve/sources/hfmodel.py).

The config.json files here are re-entered from the catalog's own facts (knowledge/models.toml,
whose sources are the models' published config.json files or copies of them), written with the
key names Hugging Face configs use; the Hugging Face cache layout (models--org--name/refs/main,
snapshots/<revision>/) and the safetensors layout (8-byte little-endian header length, then a
JSON header of tensor dtypes and shapes) are built as the hub client and the safetensors format
lay them out. The tensors' data is absent: the reader never reads it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from clirun import run_cli as cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compatsolve.errors import InputError
from compatsolve.knowledge import ModelCard, load
from compatsolve.sources.hfmodel import local_model_card, model_directory


def _config(card: ModelCard) -> dict[str, Any]:
    """The catalog entry's facts under the names a Hugging Face config.json uses."""
    shape = {
        "num_hidden_layers": card.layers,
        "num_attention_heads": card.attention_heads,
        "num_key_value_heads": card.kv_heads,
        "hidden_size": card.hidden_size,
        "head_dim": card.head_dim,
        "vocab_size": card.vocab_size,
        "max_position_embeddings": card.context_length,
    }
    shape = {k: v for k, v in shape.items() if v is not None}
    config: dict[str, Any] = {"architectures": [card.architecture]} if card.architecture else {}
    if card.model_type:
        config["model_type"] = card.model_type
    if card.torch_dtype:
        config["torch_dtype"] = card.torch_dtype
    if card.vision:  # multimodal configs keep the language model's shape apart
        config["text_config"] = shape
        config["vision_config"] = {"hidden_size": 1152}
    else:
        config.update(shape)
    return config


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    header = json.dumps(
        {name: {"dtype": "BF16", "shape": s, "data_offsets": [0, 0]} for name, s in shapes.items()}
    )
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode())


def _cached(hub: Path, repo: str, config: dict[str, Any], revision: str = "0123abcd") -> Path:
    root = hub / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot


CATALOG = [m for m in load().models if m.layers and m.attention_heads]


@pytest.mark.parametrize("card", CATALOG, ids=[m.id for m in CATALOG])
def test_a_config_reads_back_as_the_catalog_facts(tmp_path: Path, card: ModelCard) -> None:
    (tmp_path / "config.json").write_text(json.dumps(_config(card)))
    read = local_model_card(str(tmp_path), load())
    assert read is not None
    for name in ("layers", "attention_heads", "kv_heads", "hidden_size", "vocab_size", "context_length"):
        if getattr(card, name) is not None:
            assert getattr(read, name) == getattr(card, name), name
    assert read.model_type == card.model_type and read.torch_dtype == card.torch_dtype
    assert read.architecture == card.architecture and read.vision == bool(card.vision)
    if card.model_type:
        assert read.series == next(m.series for m in load().models if m.model_type == card.model_type)


def test_a_repo_id_is_found_in_the_hub_cache(tmp_path: Path) -> None:
    card = load().model("qwen2-7b-instruct")
    assert card is not None
    hub = tmp_path / "hub"
    snapshot = _cached(hub, "someone/Qwen2-7B-finetune", _config(card))
    _safetensors(snapshot / "model-00001-of-00002.safetensors", {"a": [152064, 3584], "b": [28, 233_000_000]})
    _safetensors(snapshot / "model-00002-of-00002.safetensors", {"c": [1_000_000_000]})
    index = {
        "metadata": {},
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00001-of-00002.safetensors",
            "c": "model-00002-of-00002.safetensors",
        },
    }
    (snapshot / "model.safetensors.index.json").write_text(json.dumps(index))
    env = {"HF_HUB_CACHE": str(hub)}
    assert model_directory("someone/Qwen2-7B-finetune", env) == snapshot
    read = local_model_card("someone/Qwen2-7B-finetune", load(), env)
    assert read is not None and read.series == "qwen" and read.kv_heads == 4
    assert read.params_b == round((152064 * 3584 + 28 * 233_000_000 + 1_000_000_000) / 1e9, 2)
    assert model_directory("someone/not-downloaded", env) is None
    assert model_directory("not-a-repo-id", env) is None


def test_index_total_size_counts_parameters_by_dtype(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "torch_dtype": "bfloat16"}))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 16_060_522_496}})
    )
    read = local_model_card(str(tmp_path), load())
    assert read is not None and read.params_b == round(16_060_522_496 / 2 / 1e9, 2)


def test_quantized_checkpoints_leave_parameters_unknown(tmp_path: Path) -> None:
    config = {"model_type": "llama", "torch_dtype": "float16", "quantization_config": {"quant_method": "awq"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 4_000_000_000}})
    )
    read = local_model_card(str(tmp_path), load())
    assert read is not None and read.params_b is None and read.quantized == ("awq",)


def test_a_broken_config_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match=r"config\.json"):
        local_model_card(str(tmp_path), load())
    done = cli("plan", "--model", str(tmp_path), "--stage", "inference", "--target", "T4")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    audit = cli("audit", "--model", str(tmp_path), "--target", "T4", "--format", "json")
    assert audit.returncode in (0, 1)
    assert any("config.json" in n["message"] for n in json.loads(audit.stdout)["notices"])


def test_audit_judges_a_local_model_by_its_config(tmp_path: Path) -> None:
    card = load().model("qwen2-7b-instruct")
    assert card is not None
    (tmp_path / "config.json").write_text(json.dumps(_config(card)))
    _safetensors(tmp_path / "model.safetensors", {"w": [7_600_000_000]})
    done = cli("audit", "--model", str(tmp_path), "--target", "T4", "--tp", "3", "--format", "json")
    doc = json.loads(done.stdout)
    facts = doc["environment"]
    assert facts["model.attention_heads"] == 28 and facts["model.params_b"] == 7.6
    # 28 heads over 3 GPUs: the divisibility rule fires from the config's facts
    assert any(f["kind"] == "parallelism-mismatch" for f in doc["findings"])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
KEYS = st.sampled_from(
    ["model_type", "architectures", "num_attention_heads", "num_key_value_heads", "hidden_size",
     "text_config", "vision_config", "torch_dtype", "quantization_config", "rope_scaling",
     "max_position_embeddings", "auto_map", "num_local_experts", "head_dim"]
)  # fmt: skip


TENSOR = st.fixed_dictionaries({"dtype": st.text(max_size=5), "shape": st.lists(JSON, max_size=3) | JSON})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=st.dictionaries(KEYS, JSON, max_size=10),
    header=st.dictionaries(st.text(max_size=8), TENSOR | JSON, max_size=4),
)
def test_any_config_and_header_reads_without_a_traceback(
    tmp_path: Path, config: dict[str, Any], header: dict[str, Any]
) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    card = local_model_card(str(tmp_path), load())
    assert card is not None
    assert card.params_b is None or card.params_b >= 0
