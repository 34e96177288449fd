"""Node resources: read, list, and change through the one compare-and-swap loop.

The node agent writes its own Node (addresses, AS, router id); IPAM reads node labels
for pool node selectors.  Stored as Calico's whole v3 object under
``/calico/resources/v3/projectcalico.org/nodes/<name>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tortie.datastore import keys
from tortie.datastore.base import KV, Datastore
from tortie.errors import DatastoreError, InvalidInput
from tortie.ipam.retry import DEFAULT_POLICY, RetryPolicy, run_cas
from tortie.model.node import Node, node_from_dict, node_to_dict


def _decode(kv: KV) -> Node:
    try:
        return node_from_dict(json.loads(kv.value), strict=False)
    except (ValueError, InvalidInput) as exc:
        raise DatastoreError(f"{kv.key}: stored Node is not valid ({exc})") from None


class NodeService:
    def __init__(self, store: Datastore, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.store = store
        self.policy = policy

    def list_readable(self) -> tuple[list[Node], list[str]]:
        """Every Node that decodes, and one message per stored Node that does not (a
        corrupt Node elsewhere must not stop a node from starting)."""
        nodes: list[Node] = []
        broken: list[str] = []
        for kv in self.store.list(keys.resource_prefix("nodes")):
            try:
                nodes.append(_decode(kv))
            except DatastoreError as exc:
                broken.append(str(exc))
        return nodes, broken

    def get(self, name: str) -> Node | None:
        kv = self.store.get(keys.resource_key("nodes", name))
        return None if kv is None else _decode(kv)

    def list(self) -> list[Node]:
        return [_decode(kv) for kv in self.store.list(keys.resource_prefix("nodes"))]

    def labels(self, name: str) -> dict[str, str]:
        node = self.get(name)
        return {} if node is None else dict(node.labels)

    def update(self, name: str, change: Callable[[Node | None], Node]) -> Node:
        """Apply ``change`` to the stored Node (None when absent) and write the result,
        re-reading and re-applying when another writer got there first."""
        key = keys.resource_key("nodes", name)

        def attempt() -> Node:
            kv = self.store.get(key)
            old = None if kv is None else _decode(kv)
            new = change(old)
            if old is not None and new == old:
                return old  # nothing to write: a write would wake every node's agent
            doc = node_to_dict(new)
            meta = doc["metadata"]
            meta.pop("resourceVersion", None)
            if kv is None:
                import datetime  # only when a Node is created: off the plugin's path
                import uuid

                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault(
                    "creationTimestamp",
                    datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
                self.store.create(key, json.dumps(doc))
            else:
                self.store.update(key, json.dumps(doc), kv.revision)
            return new

        return run_cas(attempt, f"update Node {name}", self.policy)
