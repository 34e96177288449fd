"""Field readers and metadata shared by every resource codec in :mod:`tortie.model`.

``obj`` is the object's display name (``IPPool(pool-a)``), ``path`` a field path; every
reader raises ``InvalidInput`` with one line naming the object, the field and the fix.
Standard library only: the CNI plugins import this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from tortie.core.record import record
from tortie.errors import InvalidInput

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any, NoReturn, TypeVar

    T = TypeVar("T")

API_VERSION = "projectcalico.org/v3"
CRD_API_VERSION = "crd.projectcalico.org/v1"

# --------------------------------------------------------------------------------------
# Field readers shared by the resource codecs (ippool.py and resources.py).
# ``obj`` is the object's display name, e.g. ``IPPool(pool-a)``; ``path`` a field path.
# --------------------------------------------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")

METADATA_FIELDS = (
    "name",
    "labels",
    "annotations",
    "uid",
    "creationTimestamp",
    "resourceVersion",
)


def fail(obj: str, reason: str, fix: str) -> NoReturn:
    """Raise the one-line ``<object>: <reason>; <fix>`` error."""
    raise InvalidInput(f"{obj}: {reason}; {fix}")


def type_name(value: object) -> str:
    """How a decoded YAML/JSON value is described to users."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def as_mapping(obj: str, path: str, value: object) -> Mapping[str, Any]:
    """A mapping field; null/absent is an empty mapping."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        fail(
            obj, f"{path} must be a mapping, not {type_name(value)}", f"write {path} as key: value"
        )
    for key in value:
        if not isinstance(key, str):
            fail(obj, f"{path} has a non-string key {key!r}", "quote the key")
    return value


def check_known(
    obj: str, path: str, data: Mapping[str, Any], known: Iterable[str], strict: bool
) -> None:
    """Reject keys of ``data`` not in ``known`` (when ``strict``), naming the first."""
    if not strict:
        return
    known_set = tuple(known)
    for key in data:
        if key not in known_set:
            where = f"{path}.{key}" if path else key
            hint = _LEGACY_HINTS.get(where, "remove it")
            fail(obj, f'unknown field "{where}"', f"{hint} (known fields: {', '.join(known_set)})")


_LEGACY_HINTS = {
    "spec.ipip": "it is Calico's v1 form: use spec.ipipMode instead",
    "spec.nat-outgoing": "it is Calico's v1 form: use spec.natOutgoing instead",
}


def get_str(obj: str, path: str, data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        fail(obj, f"{path}.{key} must be a string, not {type_name(value)}", "quote the value")
    return value


def get_bool(obj: str, path: str, data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        fail(obj, f"{path}.{key} must be true or false, not {value!r}", "use true or false")
    return value


def get_int(
    obj: str, path: str, data: Mapping[str, Any], key: str, default: int, lo: int, hi: int
) -> int:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        fail(
            obj, f"{path}.{key} must be an integer, not {value!r}", f"use a whole number {lo}-{hi}"
        )
    if not lo <= value <= hi:
        fail(obj, f"{path}.{key} {value} is out of range", f"use a number between {lo} and {hi}")
    return value


def get_str_list(obj: str, path: str, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        fail(obj, f"{path}.{key} must be a list, not {type_name(value)}", "write it as a list")
    for item in value:
        if not isinstance(item, str):
            fail(obj, f"{path}.{key} item {item!r} is not a string", "quote the item")
    return tuple(value)


def get_enum(
    obj: str, path: str, data: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str
) -> str:
    value = get_str(obj, path, data, key, default) or default
    if value not in choices:
        same = [c for c in choices if c.lower() == value.replace("-", "").lower()]
        fix = f"use {same[0]}" if same else f"use one of {', '.join(choices)}"
        fail(obj, f"{path}.{key} {value!r} is not one of {', '.join(choices)}", fix)
    return value


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name) is not None


def object_name(kind: str, d: Mapping[str, Any], namespaced: bool = False) -> str:
    """``Kind(name)`` (or ``Kind(namespace/name)``) for messages, before validation."""
    meta = d.get("metadata") if isinstance(d, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    shown = name if isinstance(name, str) and name else "<no name>"
    if namespaced and isinstance(meta, Mapping) and isinstance(meta.get("namespace"), str):
        shown = f"{meta['namespace']}/{shown}"
    return f"{kind}({shown})"


def check_top(
    obj: str, d: object, kinds: tuple[str, ...], api_versions: tuple[str, ...], strict: bool
) -> Mapping[str, Any]:
    """The object itself: a mapping whose kind/apiVersion (when given) fit."""
    top = as_mapping(obj, "the resource", d)
    check_known(obj, "", top, ("apiVersion", "kind", "metadata", "spec"), strict)
    kind = top.get("kind")
    if kind is not None and kind not in kinds:
        fail(obj, f"kind is {kind!r}, expected {kinds[0]}", f"set kind: {kinds[0]}")
    version = top.get("apiVersion")
    if version is not None and version not in api_versions:
        fail(obj, f"apiVersion {version!r} is not supported", f"use apiVersion: {API_VERSION}")
    return top


@record
class Meta:
    """The parsed ``metadata`` of a resource (see ``METADATA_FIELDS``)."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    uid: str | None
    creation_timestamp: str | None
    resource_version: str | None


def read_metadata(
    obj: str, top: Mapping[str, Any], *, strict: bool, namespaced: bool = False
) -> Meta:
    """Parse and validate ``metadata``; the name must be a DNS-1123 subdomain."""
    meta = as_mapping(obj, "metadata", top.get("metadata"))
    known = (*METADATA_FIELDS, "namespace") if namespaced else METADATA_FIELDS
    check_known(obj, "metadata", meta, known, strict)
    name = get_str(obj, "metadata", meta, "name", "")
    if not name:
        fail(obj, "metadata.name is missing", "give the resource a name")
    if not is_dns_subdomain(name):
        fail(
            obj,
            f"metadata.name {name!r} is not a valid DNS-1123 subdomain",
            "use lower-case letters, digits, '-' and '.', starting and ending with a letter "
            "or digit, at most 253 characters",
        )
    namespace = ""
    if namespaced:
        namespace = get_str(obj, "metadata", meta, "namespace", "default") or "default"
        if len(namespace) > 63 or not re.fullmatch(_DNS_LABEL, namespace):
            fail(
                obj,
                f"metadata.namespace {namespace!r} is not a valid DNS-1123 label",
                "use lower-case letters, digits and '-', at most 63 characters",
            )
    labels = _string_map(obj, "metadata.labels", meta.get("labels"))
    for key, value in labels.items():
        _check_label(obj, key, value)
    return Meta(
        name=name,
        namespace=namespace,
        labels=labels,
        annotations=_string_map(obj, "metadata.annotations", meta.get("annotations")),
        uid=_optional_str(obj, "metadata.uid", meta.get("uid")),
        creation_timestamp=_timestamp(obj, meta.get("creationTimestamp")),
        resource_version=_optional_str(
            obj, "metadata.resourceVersion", meta.get("resourceVersion")
        ),
    )


def write_metadata(
    name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    uid: str | None,
    creation_timestamp: str | None,
    resource_version: str | None,
    namespace: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if namespace is not None:
        out["namespace"] = namespace
    if labels:
        out["labels"] = dict(labels)
    if annotations:
        out["annotations"] = dict(annotations)
    if uid is not None:
        out["uid"] = uid
    if creation_timestamp is not None:
        out["creationTimestamp"] = creation_timestamp
    if resource_version is not None:
        out["resourceVersion"] = resource_version
    return out


def _string_map(obj: str, path: str, value: object) -> dict[str, str]:
    data = as_mapping(obj, path, value)
    for key, item in data.items():
        if not isinstance(item, str):
            fail(obj, f"{path}.{key} must be a string, not {type_name(item)}", "quote the value")
    return dict(data)


def _check_label(obj: str, key: str, value: str) -> None:
    prefix, _, name = key.rpartition("/")
    if (
        (prefix and not is_dns_subdomain(prefix))
        or len(name) > 63
        or not _LABEL_NAME.fullmatch(name)
    ):
        fail(
            obj,
            f"label key {key!r} is invalid",
            "use an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit",
        )
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        fail(
            obj,
            f"label {key}={value!r} has an invalid value",
            "use at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
            "letter or digit",
        )


def _optional_str(obj: str, path: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a resourceVersion written without quotes
    if not isinstance(value, str):
        fail(obj, f"{path} must be a string, not {type_name(value)}", "quote the value")
    return value


def _timestamp(obj: str, value: object) -> str | None:
    if not isinstance(value, str | None):
        import datetime  # only YAML loaders that resolve timestamps get here

        if not isinstance(value, datetime.datetime):
            return _optional_str(obj, "metadata.creationTimestamp", value)
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="seconds") + "Z"
    return _optional_str(obj, "metadata.creationTimestamp", value)


def read_objects(
    obj: str,
    path: str,
    value: object,
    known: Iterable[str],
    strict: bool,
    build: Callable[[str, Mapping[str, Any]], T],
) -> tuple[T, ...]:
    """A list of objects (``spec.ports``, ``spec.ipNATs``, ``spec.orchRefs``): each item a
    mapping with only ``known`` keys (when ``strict``), turned into a record by ``build``,
    which gets the item's path (``spec.ports[2]``) and its mapping."""
    if value is None:
        return ()
    if not isinstance(value, list):
        fail(obj, f"{path} must be a list, not {type_name(value)}", "write it as a list")
    out = []
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        data = as_mapping(obj, item_path, item)
        check_known(obj, item_path, data, known, strict)
        out.append(build(item_path, data))
    return tuple(out)
