"""Every exception class of tortie.errors has a CLI exit code and a CNI code (the module
docstring promises both maps are complete)."""

from __future__ import annotations

import inspect

import pytest

import tortie.errors as errors_module
from tortie.cni.errors import CNI_CODES, cni_code
from tortie.errors import EXIT_CODES, InvalidInput, TortieError, exit_code


def _error_classes() -> list[type[TortieError]]:
    found = [
        obj
        for _, obj in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(obj, TortieError) and obj.__module__ == errors_module.__name__
    ]
    assert TortieError in found and len(found) >= 10
    return found


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_has_an_exit_code_and_a_cni_code(cls: type[TortieError]) -> None:
    assert cls in EXIT_CODES, f"{cls.__name__} has no entry in tortie.errors.EXIT_CODES"
    assert cls in CNI_CODES, f"{cls.__name__} has no entry in tortie.cni.errors.CNI_CODES"
    assert exit_code(cls("x")) == EXIT_CODES[cls]
    assert cni_code(cls("x")) == CNI_CODES[cls]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_exit_code_is_2_exactly_for_wrong_input(cls: type[TortieError]) -> None:
    assert EXIT_CODES[cls] == (2 if issubclass(cls, InvalidInput) else 1)


def test_no_stale_entries() -> None:
    classes = set(_error_classes())
    assert set(EXIT_CODES) == classes
    assert set(CNI_CODES) == classes


def test_a_subclass_elsewhere_takes_its_parents_codes() -> None:
    class PoolGone(errors_module.NotFound):
        pass

    class BadName(InvalidInput):
        pass

    assert exit_code(PoolGone("x")) == EXIT_CODES[errors_module.NotFound] == 1
    assert cni_code(PoolGone("x")) == CNI_CODES[errors_module.NotFound]
    assert exit_code(BadName("x")) == 2
