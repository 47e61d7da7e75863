"""The serving and running engines `--engine` names, and the spellings users write for them.

Rules compare `run.engine` with ENGINES (a test keeps the two in step). `audit` and `diagnose`
take any engine name: a tool the rules do not name (MLX, CTranslate2, Jan, ...) is still the tool
that failed, so findings name it, and the run layer reports it as an unresolved fact.
"""

from __future__ import annotations

import re

PLAN_ENGINES = ("vllm", "sglang", "transformers")
ENGINES = (
    *PLAN_ENGINES,
    "tgi",
    "lmdeploy",
    "tensorrt-llm",
    "ktransformers",
    "exllamav3",
    "llama.cpp",
    "ollama",
    "lmstudio",
    "gpt4all",
    "localai",
    "koboldcpp",
)
# other spellings of the names above, folded to lower case with spaces and underscores as "-"
_ALIASES = {
    "text-generation-inference": "tgi",
    "trt-llm": "tensorrt-llm",
    "trtllm": "tensorrt-llm",
    "llamacpp": "llama.cpp",
    "llama-cpp": "llama.cpp",
    "lm-studio": "lmstudio",
    "kobold.cpp": "koboldcpp",
    "sg-lang": "sglang",
    "hf-transformers": "transformers",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]*")


def canonical_engine(text: str) -> str | None:
    """`text` as an engine name: the name in ENGINES it spells (`LM Studio` -> `lmstudio`), else
    the folded name itself when it is one word of letters, digits, `.`, `+` and `-`, else None."""
    folded = re.sub(r"[\s_]+", "-", text.strip().lower())
    folded = _ALIASES.get(folded, folded)
    return folded if _NAME.fullmatch(folded) else None
