"""Derived facts: what follows from the environment's facts and the knowledge base's tables.

Rules compare facts with constants or with other facts; a few questions need arithmetic or a
table look-up first (does torch's arch list cover this GPU? do the weights fit?). They are
answered here, as plain facts, so that the rules about them stay data in knowledge/.
"""

from __future__ import annotations

from typing import Any

from compatsolve.knowledge import Knowledge
from compatsolve.versions import parse_version

# Bytes per parameter of the weights, by quantization or dtype. A 4-bit scheme stores about half
# a byte per weight plus scales and zero points; the 10 % margin is in WEIGHT_OVERHEAD.
BYTES_PER_PARAM = {
    "awq": 0.5,
    "gptq": 0.5,
    "bnb-4bit": 0.5,
    "marlin": 0.5,
    "gguf": 0.6,
    "fp8": 1.0,
    "bnb-8bit": 1.0,
    "int4": 0.5,
    "int8": 1.0,
    "fp4": 0.5,
    "nvfp4": 0.5,
    "modelopt_fp4": 0.5,
    "float32": 4.0,
    "float16": 2.0,
    "bfloat16": 2.0,
}
WEIGHT_OVERHEAD = 1.1
GIB = 1024**3
# Full fine-tuning with mixed-precision Adam keeps 16 bytes per parameter: 16-bit weights and
# gradients (2 + 2) and fp32 master weights and two Adam moments (4 + 4 + 4), as the ZeRO paper
# counts it (7.5B parameters -> 120 GB), before activations. ZeRO-3 shards all of it.
FULL_FINETUNE_BYTES_PER_PARAM = 16


def _major(value: Any) -> str | None:
    version = parse_version(str(value)) if value is not None else None
    return str(version.release[0]) if version else None


def weights_gib(params_b: float, dtype_or_quant: str) -> float:
    per_param = BYTES_PER_PARAM.get(dtype_or_quant, 2.0)
    return round(params_b * 1e9 * per_param * WEIGHT_OVERHEAD / GIB, 1)


def derive(facts: dict[str, Any], kb: Knowledge) -> dict[str, Any]:
    """A copy of `facts` with the derived facts added where their inputs are known."""
    out = dict(facts)
    for name, source in (
        ("torch.cuda_major", "torch.cuda"),
        ("driver.cuda_major", "driver.cuda"),
        ("toolkit.cuda_major", "toolkit.cuda"),
    ):
        major = _major(out.get(source))
        if major is not None:
            out[name] = major
    _torch_arch(out, kb)
    _gfx_supported(out, kb)
    model_id = out.get("model.id")
    card = kb.model(str(model_id)) if model_id else None
    if card is not None:
        for key in ("min_transformers", "min_vllm", "min_sglang"):
            value = getattr(card, key)
            if value:
                out[f"model.{key}"] = value
    _memory(out)
    _cpu_x86(out)
    heads, tp = out.get("model.attention_heads"), out.get("run.tp")
    if isinstance(heads, int) and isinstance(tp, int) and tp > 0:
        out["run.tp_divides_heads"] = heads % tp == 0
    return out


def _cpu_x86(out: dict[str, Any]) -> None:
    # AVX levels are x86 facts: known ones say the CPU is x86 even when the architecture is not
    # given, and a known Arm architecture rules the AVX rules out instead of leaving them open
    arch = out.get("os.arch")
    if arch is not None:
        out["cpu.x86"] = arch == "x86_64"
    elif any(f"cpu.{level}" in out for level in ("avx", "avx2", "avx512")):
        out["cpu.x86"] = True


def _torch_arch(out: dict[str, Any], kb: Knowledge) -> None:
    torch_version, variant, cc = out.get("pkg.torch"), out.get("torch.variant"), out.get("gpu.cc")
    if torch_version is None:
        return
    release = kb.torch_release(str(torch_version))
    out["torch.known_release"] = release is not None
    if release is None or variant is None or cc is None or variant == "cpu":
        return
    arch = release.arch.get(str(variant))
    if not arch:
        return
    gpu = parse_version(str(cc))
    listed = [parse_version(a.removesuffix("+PTX")) for a in arch]
    if gpu is None:
        return
    # Exact SASS for this cc, or SASS of the same major with a lower minor (binary compatible
    # within a major, e.g. sm_80 code runs on sm_86).
    out["torch.arch_covered"] = any(
        v is not None and v.release[0] == gpu.release[0] and v <= gpu for v in listed
    )


def _gfx_supported(out: dict[str, Any], kb: Knowledge) -> None:
    """`gpu.rocm_supported`, `gpu.ollama_supported`: is the AMD GPU's gfx target listed as
    supported for this OS? ROCm: by the release of torch's rocmX.Y variant when its list is held,
    else by any ROCm release listed (a target no release lists is unsupported whichever is
    installed). A tool: by its newest documentation held. With the OS unknown, only an answer
    that Linux and Windows share is given."""
    gfx = out.get("gpu.gfx")
    if not isinstance(gfx, str):
        return
    variant = str(out.get("torch.variant") or "")
    rocm = variant.removeprefix("rocm") if variant.startswith("rocm") else None
    os_name = out.get("os.name")
    systems = (os_name,) if isinstance(os_name, str) else ("linux", "windows")
    for subject in dict.fromkeys(s.subject for s in kb.gfx_support):
        answers = {_listed(gfx, subject, system, rocm, kb) for system in systems}
        if len(answers) == 1 and None not in answers:
            out[f"gpu.{subject}_supported"] = answers.pop()


def _listed(gfx: str, subject: str, os_name: str, rocm: str | None, kb: Knowledge) -> bool | None:
    lists = [s for s in kb.gfx_support if s.subject == subject and s.os == os_name]
    if not lists:
        return None
    if subject == "rocm":
        release = [s for s in lists if rocm and s.version and (s.version + ".").startswith(rocm + ".")]
        return any(gfx in s.gfx for s in (release or lists))
    newest = max(lists, key=lambda s: s.as_of or "")
    return gfx in newest.gfx


def _memory(out: dict[str, Any]) -> None:
    params = out.get("model.params_b")
    if not isinstance(params, (int, float)):
        return
    quant = out.get("run.quantization")
    dtype = out.get("run.dtype")
    if quant and quant != "none":
        key = str(quant)
        if key not in BYTES_PER_PARAM:
            return  # a variable bit width (exl2 at 2.5 to 8 bits): no estimate rather than a wrong one
    elif dtype and dtype != "auto":
        key = str(dtype)
    else:
        key = str(out.get("model.torch_dtype") or "bfloat16")
    out["memory.weights_gib"] = weights_gib(float(params), key)
    if out.get("run.stage") == "fine-tuning":
        states = float(params) * 1e9 * FULL_FINETUNE_BYTES_PER_PARAM * WEIGHT_OVERHEAD / GIB
        out["memory.full_finetune_gib"] = round(states, 1)
    vram, count = out.get("gpu.vram_gib"), out.get("gpu.count")
    if isinstance(vram, (int, float)) and isinstance(count, int) and count > 0:
        engine = out.get("run.engine")
        tp = out.get("run.tp")
        if isinstance(tp, int):
            used = tp * int(out.get("run.pp") or 1)
        elif engine in ("vllm", "sglang"):
            used = 1  # these engines use one GPU unless told a parallel size
        else:
            used = count  # transformers/accelerate device_map="auto" spreads over all GPUs
        out["run.gpus_used"] = used
        out["memory.available_gib"] = round(float(vram) * min(used, count), 1)
