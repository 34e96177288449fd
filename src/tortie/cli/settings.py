"""Datastore settings for the CLI: ``--config FILE`` (a CalicoAPIConfig) or the environment.

Both are read by ``tortie.datastore.config.read_settings``, as the CNI netconf is."""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar

from tortie.datastore.backends import open_datastore
from tortie.datastore.base import Datastore
from tortie.datastore.config import (
    SPEC_NAMES,
    DatastoreSettings,
    read_settings,
    settings_from_env,
)
from tortie.errors import InvalidInput


def settings_from_file(path: str) -> DatastoreSettings:
    """Read a ``CalicoAPIConfig`` file (YAML or JSON)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            doc: Any = yaml.safe_load(fh)
    except OSError as exc:
        raise InvalidInput(
            f"config file {path}: cannot read it ({exc.strerror}); check the --config path"
        ) from None
    except UnicodeDecodeError:
        raise InvalidInput(
            f"config file {path}: not UTF-8 text; save it as UTF-8 YAML or JSON"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"config file {path}: invalid YAML{where}; fix the syntax") from None
    if not isinstance(doc, dict) or doc.get("kind") != "CalicoAPIConfig":
        raise InvalidInput(
            f"config file {path}: not a CalicoAPIConfig; write 'kind: CalicoAPIConfig' with a spec "
            "holding datastoreType and sqlitePath or etcdEndpoints"
        )
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise InvalidInput(f"config file {path}: spec must be a mapping")
    unknown = sorted(set(spec) - set(SPEC_NAMES))
    if unknown:
        raise InvalidInput(
            f"config file {path}: unknown field spec.{unknown[0]}; known fields: {', '.join(SPEC_NAMES)}"
        )
    return read_settings(spec, where=f"config file {path}: spec.", names=SPEC_NAMES)


def cli_settings(config_path: str | None) -> DatastoreSettings:
    return settings_from_file(config_path) if config_path else settings_from_env()


S = TypeVar("S", bound=Datastore)
_opened: list[Datastore] = []


def track(store: S) -> S:
    """Remember a store the command opened; ``main`` closes it when the command ends."""
    _opened.append(store)
    return store


def cli_store(config_path: str | None, *, reading: bool = False) -> Datastore:
    """The datastore named by ``--config`` or the environment, closed when the command ends.

    ``reading``: the command only reads (see ``open_datastore``: an explicit SQLite path
    with no store there is then an error instead of an empty store)."""
    return track(open_datastore(cli_settings(config_path), reading=reading))


def close_stores() -> None:
    while _opened:
        with contextlib.suppress(Exception):
            _opened.pop().close()
