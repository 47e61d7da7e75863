"""The quantization names `--quantization` takes, and the spellings users write for them.

Rules compare `run.quantization` with these names, so every name a rule uses must be one the
command line accepts (a test keeps them in step). llama.cpp's quantization types (Q4_K_M, Q8_0,
IQ2_XS, ...) exist only in GGUF files, so they are read as `gguf`.
"""

from __future__ import annotations

import re

QUANTIZATIONS = (
    "none",
    "awq",
    "gptq",
    "marlin",
    "fp8",
    "fp4",
    "nvfp4",
    "modelopt_fp4",
    "bnb-4bit",
    "bnb-8bit",
    "gguf",
    "exl2",
    "int4",  # weight-only integer schemes (TensorRT-LLM, LMDeploy w4a16)
    "int8",
)
# what `plan` can turn into engine settings; audit and diagnose take every name above
PLAN_QUANTIZATIONS = ("none", "awq", "gptq", "fp8", "bnb-4bit", "bnb-8bit", "gguf")
_GGUF_TYPE = re.compile(r"i?q\d(?:_[a-z0-9]+)*")


def canonical_quantization(text: str) -> str | None:
    """The name of `text` in QUANTIZATIONS (`Q4_K_M` -> `gguf`, `AWQ` -> `awq`), or None."""
    folded = text.strip().lower()
    if folded in QUANTIZATIONS:
        return folded
    return "gguf" if _GGUF_TYPE.fullmatch(folded) else None
