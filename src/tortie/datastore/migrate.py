"""Copy a whole tortie/Calico keyspace between datastores (``tortie datastore migrate``).

The export is one JSON document listing every key under ``/calico/`` with its value.
Import checks the whole file first and refuses a target that already holds data, so a
failed import writes nothing and an import never merges two clusters by accident.
"""

from __future__ import annotations

import json
from typing import Any

from tortie.datastore.base import Datastore
from tortie.errors import DecodeError, InvalidInput

ROOT = "/calico/"
FORMAT = "tortie-datastore-export/v1"


def export_keys(store: Datastore) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "keys": [{"key": kv.key, "value": kv.value} for kv in store.list(ROOT)],
    }


def parse_export(text: str, source: str) -> list[tuple[str, str]]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DecodeError(
            f"{source}: not valid JSON ({exc}); give a file written by 'tortie datastore migrate export'"
        ) from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != FORMAT
        or not isinstance(doc.get("keys"), list)
    ):
        raise InvalidInput(
            f"{source}: not a tortie datastore export (format {FORMAT}); give a file written by 'tortie datastore migrate export'"
        )
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(doc["keys"]):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("key"), str)
            or not isinstance(item.get("value"), str)
        ):
            raise InvalidInput(f"{source}: entry {i} needs a string 'key' and 'value'")
        key, value = item["key"], item["value"]
        if not key.startswith(ROOT):
            raise InvalidInput(f"{source}: entry {i} key {key!r} is outside {ROOT}")
        if key in seen:
            raise InvalidInput(f"{source}: key {key} appears twice")
        seen.add(key)
        out.append((key, value))
    return out


def import_keys(store: Datastore, items: list[tuple[str, str]], target: str) -> int:
    existing = store.list(ROOT)
    if existing:
        raise InvalidInput(
            f"{target} already holds {len(existing)} keys (e.g. {existing[0].key}); "
            "import only into an empty datastore"
        )
    for key, value in items:
        store.create(key, value)
    return len(items)
