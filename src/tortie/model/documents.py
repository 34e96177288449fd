"""Reading and writing resource documents (YAML or JSON, single, multi-document and
``<Kind>List``).  The only module of :mod:`tortie.model` that imports PyYAML; the CNI
plugins never load it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, Literal

import yaml

from tortie.errors import DecodeError, InvalidInput
from tortie.model.fields import API_VERSION
from tortie.model.resources import KINDS

__all__ = ["dump", "load_documents", "parse_resource"]

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """Safe loading, timestamps kept as text, duplicate keys refused."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def load_documents(text: str, source: str) -> list[dict[str, Any]]:
    """The resource objects in ``text`` (``source`` names it in errors), lists unpacked.

    Every object has a supported ``apiVersion`` and a known ``kind``; its fields are
    checked later by :func:`parse_resource`.
    """
    try:
        docs = _decode(text, source)
    except RecursionError:
        raise DecodeError(
            f"{source}: nested too deeply to be a resource (more than "
            f"{sys.getrecursionlimit() // 2} levels); fix the structure"
        ) from None
    out: list[dict[str, Any]] = []
    for number, doc in enumerate(docs, start=1):
        if doc is None:
            continue  # an empty document, e.g. a trailing ---
        where = f"{source}: document {number}" if len(docs) > 1 else source
        if not isinstance(doc, Mapping):
            raise InvalidInput(
                f"{where} is a {type(doc).__name__}, not a resource; "
                "write a mapping with apiVersion, kind, metadata and spec"
            )
        kind = doc.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            out.extend(_unpack_list(doc, where))
        else:
            out.append(_check_object(doc, where))
    return out


def _decode(text: str, source: str) -> list[Any]:
    if text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            raise DecodeError(
                f"{source}: invalid JSON at line {exc.lineno}: {exc.msg}; fix the syntax"
            ) from None
        except ValueError as exc:
            raise DecodeError(f"{source}: invalid JSON: {exc}; remove one of them") from None
        return doc if isinstance(doc, list) else [doc]
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" at line {mark.line + 1}" if mark is not None else ""
        reason = exc.problem or exc.context or "unreadable"
        if exc.context and exc.problem and exc.context not in reason:
            reason = f"{reason} ({exc.context})"
        raise DecodeError(f"{source}: invalid YAML{line}: {reason}; fix the syntax") from None
    except yaml.YAMLError as exc:
        reason = str(exc).replace("\n", " ")
        raise DecodeError(f"{source}: invalid YAML: {reason}; fix the syntax") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _unpack_list(doc: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    kind = str(doc["kind"])
    item_kind = kind[: -len("List")]
    if item_kind and item_kind not in KINDS:
        raise InvalidInput(f"{where}: unknown kind {kind!r}; use one of {_list_kinds()}")
    items = doc.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidInput(f"{where}: {kind} items must be a list; write items as a list")
    out = []
    for i, item in enumerate(items):
        item_where = f"{where} ({kind} item {i + 1})"
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{item_where} is not a mapping; write each item as a resource")
        item = dict(item)
        if item_kind:  # items of a typed list may leave out kind and apiVersion
            item.setdefault("kind", item_kind)
            item.setdefault("apiVersion", doc.get("apiVersion", API_VERSION))
        out.append(_check_object(item, item_where))
    return out


def _check_object(doc: Mapping[str, Any], where: str) -> dict[str, Any]:
    kind = doc.get("kind")
    if kind is None:
        raise InvalidInput(f"{where}: kind is missing; add kind: (one of {_kinds()})")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidInput(f"{where}: unknown kind {kind!r}; use one of {_kinds()}")
    info = KINDS[kind]
    version = doc.get("apiVersion")
    if version is None:
        raise InvalidInput(f"{where}: {kind} has no apiVersion; add apiVersion: {API_VERSION}")
    if version not in info.api_versions:
        raise InvalidInput(
            f"{where}: {kind} apiVersion {version!r} is not supported; "
            f"use apiVersion: {API_VERSION}"
        )
    return dict(doc)


def _kinds() -> str:
    return ", ".join(KINDS)


def _list_kinds() -> str:
    return ", ".join(f"{kind}List" for kind in KINDS)


def parse_resource(d: Mapping[str, Any], *, strict: bool = True) -> object:
    """The typed resource for one object (IPPool, IPAMConfig, Node, WorkloadEndpoint)."""
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r}; use one of {_kinds()}")
    return KINDS[kind].from_dict(d, strict=strict)


def dump(
    objects: list[dict[str, Any]],
    fmt: Literal["yaml", "json"],
    list_kind: str | None = None,
    resource_version: str = "",
) -> str:
    """Objects as text.  With ``list_kind`` they are wrapped in one ``<Kind>List``;
    without it YAML gets one document per object and JSON a single object or an array.
    """
    data: Any
    if list_kind is not None:
        data = {
            "apiVersion": API_VERSION,
            "kind": list_kind,
            "items": objects,
            "metadata": {"resourceVersion": resource_version},
        }
    elif len(objects) == 1:
        data = objects[0]
    else:
        data = objects
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt != "yaml":
        raise InvalidInput(f"unknown output format {fmt!r}; use yaml or json")
    docs = data if isinstance(data, list) else [data]
    return yaml.dump_all(
        docs,
        Dumper=_BaseDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        explicit_start=len(docs) > 1,
    )
