"""Which datastore to open: the one reader of datastore settings.

The environment (Calico's ``DATASTORE_TYPE``, ``SQLITE_PATH``, ``ETCD_*``), a
``CalicoAPIConfig`` file (``tortie --config``) and a CNI network configuration all name
the same settings; ``read_settings`` turns any of them into ``DatastoreSettings``, so
types are checked and endpoint lists split in one place.  Opening a backend is
``tortie.datastore.backends.open_datastore``: this module imports no backend.

Light on purpose (standard library only): the CNI plugins import it on every call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tortie.core.record import field, record
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


# Each setting's name in a CNI netconf (the attribute), a CalicoAPIConfig spec, the environment.
SETTINGS = (
    ("datastore_type", "datastoreType", "DATASTORE_TYPE"),
    ("sqlite_path", "sqlitePath", "SQLITE_PATH"),
    ("etcd_endpoints", "etcdEndpoints", "ETCD_ENDPOINTS"),
    ("etcd_ca_cert_file", "etcdCACertFile", "ETCD_CA_CERT_FILE"),
    ("etcd_cert_file", "etcdCertFile", "ETCD_CERT_FILE"),
    ("etcd_key_file", "etcdKeyFile", "ETCD_KEY_FILE"),
    ("etcd_username", "etcdUsername", "ETCD_USERNAME"),
    ("etcd_password", "etcdPassword", "ETCD_PASSWORD"),
)
SPEC_NAMES = {spec: attr for attr, spec, _env in SETTINGS}


def split_endpoints(value: object, where: str = "etcd_endpoints") -> tuple[str, ...]:
    """A comma-separated string or a list of strings, blanks dropped."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(e, str) for e in items):
        raise InvalidInput(
            f"{where} must be a comma-separated string or a list of URLs, "
            f"e.g. http://127.0.0.1:2379, not {type(value).__name__}"
        )
    return tuple(e.strip() for e in items if e.strip())


def read_settings(
    given: Mapping[str, object],
    env: Mapping[str, str] | None = None,
    where: str = "",
    names: Mapping[str, str] | None = None,
) -> DatastoreSettings:
    """Settings from ``given`` (a netconf's keys, or a spec's with ``names`` mapping them to
    attributes), each one missing or empty there taken from ``env``.  ``where`` prefixes
    the name of a wrong value in the error."""
    attrs = {names.get(k, k) if names else k: v for k, v in given.items() if v is not None}
    values: dict[str, object] = {}
    for attr, spec, env_name in SETTINGS:
        value = attrs.get(attr)
        shown = f"{where}{spec if names else attr}"
        if attr == "etcd_endpoints" and value is not None:
            value = split_endpoints(value, shown)
        elif value is not None and not isinstance(value, str):
            raise InvalidInput(
                f"{shown} must be a string, not {type(value).__name__}; quote the value"
            )
        if not value and env is not None:
            text = env.get(env_name, "")
            value = split_endpoints(text) if attr == "etcd_endpoints" else text
        if value:
            values[attr] = value
    return DatastoreSettings(**values)  # type: ignore[arg-type]


def settings_from_env(env: Mapping[str, str] | None = None) -> DatastoreSettings:
    """Calico's variables: DATASTORE_TYPE, SQLITE_PATH, ETCD_ENDPOINTS, ETCD_*."""
    return read_settings({}, os.environ if env is None else env)
