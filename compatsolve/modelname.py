"""What a model's name states: its parameter count (`vicuna-7b-v1.5` -> 7.0, `opt-350m` -> 0.35)
and its quantization (`Llama-2-7B-AWQ` -> awq, `wizardLM-13B.ggml.q4_0` -> gguf).

The size is used only for models the catalog does not know and whose files are not on this
machine, so that memory checks can still run (the unknown-model warning says so); the
quantization only when `--quantization` was not given (the environment shows it as
`run.quantization`).
"""

from __future__ import annotations

import re

from compatsolve.quantization import canonical_quantization

# a size token between separators: 7b, 1.5B, 350m; "8x7b" (a mixture's experts) and "A3B" (its
# active parameters) do not state the total, so they are not sizes here
_SIZE = re.compile(r"(?:^|[-_/ .])(?<![xXaA])(\d+(?:\.\d+)?)([bBmM])(?=$|[-_/ .])")
_MIXTURE = re.compile(r"\d+x\d+(?:\.\d+)?[bB]")


def params_from_name(name: str) -> float | None:
    """Billions of parameters the name states, or None when it states none or is ambiguous."""
    if _MIXTURE.search(name):
        return None
    sizes = {float(number) / (1000 if unit in "mM" else 1) for number, unit in _SIZE.findall(name)}
    return sizes.pop() if len(sizes) == 1 else None


# name tokens that are a quantization's name; llama.cpp types (q4_0, Q4_K_M) are read as gguf
_QUANT_TOKENS = {
    "awq": "awq",
    "gptq": "gptq",
    "gguf": "gguf",
    "ggml": "gguf",
    "fp8": "fp8",
    "nvfp4": "nvfp4",
    "exl2": "exl2",
    "int4": "int4",
    "int8": "int8",
    "w4a16": "int4",
    "bnb-4bit": "bnb-4bit",
    "bnb-8bit": "bnb-8bit",
}


def quantization_from_name(name: str) -> str | None:
    """The quantization the name states, or None when it states none or two different ones."""
    folded = name.lower()
    found = {
        quantization
        for token, quantization in _QUANT_TOKENS.items()
        if re.search(rf"(?:^|[-_/ .]){re.escape(token)}(?=$|[-_/ .])", folded)
    }
    found |= {"gguf" for token in re.split(r"[-/ .]", folded) if canonical_quantization(token) == "gguf"}
    # "GPTQ-Int4", "AWQ-int4": the method names the format, the bit width only qualifies it
    methods = found - {"int4", "int8"}
    if methods:
        found = methods
    return found.pop() if len(found) == 1 else None
