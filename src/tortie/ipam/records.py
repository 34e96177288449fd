"""Typed IPAM records over the datastore: a block with the revision it was read at.

One policy for corrupt values: a block whose stored value does not decode is skipped by
every listing (allocation, borrowing, usage, pool checks) and never overwritten, while its
range stays taken (STATUS counts it; nothing is claimed over it);
``ipam check`` reports it.  Reading such a block by its CIDR raises ``DatastoreError``
naming the key, since the caller asked for that very block.
"""

from __future__ import annotations

import contextlib

from tortie.core.block import Block
from tortie.core.record import record
from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import DatastoreError
from tortie.model.ipam_records import decode_block

# Compact JSON of a block with no free ordinal (ours and Calico's Go encoder alike).
FULL_BLOCK_MARK = '"unallocated":[]'
# The most writes one store transaction may carry: etcd refuses more (--max-txn-ops,
# default 128).  Batches (ADD and DEL) are cut to stay within it.
MAX_TXN_OPS = 128


@record
class StoredBlock:
    """A decoded block, its CIDR and the revision it was read at."""

    cidr: str
    block: Block
    revision: int

    @property
    def key(self) -> str:
        return keys.block_key(self.cidr, 6 if ":" in self.cidr else 4)


@record
class BlockListing:
    """The readable blocks of a family and the CIDRs of the corrupt ones (which still
    occupy their range: nothing is ever claimed over them)."""

    blocks: list[StoredBlock]
    corrupt: list[str]


def scan_blocks(store: Datastore, version: int, free_only: bool = False) -> BlockListing:
    """Every block of a family; with ``free_only`` full blocks are left out without
    being decoded."""
    out = BlockListing([], [])
    for kv in store.list(keys.block_prefix(version)):
        if free_only and FULL_BLOCK_MARK in kv.value:
            continue
        cidr = keys.cidr_from_key(kv.key)
        try:
            block = decode_block(kv.key, kv.value)
        except DatastoreError:
            out.corrupt.append(cidr)
            continue
        out.blocks.append(StoredBlock(cidr, block, kv.revision))
    return out


def list_blocks(store: Datastore, version: int, free_only: bool = False) -> list[StoredBlock]:
    """The readable blocks of a family (corrupt ones skipped: see the module note)."""
    return scan_blocks(store, version, free_only).blocks


def read_block(store: Datastore, cidr: str, version: int) -> StoredBlock | None:
    """One block by CIDR; None when absent, ``DatastoreError`` when corrupt."""
    kv = store.get(keys.block_key(cidr, version))
    if kv is None:
        return None
    return StoredBlock(cidr, decode_block(kv.key, kv.value), kv.revision)


def atomic(store: Datastore) -> contextlib.AbstractContextManager[None]:
    """All writes in the block at once, where the store can (SQLite: one transaction);
    elsewhere each write stands alone and callers roll back themselves."""
    begin = getattr(store, "atomic", None)
    if callable(begin):
        cm: contextlib.AbstractContextManager[None] = begin()
        return cm
    return contextlib.nullcontext()
