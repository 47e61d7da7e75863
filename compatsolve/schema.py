"""Typed reading of TOML tables: each accessor checks one key and says where a value is wrong.

`Table(raw, "knowledge/rules/x.toml: rule[3]")` then `t.text("id")` either returns the value or
raises KnowledgeError("knowledge/rules/x.toml: rule[3].id: expected text"). Unread keys are
reported by `t.done()`, so a typo in a data file is an error, not a silently ignored fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compatsolve.errors import KnowledgeError


class Table:
    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise KnowledgeError(f"{where}: expected a table")
        self.raw: Mapping[str, Any] = raw
        self.where = where
        self._seen: set[str] = set()

    def _get(self, key: str, required: bool) -> Any:
        self._seen.add(key)
        if key not in self.raw:
            if required:
                raise KnowledgeError(f"{self.where}.{key}: missing")
            return None
        return self.raw[key]

    def _fail(self, key: str, expected: str) -> KnowledgeError:
        return KnowledgeError(f"{self.where}.{key}: expected {expected}")

    def text(self, key: str, *, required: bool = False, choices: frozenset[str] | None = None) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self._fail(key, "non-empty text")
        if choices is not None and value not in choices:
            raise self._fail(key, f"one of {', '.join(sorted(choices))}, got {value!r}")
        return value

    def req_text(self, key: str, *, choices: frozenset[str] | None = None) -> str:
        value = self.text(key, required=True, choices=choices)
        assert value is not None
        return value

    def texts(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self._get(key, required)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._fail(key, "a list of text")
        return tuple(value)

    def number(self, key: str, *, required: bool = False) -> float | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(key, "a number")
        return float(value)

    def integer(self, key: str, *, required: bool = False) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        return value

    def boolean(self, key: str, *, required: bool = False) -> bool | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def table(self, key: str) -> Mapping[str, Any] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._fail(key, "a table")
        return value

    def any(self, key: str) -> Any:
        return self._get(key, False)

    def done(self) -> None:
        extra = sorted(set(self.raw) - self._seen)
        if extra:
            raise KnowledgeError(f"{self.where}: unknown key(s) {', '.join(extra)}")


def tables(raw: object, where: str) -> list[Table]:
    """An array of tables (`[[rule]]`), each wrapped with its index in `where`."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise KnowledgeError(f"{where}: expected an array of tables")
    return [Table(item, f"{where}[{i}]") for i, item in enumerate(raw)]
