"""Which datastore to open: settings from the environment, a config file or a CNI netconf.

Light on purpose (standard library only): the CNI plugins import it on every call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tortie.core.record import field, record
from tortie.datastore.base import Datastore
from tortie.errors import InvalidInput

DATASTORE_TYPES = ("sqlite", "etcdv3", "memory")
SYSTEM_SQLITE_PATH = "/var/lib/tortie/tortie.db"


@record
class DatastoreSettings:
    """Everything needed to open a datastore.  ``password`` never appears in ``repr``."""

    datastore_type: str = "sqlite"
    sqlite_path: str = ""
    etcd_endpoints: tuple[str, ...] = ()
    etcd_ca_cert_file: str = ""
    etcd_cert_file: str = ""
    etcd_key_file: str = ""
    etcd_username: str = ""
    etcd_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.datastore_type not in DATASTORE_TYPES:
            raise InvalidInput(
                f"datastore type {self.datastore_type!r} is not supported; "
                f"set DATASTORE_TYPE to one of: {', '.join(DATASTORE_TYPES[:2])}"
            )


def default_sqlite_path(env: Mapping[str, str] | None = None) -> str:
    """``/var/lib/tortie/tortie.db``, or under ``$XDG_STATE_HOME`` when that is not writable."""
    env = os.environ if env is None else env
    if _writable(SYSTEM_SQLITE_PATH):
        return SYSTEM_SQLITE_PATH
    state = env.get("XDG_STATE_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "tortie", "tortie.db")


def _writable(path: str) -> bool:
    if os.path.exists(path):
        return os.access(path, os.W_OK)
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return os.access(parent, os.W_OK)


def _split_endpoints(text: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in text.split(",") if e.strip())


def settings_from_env(env: Mapping[str, str] | None = None) -> DatastoreSettings:
    """Calico's variables: DATASTORE_TYPE, SQLITE_PATH, ETCD_ENDPOINTS, ETCD_*."""
    env = os.environ if env is None else env
    return DatastoreSettings(
        datastore_type=env.get("DATASTORE_TYPE", "") or "sqlite",
        sqlite_path=env.get("SQLITE_PATH", ""),
        etcd_endpoints=_split_endpoints(env.get("ETCD_ENDPOINTS", "")),
        etcd_ca_cert_file=env.get("ETCD_CA_CERT_FILE", ""),
        etcd_cert_file=env.get("ETCD_CERT_FILE", ""),
        etcd_key_file=env.get("ETCD_KEY_FILE", ""),
        etcd_username=env.get("ETCD_USERNAME", ""),
        etcd_password=env.get("ETCD_PASSWORD", ""),
    )


def open_datastore(settings: DatastoreSettings) -> Datastore:
    """Open the datastore the settings name.  Backends are imported only when used."""
    if settings.datastore_type == "memory":
        from tortie.datastore.memory import MemoryDatastore

        return MemoryDatastore()
    if settings.datastore_type == "etcdv3":
        from tortie.datastore.etcd import EtcdDatastore

        return EtcdDatastore(settings)
    from tortie.datastore.sqlite import SqliteDatastore

    return SqliteDatastore(settings.sqlite_path or default_sqlite_path())
