"""Rule conditions: parsing from knowledge data and pure, three-valued evaluation over facts.

A condition is a table of `fact = test` entries that must all hold, plus optional `any` (a list
of such tables, one must hold) and `not` (a table that must not hold). Evaluation answers TRUE,
FALSE or UNKNOWN: a test on a fact the environment does not know is UNKNOWN, never FALSE, so
missing knowledge never reads as "compatible".
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from compatsolve.errors import KnowledgeError
from compatsolve.records import record
from compatsolve.versions import in_range, parse_version

FactValue = str | int | float | bool
Facts = Mapping[str, FactValue]

# Fact names a condition may use: exact names, plus the open families `pkg.*` and `env.*`.
KNOWN_FACTS = frozenset(
    {
        "gpu.name",
        "gpu.vendor",
        "gpu.gfx",
        "gpu.count",
        "gpu.cc",
        "gpu.arch",
        "gpu.vram_gib",
        "gpu.segment",
        "gpu.bf16",
        "gpu.fp8",
        "gpu.fp4",
        "gpu.p2p",
        "driver.version",
        "driver.cuda",
        "toolkit.cuda",
        "os.name",
        "os.arch",
        "glibc.version",
        "cpu.avx",
        "cpu.avx2",
        "cpu.avx512",
        "cpu.x86",
        "python.version",
        "torch.cuda",
        "torch.variant",
        "nvidia.cu12",
        "nvidia.cu13",
        "model.id",
        "model.series",
        "model.family",
        "model.model_type",
        "model.architecture",
        "model.params_b",
        "model.active_params_b",
        "model.attention_heads",
        "model.kv_heads",
        "model.layers",
        "model.context_length",
        "model.torch_dtype",
        "model.moe",
        "model.trust_remote_code",
        "model.vision",
        "run.stage",
        "run.engine",
        "run.method",
        "run.dtype",
        "run.quantization",
        "run.attention",
        "run.tp",
        "run.pp",
        "run.context",
        "run.deepspeed_stage",
    }
)
OPEN_FAMILIES = ("pkg.", "env.")
# Facts computed by compatsolve/derive.py from other facts and the knowledge tables.
DERIVED_FACTS = frozenset(
    {
        "torch.cuda_major",
        "driver.cuda_major",
        "toolkit.cuda_major",
        "torch.arch_covered",
        "torch.known_release",
        "model.min_transformers",
        "model.min_vllm",
        "model.min_sglang",
        "memory.weights_gib",
        "memory.available_gib",
        "memory.full_finetune_gib",
        "run.tp_divides_heads",
        "run.gpus_used",
        "gpu.rocm_supported",
        "gpu.ollama_supported",
    }
)


def is_known_fact(name: str) -> bool:
    return name in KNOWN_FACTS or name in DERIVED_FACTS or (name.startswith(OPEN_FAMILIES) and len(name) > 4)


class Truth(enum.Enum):
    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"

    def __bool__(self) -> bool:  # only TRUE is truthy: UNKNOWN must never pass as a match
        return self is Truth.TRUE


def _all(values: list[Truth]) -> Truth:
    if Truth.FALSE in values:
        return Truth.FALSE
    return Truth.UNKNOWN if Truth.UNKNOWN in values else Truth.TRUE


def _any(values: list[Truth]) -> Truth:
    if Truth.TRUE in values:
        return Truth.TRUE
    return Truth.UNKNOWN if Truth.UNKNOWN in values else Truth.FALSE


def _not(value: Truth) -> Truth:
    return {Truth.TRUE: Truth.FALSE, Truth.FALSE: Truth.TRUE}.get(value, Truth.UNKNOWN)


_COMPARISON = re.compile(r"^\s*(==|!=|<=|>=|<|>|~=)\s*(\S.*?)\s*$")
_OPS: dict[str, Callable[[Version, Version], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@record
class FactComparison:
    """`<@driver.cuda`: compare a fact with another fact of the same environment."""

    op: str
    other: str

    def holds(self, value: Version, facts: Facts) -> Truth:
        raw = facts.get(self.other)
        other = parse_version(str(raw)) if raw is not None else None
        if other is None or self.op not in _OPS:
            return Truth.UNKNOWN
        return _truth(_OPS[self.op](value, other))


def _truth(value: bool) -> Truth:
    return Truth.TRUE if value else Truth.FALSE


@record
class FactTest:
    """One `fact = expectation` entry of a condition."""

    fact: str
    # PEP 440 range against a literal, as text: SpecifierSet objects are built on first use (few
    # rules are evaluated in a run, and unpickling hundreds of them slowed every start-up)
    specifier: str | None = None
    comparisons: tuple[FactComparison, ...] = ()  # against other facts
    equals: tuple[FactValue, ...] = ()  # any of these values
    presence: bool | None = None  # "*" -> True (known), "-" -> False (absent)

    def evaluate(self, facts: Facts, assumed: frozenset[str] = frozenset()) -> Truth:
        value = facts.get(self.fact)
        if value is None and self.fact in assumed:
            # a hypothesis: the fact is taken to be whatever the test asks ("installed at a
            # version in this range"), except its absence
            return _truth(self.presence is not False)
        if self.presence is not None:
            # Presence is decidable only for facts a source enumerates completely (packages).
            if value is not None:
                return _truth(self.presence)
            if self.fact.startswith("pkg.") and facts.get("_packages_complete") is True:
                return _truth(not self.presence)
            # The live probe reads every variable and looks for nvcc in the same pass.
            if self.fact.startswith(("env.", "toolkit.")) and facts.get("_env_complete") is True:
                return _truth(not self.presence)
            return Truth.UNKNOWN
        if value is None:
            return Truth.UNKNOWN
        if self.specifier is not None or self.comparisons:
            version = parse_version(str(value))
            if version is None:
                return Truth.UNKNOWN
            parts = [c.holds(version, facts) for c in self.comparisons]
            if self.specifier is not None:
                parts.append(_truth(in_range(self.specifier, version)))
            return _all(parts)
        return _truth(any(_equal(value, expected) for expected in self.equals))


def _equal(value: FactValue, expected: FactValue) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    if isinstance(expected, (int, float)) and not isinstance(value, str):
        return float(value) == float(expected)
    return str(value).strip().lower() == str(expected).strip().lower()


@record
class Condition:
    tests: tuple[FactTest, ...] = ()
    any_of: tuple[Condition, ...] = ()
    none_of: Condition | None = None

    def evaluate(self, facts: Facts, assumed: frozenset[str] = frozenset()) -> Truth:
        """TRUE, FALSE or UNKNOWN; `assumed` facts that are not known hold as tested (see
        FactTest.evaluate): "what if this package were installed at the version the rule names"."""
        parts = [test.evaluate(facts, assumed) for test in self.tests]
        if self.any_of:
            parts.append(_any([alt.evaluate(facts, assumed) for alt in self.any_of]))
        if self.none_of is not None:
            # never assume inside a `not`: that would assume the package's absence
            parts.append(_not(self.none_of.evaluate(facts)))
        return _all(parts)

    def facts(self) -> set[str]:
        """Every fact name the condition reads (for lint and for explaining a finding)."""
        names = {t.fact for t in self.tests}
        for test in self.tests:
            names.update(c.other for c in test.comparisons)
        for alt in self.any_of:
            names |= alt.facts()
        if self.none_of is not None:
            names |= self.none_of.facts()
        return names


def parse_condition(raw: object, where: str) -> Condition:
    """Build a Condition from TOML data; errors name `where` it went wrong."""
    if not isinstance(raw, Mapping):
        raise KnowledgeError(f"{where}: expected a table of fact = test")
    tests: list[FactTest] = []
    any_of: tuple[Condition, ...] = ()
    none_of: Condition | None = None
    for key, value in raw.items():
        if key == "any":
            if not isinstance(value, list) or not value:
                raise KnowledgeError(f"{where}.any: expected a non-empty list of tables")
            any_of = tuple(parse_condition(v, f"{where}.any[{i}]") for i, v in enumerate(value))
        elif key == "not":
            none_of = parse_condition(value, f"{where}.not")
        else:
            tests.append(parse_fact_test(key, value, f"{where}.{key}"))
    if not tests and not any_of and none_of is None:
        raise KnowledgeError(f"{where}: empty condition")
    return Condition(tests=tuple(tests), any_of=any_of, none_of=none_of)


def parse_fact_test(fact: str, value: object, where: str) -> FactTest:
    if not is_known_fact(fact):
        raise KnowledgeError(f"{where}: unknown fact {fact!r} (see docs/knowledge.md)")
    if isinstance(value, str):
        if value.strip() in ("*", "-"):
            return FactTest(fact=fact, presence=value.strip() == "*")
        if _COMPARISON.match(value.split(",")[0]):
            literal: list[str] = []
            against: list[FactComparison] = []
            for part in value.split(","):
                match = _COMPARISON.match(part)
                if not match:
                    raise KnowledgeError(f"{where}: bad comparison {part.strip()!r}")
                op, operand = match.groups()
                if operand.startswith("@"):
                    if not is_known_fact(operand[1:]) or op not in _OPS:
                        raise KnowledgeError(f"{where}: bad fact comparison {part.strip()!r}")
                    against.append(FactComparison(op=op, other=operand[1:]))
                else:
                    literal.append(f"{op}{operand}")
            try:
                specifier = str(SpecifierSet(",".join(literal))) if literal else None
            except InvalidSpecifier:
                raise KnowledgeError(f"{where}: {value!r} is not a version range") from None
            return FactTest(fact=fact, specifier=specifier, comparisons=tuple(against))
        return FactTest(fact=fact, equals=(value,))
    if isinstance(value, (bool, int, float)):
        return FactTest(fact=fact, equals=(value,))
    if isinstance(value, list) and value and all(isinstance(v, (str, bool, int, float)) for v in value):
        return FactTest(fact=fact, equals=tuple(value))
    raise KnowledgeError(f"{where}: expected a string, number, bool or list of them")
