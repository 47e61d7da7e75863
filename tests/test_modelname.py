"""What a model's name states (compatsolve/modelname.py), and how audit uses it for a model the
catalog does not know. The names are public Hugging Face repository ids and file names."""

from __future__ import annotations

import json

import pytest
from clirun import run_cli

from compatsolve.modelname import params_from_name, quantization_from_name


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("lmsys/vicuna-7b-v1.5", 7.0),
        ("Qwen/Qwen2.5-0.5B-Instruct", 0.5),
        ("facebook/opt-350m", 0.35),
        ("Qwen/Qwen3-30B-A3B", 30.0),  # A3B is the active share, not the size
        ("01-ai/Yi-34B-200K", 34.0),
        ("mistralai/Mixtral-8x7B-v0.1", None),  # experts times size is not the total
        ("microsoft/Phi-3-mini-4k-instruct", None),  # 4k is a context length
        ("google-bert/bert-base-uncased", None),
    ],
)
def test_params_from_name(name: str, size: float | None) -> None:
    assert params_from_name(name) == size


@pytest.mark.parametrize(
    ("name", "quantization"),
    [
        ("TheBloke/Llama-2-7B-AWQ", "awq"),
        ("Qwen/Qwen2-7B-Instruct-GPTQ-Int4", "gptq"),
        ("unsloth/llama-3-8b-bnb-4bit", "bnb-4bit"),
        ("neuralmagic/Meta-Llama-3-8B-Instruct-FP8", "fp8"),
        ("llama-2-7b-chat.Q4_K_M.gguf", "gguf"),
        ("wizardLM-13B-Uncensored.ggml.q4_0", "gguf"),
        ("Qwen/Qwen2-7B-Instruct", None),
    ],
)
def test_quantization_from_name(name: str, quantization: str | None) -> None:
    assert quantization_from_name(name) == quantization


def _environment(*args: str) -> tuple[dict, list[dict]]:
    out = run_cli("audit", "--target", "RTX 3090", *args, "--format", "json")
    report = json.loads(out.stdout)
    return report["environment"], report["findings"]


def test_unknown_model_is_judged_by_the_size_its_name_states() -> None:
    env, findings = _environment("--model", "my-org/finetuned-llama-70b")
    assert env["model.params_b"] == 70.0
    rules = {f["rule"] for f in findings}
    # 70B in 16-bit (about 140 GB) does not fit one 24 GB card
    assert "weights-exceed-gpu-memory" in rules
    warning = next(f for f in findings if f["rule"] == "unresolved-fact")
    assert "70B parameters as its name states" in warning["title"]
    # a name without a size stays unknown: no memory verdict
    env, findings = _environment("--model", "my-org/finetuned-llama")
    assert "model.params_b" not in env and "weights-exceed-gpu-memory" not in {f["rule"] for f in findings}


def test_quantization_stated_in_the_name_counts_unless_given() -> None:
    env, _ = _environment("--model", "my-org/finetuned-llama-70b-AWQ")
    assert env["run.quantization"] == "awq"
    assert env["memory.weights_gib"] < 40  # 4-bit weights, not 16-bit
    env, _ = _environment("--model", "my-org/finetuned-llama-70b-AWQ", "--quantization", "none")
    assert env["run.quantization"] == "none"
