"""Warm blocks: the node's next block is claimed before an ADD needs it.

Claiming a block costs several writes (pending affinity, block, confirmation); an ADD
that finds the node's blocks full pays them inline.  The node service tells ``WarmBlocks``
after every batch how many addresses the node's blocks of the pools in use still have
free; below ``low_water`` one background claim takes the next block, within the same
limits as an ADD (``autoAllocateBlocks``, ``maxBlocksPerHost``, strict affinity).  The
count is read again before claiming, so a burst asks for one block, not many.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tortie.errors import TortieError
from tortie.ipam.affinities import Family, in_any
from tortie.ipam.planner import usable
from tortie.ipam.records import read_block
from tortie.ipam.service import DEFAULT_MAX_BLOCKS_PER_HOST, Ipam
from tortie.model.ippool import IPPool

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    from tortie.datastore.base import Datastore

LOW_WATER = 16


class WarmBlocks:
    def __init__(
        self, store: Datastore, log: logging.Logger | None = None, low_water: int = LOW_WATER
    ) -> None:
        self.store = store
        self.log = log
        self.low_water = low_water
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._running: set[tuple[str, int, tuple[str, ...]]] = set()  # claims under way
        self._again: set[tuple[str, int, tuple[str, ...]]] = set()  # noted while running
        self._closed = False
        # One worker for every claim: one datastore connection (SQLite keeps one per
        # thread), not one per claim.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="warm-block")
        self.claimed: list[str] = []

    def note(self, node: str, version: int, pools: list[IPPool], free: int | None) -> None:
        """After a batch: ``free`` addresses left in the node's blocks of ``pools``."""
        if free is None or free >= self.low_water or not pools:
            return
        key = (node, version, tuple(p.name for p in pools))
        with self._lock:
            if self._closed:
                return
            if key in self._running:  # the check under way may have read an older count
                self._again.add(key)
                return
            self._running.add(key)
        self._worker.submit(self._claim, key, node, version, pools)

    def close(self, timeout: float = 30.0) -> None:
        """Start no more claims and wait (at most ``timeout``) for those under way: they
        write through the store, which the caller closes next (closing a SQLite store
        under a writing thread crashes the process)."""
        with self._done:
            self._closed = True
            self._done.wait_for(lambda: not self._running, timeout)
        self._worker.shutdown(wait=False, cancel_futures=True)

    def free(self, ipam: Ipam, node: str, version: int, pools: list[IPPool]) -> int:
        nets = [p.network for p in pools]
        total = 0
        for cidr in ipam.confirmed_affinities(node, version):
            if in_any(cidr, nets):
                stored = read_block(self.store, cidr, version)
                if stored is not None and usable(stored.block, node):
                    total += stored.block.free
        return total

    def _claim(
        self, key: tuple[str, int, tuple[str, ...]], node: str, version: int, pools: list[IPPool]
    ) -> None:
        try:
            while True:
                self.claim_if_low(node, version, pools)
                with self._lock:  # noted again meanwhile: check the newer count too
                    if key not in self._again or self._closed:
                        break
                    self._again.discard(key)
        except TortieError as exc:  # an ADD will claim inline; say why we could not
            if self.log is not None:
                self.log.warning(
                    "warm block for node %s (IPv%d) not claimed: %s", node, version, exc
                )
        finally:
            with self._done:
                self._running.discard(key)  # a note since the last check runs a new one
                again = key in self._again and not self._closed
                self._again.discard(key)
                self._done.notify_all()
            if again:
                self.note(node, version, pools, 0)

    def claim_if_low(self, node: str, version: int, pools: list[IPPool]) -> str | None:
        """Claim one block for ``node`` if its blocks of ``pools`` run low; its CIDR."""
        ipam = Ipam(self.store)
        config = ipam.get_config()
        if not config.auto_allocate_blocks:
            return None
        owned = ipam.confirmed_affinities(node, version)
        if len(owned) >= (config.max_blocks_per_host or DEFAULT_MAX_BLOCKS_PER_HOST):
            return None
        if self.free(ipam, node, version, pools) >= self.low_water:
            return None
        cidr = ipam.claim_any_block(node, Family(version, pools), config.strict_affinity)
        if cidr is not None:
            self.claimed.append(cidr)
            if self.log is not None:
                self.log.info("claimed block %s ahead for node %s", cidr, node)
        return cidr
