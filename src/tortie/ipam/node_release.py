"""Removing a node, as ``calicoctl delete node`` does: its addresses, its workload
endpoints and its block affinities go with it, so nothing of it stays allocated."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import DatastoreError, NotFound, RevisionConflict
from tortie.ipam.requests import ReleaseOptions
from tortie.ipam.service import Ipam
from tortie.model.ipam_records import decode_block


@dataclass
class NodeRelease:
    addresses: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)


def release_node(store: Datastore, name: str) -> NodeRelease:
    """Release every address allocated for ``name`` (the ``node`` attribute, else the
    block's affinity), delete its WorkloadEndpoints, give up its block affinities."""
    done = NodeRelease()
    ipam = Ipam(store)
    items = []
    for version in (4, 6):
        for kv in store.list(keys.block_prefix(version)):
            try:
                block = decode_block(kv.key, kv.value)
            except DatastoreError:
                continue  # 'tortie ipam check' reports it
            for ordinal, attr in block.allocated():
                owner = attr.secondary.get("node") or block.host()
                if owner == name:
                    items.append(ReleaseOptions(str(block.address(ordinal)), attr.handle_id))
    result = ipam.release_ips(items)
    done.addresses = list(result.released)
    for kv in store.list(keys.resource_prefix("workloadendpoints")):
        try:
            node = json.loads(kv.value).get("spec", {}).get("node")
        except (ValueError, AttributeError):
            continue
        if node == name:
            try:
                store.delete(kv.key, kv.revision)
            except (NotFound, RevisionConflict):
                continue
            done.endpoints.append(kv.key.rsplit("/", 2)[-2] + "/" + kv.key.rsplit("/", 1)[-1])
    done.blocks = ipam.release_host_affinities(name, must_be_empty=False)
    return done
