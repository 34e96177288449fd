"""``@record`` behaves like a frozen dataclass where tortie relies on it."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from tortie.core.record import FrozenInstanceError, field, fields, record, replace


@record
class Point:
    x: int
    y: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    secret: str = field(default="", repr=False)


@record(frozen=False)
class Counter:
    n: int = 0


@record
class Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


@record
class Child(Point):
    z: int = 5


def test_init_positional_keyword_and_defaults() -> None:
    p = Point(1, y=2)
    assert (p.x, p.y, p.tags, p.secret) == (1, 2, {}, "")
    assert Point(x=3).y == 0


def test_default_factory_gives_each_instance_its_own_value() -> None:
    a, b = Point(1), Point(1)
    assert a.tags is not b.tags


def test_frozen() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.x


def test_mutable_record_can_change() -> None:
    c = Counter()
    c.n += 1
    assert c.n == 1


def test_eq_and_hash_by_value_and_class() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != Child(1)
    assert len({Checked(1), Checked(1), Checked(2)}) == 2


def test_repr_hides_fields_marked_so() -> None:
    text = repr(Point(1, secret="hunter2"))
    assert text == "Point(x=1, y=0, tags={})"
    assert "hunter2" not in text


def test_post_init_runs() -> None:
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_errors_for_bad_arguments() -> None:
    with pytest.raises(TypeError, match="missing argument 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected argument 'w'"):
        Point(1, w=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="two values"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes 4 arguments"):
        Point(1, 2, {}, "", 5)  # type: ignore[call-arg]


def test_replace_and_fields() -> None:
    p = Point(1, 2)
    q = replace(p, y=9)
    assert (q.x, q.y, p.y) == (1, 9, 2)
    assert fields(p) == ("x", "y", "tags", "secret")
    with pytest.raises(TypeError, match="no field 'nope'"):
        replace(p, nope=1)


def test_inheritance_appends_fields() -> None:
    c = Child(1, z=7)
    assert fields(c) == ("x", "y", "tags", "secret", "z")
    assert (c.x, c.z) == (1, 7)


def test_pickle_round_trip() -> None:
    assert pickle.loads(pickle.dumps(Point(1, 2))) == Point(1, 2)


def test_field_without_default_after_default_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default"):

        @record
        class Bad:
            a: int = 1
            b: int  # type: ignore[misc]


def test_importing_records_does_not_load_dataclasses() -> None:
    code = "import sys, tortie.core.record; print('dataclasses' in sys.modules, 'inspect' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


@record(eq=False)
class Cached:
    root: int
    _double: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_double", self.root * 2)


def test_init_false_field_is_set_by_post_init_and_survives_replace() -> None:
    c = Cached(4)
    assert c._double == 8
    assert replace(c, root=5)._double == 10
    assert repr(c) == "Cached(root=4)"
    with pytest.raises(TypeError):
        Cached(1, 2)  # type: ignore[call-arg]
