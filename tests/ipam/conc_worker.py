"""An allocation worker for the multi-process test, importable by ``spawn`` children."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam.requests import AutoAssignArgs
from tortie.ipam.service import Ipam


@dataclass
class WorkerReport:
    worker: str
    node: str
    held: dict[str, list[str]] = field(default_factory=dict)  # handle -> bare addresses
    released: dict[str, list[str]] = field(default_factory=dict)  # handle -> addresses
    allocations: int = 0
    short: int = 0
    error: str | None = None


def allocate(path: str, worker: str, node: str, target: int, start_at: float, queue: Any) -> None:
    """Allocate until ``target`` addresses are held; every 25th request also releases one
    earlier handle (and takes its addresses again later).  Reports through ``queue``."""
    report = WorkerReport(worker, node)
    rnd = random.Random(worker)
    store = SqliteDatastore(path)
    try:
        ipam = Ipam(store)
        while time.time() < start_at:
            time.sleep(0.001)
        n = 0
        while sum(len(a) for a in report.held.values()) < target:
            n += 1
            handle = f"{worker}-{n}"
            want = min(2 if n % 7 == 0 else 1, target - sum(len(a) for a in report.held.values()))
            got: list[str] = []
            for _attempt in range(20):
                res = ipam.auto_assign(
                    AutoAssignArgs(
                        node=node,
                        handle_id=handle,
                        num4=want - len(got),
                        attrs={"pod": handle},
                    )
                ).ipv4
                got += [a.split("/")[0] for a in res.addresses]
                if len(got) == want:
                    break
                report.short += 1
                time.sleep(0.01)
            report.allocations += len(got)
            if got:
                report.held[handle] = got
            if n % 25 == 0 and report.held:
                victim = rnd.choice(sorted(report.held))
                released = ipam.release_by_handle(victim)
                assert sorted(released) == sorted(report.held[victim]), (victim, released)
                report.released[victim] = report.held.pop(victim)
    except Exception as exc:  # reported to the parent, which fails the test
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        store.close()
        queue.put(report)
