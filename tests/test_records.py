"""compatsolve.records against the standard dataclasses it stands in for: the same class declared
both ways must construct, compare, hash, copy and pickle alike."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compatsolve.records import FrozenInstanceError, field, fields, record, replace


@record(kw_only=True)
class Card:
    name: str
    size: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CardDC:
    name: str
    size: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)


@record
class Point:
    x: int
    y: int = 0


@record(frozen=False)
class Bag:
    items: list[int] = field(default_factory=list)


@record
class Indexed:
    names: tuple[str, ...]
    index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for i, name in enumerate(self.names):
            self.index[name] = i


_CARD_ARGS = st.fixed_dictionaries(
    {"name": st.text(max_size=5)},
    optional={"size": st.integers(), "tags": st.lists(st.text(max_size=3), max_size=3).map(tuple)},
)


@given(_CARD_ARGS, _CARD_ARGS)
def test_behaves_like_a_frozen_dataclass(a: dict[str, object], b: dict[str, object]) -> None:
    ours_a, ours_b = Card(**a), Card(**b)  # type: ignore[arg-type]
    std_a, std_b = CardDC(**a), CardDC(**b)  # type: ignore[arg-type]
    assert (ours_a == ours_b) == (std_a == std_b)
    assert ours_a == Card(**a)  # type: ignore[arg-type]
    for made in (ours_a, std_a):  # a dict field makes both unhashable
        with pytest.raises(TypeError):
            hash(made)
    assert repr(ours_a).replace("Card(", "CardDC(") == repr(std_a)
    assert [f.name for f in fields(Card)] == [f.name for f in dataclasses.fields(CardDC)]
    assert replace(ours_a, size=7) == Card(**{**a, "size": 7})  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(ours_a)) == ours_a
    assert copy.deepcopy(ours_a) == ours_a


def test_construction_errors_match_dataclasses() -> None:
    with pytest.raises(TypeError, match="missing required argument 'name'"):
        Card()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Card(name="a", colour=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="keyword arguments only"):
        Card("a")  # type: ignore[misc]
    with pytest.raises(TypeError, match="multiple values"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="at most 2 positional"):
        Point(1, 2, 3)  # type: ignore[call-arg]


def test_positional_records_and_defaults() -> None:
    assert Point(1) == Point(x=1, y=0) != Point(1, 2)
    assert Point(1, 2).__match_args__ == ("x", "y")
    assert hash(Point(1, 2)) == hash(Point(x=1, y=2)) and len({Point(1), Point(1, 0), Point(2)}) == 2
    assert Card(name="a").extra is not Card(name="a").extra  # a fresh default per instance
    assert "extra" not in repr(Card(name="a"))


def test_frozen_and_mutable() -> None:
    card = Card(name="a")
    with pytest.raises(FrozenInstanceError):
        card.size = 3  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del card.size  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CardDC(name="a").size = 3  # type: ignore[misc]
    bag = Bag()
    bag.items.append(1)
    bag.items = [2]
    assert bag == Bag([2])
    with pytest.raises(TypeError):
        hash(bag)


def test_post_init_and_pickle_keep_derived_state() -> None:
    made = Indexed(("a", "b"))
    assert made.index == {"a": 0, "b": 1}
    loaded = pickle.loads(pickle.dumps(made))
    assert loaded == made and loaded.index == {"a": 0, "b": 1}
    with pytest.raises(TypeError, match="not a record"):
        fields(object())
