"""Every class of tortie.errors has a CNI code."""

from __future__ import annotations

import inspect

import tortie.errors as errors_module
from tortie.cni import errors as codes
from tortie.cni.errors import CNI_CODES, cni_code
from tortie.errors import TortieError


def _error_classes() -> list[type[TortieError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(obj, TortieError)
    ]


def test_every_error_class_has_an_explicit_code() -> None:
    classes = _error_classes()
    assert len(classes) >= 10
    missing = [c.__name__ for c in classes if c not in CNI_CODES]
    assert missing == []


def test_codes_follow_the_spec() -> None:
    e = errors_module
    assert cni_code(e.InvalidInput("x")) == codes.INVALID_NETWORK_CONFIG == 7
    assert cni_code(e.DecodeError("x")) == codes.DECODE_FAILURE == 6
    assert cni_code(e.Unavailable("x")) == codes.TRY_AGAIN_LATER == 11
    assert cni_code(e.Exhausted("x")) >= 100
    assert cni_code(e.NotFound("x")) >= 100
    assert cni_code(e.DatastoreError("x")) >= 100
    assert cni_code(e.RevisionConflict("x")) == 11


def test_unknown_subclass_uses_its_parent() -> None:
    class Special(errors_module.Exhausted):
        pass

    assert cni_code(Special("x")) == codes.NO_ADDRESSES
