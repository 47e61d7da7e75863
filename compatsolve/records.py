"""Typed record classes: the part of `dataclasses` this project uses, without its start-up cost.

`dataclasses` compiles every class's methods from generated source when the class is created
(about 4 M instructions a frozen class) and its import pulls in `inspect` and `ast` (about 70 M).
With some thirty record classes that was a quarter of a `compatsolve plan` run (190 M of 790 M
instructions, callgrind; see bench/). These records share generic methods instead, built once.
`typing.dataclass_transform` tells type checkers that `@record` classes behave like dataclasses,
so mypy checks their constructors and immutability exactly as before.

Semantics kept from dataclasses: fields in annotation order, defaults and `field(default_factory=)`,
keyword-only or positional construction, `__post_init__`, frozen instances, value equality and
hashing over the fields, a readable repr, `replace()` and `fields()`. Pickling uses the instance
`__dict__` directly, which is also what makes loading the cached knowledge base fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform  # typeshed's, for any target Python
else:

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        # It only informs type checkers; nothing to do at run time.
        return lambda decorated: decorated


_T = TypeVar("_T")
_MISSING: Any = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class Field:
    """One field of a record class: its name and how its default is made."""

    __slots__ = ("default", "default_factory", "name", "repr")

    def __init__(self, default: Any = _MISSING, default_factory: Any = _MISSING, repr: bool = True) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.default_factory is _MISSING

    def make_default(self) -> Any:
        return self.default if self.default_factory is _MISSING else self.default_factory()

    def __repr__(self) -> str:
        return f"Field(name={self.name!r})"


def field(*, default_factory: Callable[[], _T], repr: bool = True) -> _T:
    """A field whose default is made fresh for every instance (e.g. an empty dict)."""
    return Field(default_factory=default_factory, repr=repr)  # type: ignore[return-value]


def fields(record_or_class: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in declaration order."""
    try:
        return record_or_class.__record_fields__  # type: ignore[no-any-return]
    except AttributeError:
        raise TypeError(f"{record_or_class!r} is not a record") from None


def replace(record: _T, /, **changes: Any) -> _T:
    """A copy of a record with some fields changed (validated by the class's constructor)."""
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    values.update(changes)
    return type(record)(**values)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    spec: tuple[Field, ...] = cls.__record_fields__
    if args:
        if cls.__record_kw_only__:
            raise TypeError(f"{cls.__qualname__}() takes keyword arguments only")
        if len(args) > len(spec):
            raise TypeError(f"{cls.__qualname__}() takes at most {len(spec)} positional arguments")
        for f, value in zip(spec, args, strict=False):
            if f.name in kwargs:
                raise TypeError(f"{cls.__qualname__}() got multiple values for {f.name!r}")
            kwargs[f.name] = value
    values = self.__dict__
    for f in spec:
        value = kwargs.pop(f.name, _MISSING)
        if value is _MISSING:
            if f.required:
                raise TypeError(f"{cls.__qualname__}() missing required argument {f.name!r}")
            value = f.make_default()
        values[f.name] = value
    if kwargs:
        raise TypeError(f"{cls.__qualname__}() got an unexpected keyword argument {next(iter(kwargs))!r}")
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__record_fields__ if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in self.__record_fields__)


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented  # type: ignore[no-any-return]
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


@overload
@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_T], /) -> type[_T]: ...
@overload
def record(*, frozen: bool = True, kw_only: bool = False) -> Callable[[type[_T]], type[_T]]: ...


def record(cls: Any = None, /, *, frozen: bool = True, kw_only: bool = False) -> Any:
    """Make `cls` a record: frozen by default; `kw_only=True` for keyword-only construction."""

    def build(target: type[Any]) -> type[Any]:
        spec = []
        # what dataclasses reads too; inspect.get_annotations would import inspect, the cost avoided
        for name in target.__dict__.get("__annotations__", {}):  # noqa: RUF063
            declared = target.__dict__.get(name, _MISSING)
            f = declared if isinstance(declared, Field) else Field(default=declared)
            f.name = name
            if isinstance(declared, Field):
                delattr(target, name)  # the instance attribute always shadows it; keep the class clean
            spec.append(f)
        members: dict[str, Any] = {
            "__record_fields__": tuple(spec),
            "__record_kw_only__": kw_only,
            "__match_args__": tuple(f.name for f in spec),
            "__init__": _init,
            "__repr__": _repr,
            "__eq__": _eq,
            "__hash__": _hash if frozen else None,  # like dataclasses: mutable records are unhashable
        }
        if frozen:
            members |= {"__setattr__": _frozen_setattr, "__delattr__": _frozen_delattr}
        for name, member in members.items():
            setattr(target, name, member)
        return target

    return build if cls is None else build(cls)
