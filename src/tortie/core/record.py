"""Frozen records for short-lived processes: ``@record`` instead of ``@dataclass``.

Why: a CNI plugin is a fresh process per pod.  ``import dataclasses`` pulls in
``inspect``, ``ast``, ``dis`` and ``tokenize`` (~5 ms here) and every ``@dataclass``
compiles generated methods with ``exec`` (~0.3 ms per class); with ~45 record classes on
the plugin path that was a third of the plugin's start-up.  ``@record`` builds the same
kind of class — keyword/positional ``__init__``, defaults and ``field(default_factory=)``,
``__post_init__``, frozen ``__setattr__``, ``__eq__``, ``__hash__``, ``__repr__`` and
``replace()`` — with shared generic methods, no code generation and no imports.

mypy understands it through ``typing.dataclass_transform``.  See
``docs/design/plugin-start-up.md``.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform, overload

    T = TypeVar("T")
else:

    def dataclass_transform(**_kwargs: object) -> Callable[[T], T]:
        return lambda f: f


_MISSING: Any = object()


class FrozenInstanceError(AttributeError):
    """Raised on an attempt to change a frozen record."""


class _Field:
    __slots__ = ("default", "factory", "init", "repr")

    def __init__(
        self, default: Any, factory: Callable[[], Any] | None, repr: bool, init: bool
    ) -> None:
        self.default = default
        self.factory = factory
        self.repr = repr
        self.init = init


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | None = None,
    repr: bool = True,
    init: bool = True,
) -> Any:
    """A field's default (or factory for a mutable default), whether ``repr`` shows it and
    whether ``__init__`` takes it (``init=False`` fields are set by ``__post_init__``)."""
    return _Field(default, default_factory, repr, init)


if TYPE_CHECKING:
    # A field spec: (name, default, factory, shown in repr, taken by __init__).
    _Spec = tuple[str, Any, Callable[[], Any] | None, bool, bool]


def _specs(cls: type) -> tuple[_Spec, ...]:
    inherited: tuple[_Spec, ...] = ()
    for base in reversed(cls.__mro__[1:]):
        inherited = getattr(base, "__record_fields__", inherited)
    own: list[_Spec] = []
    # inspect.get_annotations would import inspect, which is what this module avoids.
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Field):
            spec: _Spec = (name, value.default, value.factory, value.repr, value.init)
            if value.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, value.default)
        else:
            spec = (name, value, None, True, True)
        own.append(spec)
    names = {s[0] for s in own}
    return tuple(s for s in inherited if s[0] not in names) + tuple(own)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    specs: tuple[_Spec, ...] = type(self).__init_fields__
    if len(args) > len(specs):
        raise TypeError(f"{type(self).__name__}() takes {len(specs)} arguments, got {len(args)}")
    setter = object.__setattr__
    for name, default, factory, _shown, _init_arg in type(self).__later_fields__:
        if default is not _MISSING:
            setter(self, name, default)
        elif factory is not None:
            setter(self, name, factory())
    for i, (name, default, factory, _shown, _init_arg) in enumerate(specs):
        if i < len(args):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}() got two values for {name!r}")
            value = args[i]
        elif name in kwargs:
            value = kwargs.pop(name)
        elif default is not _MISSING:
            value = default
        elif factory is not None:
            value = factory()
        else:
            raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
        setter(self, name, value)
    if kwargs:
        raise TypeError(
            f"{type(self).__name__}() got an unexpected argument {next(iter(kwargs))!r}"
        )
    post = getattr(self, "__post_init__", None)
    if post is not None:
        post()


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, s[0]) for s in type(self).__record_fields__)


def _eq(self: Any, other: object) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _repr(self: Any) -> str:
    shown = ", ".join(
        f"{s[0]}={getattr(self, s[0])!r}" for s in type(self).__record_fields__ if s[3]
    )
    return f"{type(self).__name__}({shown})"


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r} of frozen {type(self).__name__}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of frozen {type(self).__name__}")


def _build(cls: type[T], frozen: bool, eq: bool) -> type[T]:
    specs = _specs(cls)
    seen_default = False
    for name, default, factory, _shown, init in specs:
        if not init:
            continue
        if default is not _MISSING or factory is not None:
            seen_default = True
        elif seen_default:
            raise TypeError(
                f"{cls.__name__}: field {name!r} without a default follows one with a default"
            )
    attrs: dict[str, Any] = {
        "__record_fields__": specs,
        "__init_fields__": tuple(s for s in specs if s[4]),
        "__later_fields__": tuple(s for s in specs if not s[4]),
        "__init__": _init,
        "__repr__": _repr,
    }
    attrs["__match_args__"] = tuple(s[0] for s in specs if s[4])
    if eq:
        attrs["__eq__"] = _eq
        attrs["__hash__"] = _hash if frozen else None
    if frozen:
        attrs["__setattr__"] = _frozen_setattr
        attrs["__delattr__"] = _frozen_delattr
    for key, value in attrs.items():
        if key in ("__eq__", "__hash__", "__repr__") and key in cls.__dict__ and key != "__hash__":
            continue  # the class wrote its own
        setattr(cls, key, value)
    return cls


if TYPE_CHECKING:

    @overload
    def record(cls: type[T], /) -> type[T]: ...

    @overload
    def record(*, frozen: bool = True, eq: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(
    cls: type[T] | None = None, /, *, frozen: bool = True, eq: bool = True
) -> type[T] | Callable[[type[T]], type[T]]:
    """Make ``cls`` a record (frozen unless ``frozen=False``)."""
    if cls is None:
        return lambda c: _build(c, frozen, eq)
    return _build(cls, frozen, eq)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record ``obj`` with some fields changed."""
    specs: tuple[_Spec, ...] = type(obj).__init_fields__  # type: ignore[attr-defined]
    values = {s[0]: getattr(obj, s[0]) for s in specs}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return type(obj)(**values)


def fields(obj: Any) -> tuple[str, ...]:
    """The field names of a record (class or instance), in order."""
    return tuple(s[0] for s in obj.__record_fields__)


def as_dict(obj: Any) -> dict[str, Any]:
    """The fields of a record as a (shallow) dict."""
    return {s[0]: getattr(obj, s[0]) for s in obj.__record_fields__}
