"""A model the catalog does not know, read from its files on this machine.

`--model` may name a local model directory or a Hugging Face repo id whose snapshot is in the
Hugging Face cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`). The
model's facts then come from its `config.json` (architecture, heads, layers, context, dtype,
quantization) and the parameter count from the safetensors headers: the index's total size, or
each file's JSON header (its first bytes; the weights are never read). No code of the model runs,
`trust_remote_code` or not.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compatsolve.errors import InputError
from compatsolve.knowledge import Knowledge, ModelCard

MAX_JSON_BYTES = 8 * 1024 * 1024  # config.json and safetensors headers are far smaller
# safetensors index metadata gives bytes, not parameters: bytes per parameter of torch_dtype
BYTES_PER_TORCH_DTYPE = {"float32": 4, "float16": 2, "bfloat16": 2}
CONTEXT_KEYS = ("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions")


def model_directory(ref: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The directory holding `ref`'s config.json: `ref` itself, or the cached snapshot of a
    repo id (the one `refs/main` names, else the newest)."""
    env = os.environ if environ is None else environ
    path = Path(ref).expanduser()
    if (path / "config.json").is_file():
        return path
    if ref.count("/") != 1 or ref.startswith(("/", ".", "~")):
        return None
    repo = _hub_cache(env) / ("models--" + ref.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    try:
        named = (repo / "refs" / "main").read_text().strip()
    except OSError:
        named = ""
    if named and (snapshots / named / "config.json").is_file():
        return snapshots / named
    candidates = [d for d in snapshots.iterdir() if (d / "config.json").is_file()]
    return max(candidates, key=lambda d: d.stat().st_mtime) if candidates else None


def _hub_cache(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    return Path(env.get("HOME", "~")).expanduser() / ".cache" / "huggingface" / "hub"


def local_model_card(ref: str, kb: Knowledge, environ: Mapping[str, str] | None = None) -> ModelCard | None:
    """A ModelCard from the model's files, or None when `ref` is not on this machine.
    A config.json that is not a JSON object is an InputError naming the file."""
    directory = model_directory(ref, environ)
    if directory is None:
        return None
    config_path = directory / "config.json"
    config = _read_json(config_path)
    if not isinstance(config, dict):
        raise InputError(f"--model {ref}: {config_path}: not a JSON object")
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else {}
    model_type = _text(config, "model_type")
    architectures = config.get("architectures")
    architecture = architectures[0] if isinstance(architectures, list) and architectures else None

    def pick(*keys: str) -> Any:  # a VLM keeps the language model's shape in text_config
        for source in (text, config):
            for key in keys:
                if key in source and source[key] is not None:
                    return source[key]
        return None

    heads = _int(pick("num_attention_heads", "n_head", "num_heads"))
    kv_heads = _int(pick("num_key_value_heads", "multi_query_group_num")) or heads
    hidden = _int(pick("hidden_size", "n_embd", "d_model"))
    experts = _int(pick("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"))
    dtype = _text(config, "torch_dtype") or _text(config, "dtype") or _text(text, "torch_dtype")
    quantization = config.get("quantization_config")
    quant_method = _text(quantization, "quant_method") if isinstance(quantization, dict) else None
    rope = pick("rope_scaling")
    series = _series(model_type, kb)
    return ModelCard(
        id=ref,
        hf_repo=ref,
        aliases=(),
        series=series or (model_type or "unknown"),
        family=None,
        variant=None,
        architecture=architecture if isinstance(architecture, str) else None,
        model_type=model_type,
        # packed 4-bit and 8-bit tensors do not count parameters: unknown rather than wrong
        params_b=None if quant_method else _params_b(directory, dtype),
        active_params_b=None,
        moe=experts > 1 if experts is not None else None,
        vision="vision_config" in config,
        layers=_int(pick("num_hidden_layers", "n_layer", "num_layers")),
        attention_heads=heads,
        kv_heads=kv_heads,
        hidden_size=hidden,
        head_dim=_int(pick("head_dim")) or (hidden // heads if hidden and heads else None),
        vocab_size=_int(pick("vocab_size")),
        context_length=_int(pick(*CONTEXT_KEYS)),
        torch_dtype=dtype,
        rope_scaling=_text(rope, "rope_type") or _text(rope, "type") if isinstance(rope, dict) else None,
        trust_remote_code=isinstance(config.get("auto_map"), dict) or None,
        min_transformers=None,
        min_vllm=None,
        min_sglang=None,
        quantized=(quant_method,) if quant_method else (),
        notes=f"read from {config_path}",
        sources=(config_path.as_uri(),),
    )


def _series(model_type: str | None, kb: Knowledge) -> str | None:
    """The catalog's series for the same config.json model_type (its own pairs, no table here)."""
    if not model_type:
        return None
    for card in kb.models:
        if card.model_type == model_type:
            return card.series
    return None


def _params_b(directory: Path, dtype: str | None) -> float | None:
    """Parameters in billions from the safetensors headers; None when there are none to read."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index)
        total = data.get("metadata", {}).get("total_size") if isinstance(data, dict) else None
        per_param = BYTES_PER_TORCH_DTYPE.get(dtype or "")
        if isinstance(total, (int, float)) and per_param:
            return round(total / per_param / 1e9, 2)
        files = (
            sorted({str(f) for f in data.get("weight_map", {}).values()}) if isinstance(data, dict) else []
        )
    else:
        files = sorted(p.name for p in directory.glob("*.safetensors"))
    if not files:
        return None
    count = 0
    for name in files:
        header = _safetensors_header(directory / name)
        if header is None:
            return None
        for key, tensor in header.items():
            shape = tensor.get("shape") if key != "__metadata__" and isinstance(tensor, dict) else None
            if not isinstance(shape, list) or not all(_int(n) for n in shape):
                continue  # not a tensor entry this reader understands
            count += math.prod(shape)
    return round(count / 1e9, 2) if count else None


def _safetensors_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a safetensors file: 8 bytes of little-endian length, then the JSON."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_JSON_BYTES:
                return None
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return None
    return header if isinstance(header, dict) else None


def _read_json(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise InputError(f"{path}: larger than a model's JSON metadata can be")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: unreadable JSON ({type(exc).__name__})") from None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text(table: Any, key: str) -> str | None:
    value = table.get(key) if isinstance(table, dict) else None
    return value if isinstance(value, str) and value else None
