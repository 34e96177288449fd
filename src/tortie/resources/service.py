"""Resource verbs (create, apply, replace, delete, get), the same for every kind, with each
kind's additions in ``hooks``.

Every document of a request is validated against the store and against the other
documents first; only then is anything written, so a failing command writes nothing.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tortie.core.record import record
from tortie.datastore import keys
from tortie.datastore.base import KV, Datastore
from tortie.errors import AlreadyExists, Conflict, InvalidInput, NotFound, RevisionConflict
from tortie.ipam.service import Ipam
from tortie.model.resources import KINDS, KindInfo
from tortie.resources.hooks import HOOKS, KindHooks

VERBS = ("create", "apply", "replace", "delete")


@record
class Planned:
    """One validated write: the verb, the kind, the object and its storage key."""

    verb: str
    info: KindInfo
    obj: Any
    key: str
    current: KV | None


def _name_ns(info: KindInfo, obj: Any) -> tuple[str, str | None]:
    name = str(obj.name)
    ns = getattr(obj, "namespace", None) if info.namespaced else None
    return name, (ns or "default") if info.namespaced else None


def describe(info: KindInfo, obj: Any) -> str:
    name, ns = _name_ns(info, obj)
    return f"{info.kind}({ns + '/' if ns else ''}{name})"


def default_key(info: KindInfo, obj: Any) -> str:
    name, ns = _name_ns(info, obj)
    return keys.resource_key(info.plural, name, ns)


class ResourceService:
    def __init__(self, store: Datastore) -> None:
        self.store = store
        self.ipam = Ipam(store)
        self._hooks: dict[str, KindHooks] = {}

    def hooks(self, kind: str) -> KindHooks:
        if kind not in self._hooks:
            self._hooks[kind] = HOOKS.get(kind, KindHooks)()
        return self._hooks[kind]

    # ------------------------------------------------------------- planning

    def plan(self, verb: str, docs: Sequence[Mapping[str, Any]]) -> list[Planned]:
        """Validate every document for ``verb``; raise on the first problem."""
        self._hooks = {}  # fresh per request
        planned: list[Planned] = []
        keys_planned: set[str] = set()
        for doc in docs:
            info = KINDS[str(doc.get("kind"))]
            hooks = self.hooks(info.kind)
            obj = info.from_dict(doc)
            key = hooks.key(obj) or default_key(info, obj)
            current = self.store.get(key)
            what = describe(info, obj)
            exists = current is not None or hooks.implicit
            if key in keys_planned:
                raise InvalidInput(f"{what} appears twice in the input; keep one of them")
            keys_planned.add(key)
            if verb == "create" and current is not None:
                raise AlreadyExists(
                    f"Failed to create '{info.kind}' resource: resource already exists: {what}; "
                    "use 'tortie apply' or 'tortie replace' to change it"
                )
            if verb in ("replace", "delete") and not exists:
                raise NotFound(f"resource does not exist: {what}; create it first")
            hooks.check(self, verb, obj, current)
            planned.append(Planned(verb, info, obj, key, current))
        return planned

    # ------------------------------------------------------------- applying

    def execute(self, planned: list[Planned]) -> list[str]:
        """Carry out validated writes; returns one message per object."""
        done = []
        for n, p in enumerate(planned):
            what = describe(p.info, p.obj)
            try:
                if p.verb == "delete":
                    if not self.hooks(p.info.kind).delete(self, p):
                        self.store.delete(p.key)
                else:
                    self._write(p)
            except (RevisionConflict, NotFound) as exc:
                if what in str(exc):
                    raise
                # A raw key means another writer got between our read and our write.
                done_note = f" ({n} earlier resources of this command were written)" if n else ""
                raise Conflict(
                    f"{what} was changed or deleted by another writer while this command ran"
                    f"{done_note}; check it with 'tortie get' and run the command again"
                ) from None
            if p.verb == "delete":
                done.append(f"Successfully deleted 1 '{p.info.kind}' resource(s): {what}")
            else:
                verb = {"create": "created", "apply": "applied", "replace": "replaced"}[p.verb]
                note = self.hooks(p.info.kind).note(p.obj)
                done.append(f"Successfully {verb} 1 '{p.info.kind}' resource(s): {what}{note}")
        return done

    def _write(self, p: Planned) -> None:
        hooks = self.hooks(p.info.kind)
        if hooks.write(self, p):
            return
        doc = p.info.to_dict(p.obj)
        meta = doc.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        if p.current is None:
            hooks.before_create(self, p.obj)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault(
                "creationTimestamp",
                datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            try:
                self.store.create(p.key, json.dumps(doc))
            except AlreadyExists:
                raise AlreadyExists(
                    f"{describe(p.info, p.obj)} was created by someone else meanwhile; "
                    "run the command again"
                ) from None
        else:
            old_meta = json.loads(p.current.value).get("metadata", {})
            for field in ("uid", "creationTimestamp"):
                if field in old_meta:
                    meta[field] = old_meta[field]
            try:
                self.store.update(p.key, json.dumps(doc), p.current.revision)
            except RevisionConflict:
                raise Conflict(
                    f"{describe(p.info, p.obj)} was changed by someone else meanwhile; "
                    "run the command again"
                ) from None

    # ----------------------------------------------------------------- read

    def get(self, info: KindInfo, name: str | None, namespace: str | None) -> list[dict[str, Any]]:
        special = self.hooks(info.kind).get(self, name)
        if special is not None:
            return special
        if name is not None:
            key = keys.resource_key(
                info.plural, name, (namespace or "default") if info.namespaced else None
            )
            kv = self.store.get(key)
            if kv is None:
                where = f"{namespace or 'default'}/" if info.namespaced else ""
                raise NotFound(
                    f"resource does not exist: {info.kind}({where}{name}); check the name with "
                    f"'tortie get {info.plural}'"
                )
            found = [kv]
        else:
            prefix = keys.resource_prefix(info.plural, namespace if info.namespaced else None)
            found = self.store.list(prefix)
        out = []
        for kv in found:
            doc = json.loads(kv.value)
            doc = info.to_dict(info.from_dict(doc, strict=False))
            doc.setdefault("metadata", {})["resourceVersion"] = str(kv.revision)
            out.append(doc)
        return out
