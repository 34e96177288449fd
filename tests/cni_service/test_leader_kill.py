"""A burst of ADDs through the node service while the etcd leader is SIGKILLed (issue 15,
"Tests must prove"): no address held twice, no handle with a second address of a family,
every answered pod holds exactly its addresses, ``ipam check`` finds nothing wrong but the
leaks of calls answered "try again", and CNI GC frees exactly those.

Real processes: a 3-member etcd on loopback, ``tortie node serve-cni``, the launchers
``install-cni`` writes (group commit batches the concurrent ADDs into etcd transactions).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the etcd helper
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cni"))
from fault_helpers import (
    NETWORK,
    cni_env,
    finish,
    gc_conf,
    held,
    ipam_check,
    ips_of,
    launch,
    one_line_error,
    run_plugin,
)
from test_service_faults import World, make_world, remove_tree, short_dir

from etcd_cluster import EtcdCluster, EtcdMember, request, require_etcd
from tortie.cni.errors import TRY_AGAIN_LATER
from tortie.datastore.config import DatastoreSettings

PODS = 90
AT_ONCE = 12
KILL_AFTER = 30  # ADDs launched


def leader(cluster: EtcdCluster) -> EtcdMember:
    for m in cluster.members:
        if m.pid is None:
            continue
        status, body = request(m, "POST", "/v3/maintenance/status", {})
        header = body.get("header")
        if (
            status == 200
            and isinstance(header, dict)
            and body.get("leader") == header.get("member_id")
        ):
            return m
    raise AssertionError("no etcd member says it is the leader")


@pytest.fixture
def world() -> Iterator[tuple[World, EtcdCluster]]:
    require_etcd()
    directory = short_dir()
    try:
        with EtcdCluster(Path(tempfile.mkdtemp(dir=directory)) / "etcd", size=3) as cluster:
            settings = DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=cluster.endpoints)
            w = make_world(directory, settings)
            try:
                yield w, cluster
            finally:
                w.service.kill()
    finally:
        remove_tree(directory)


def test_a_burst_of_adds_survives_the_etcd_leader_being_killed(
    world: tuple[World, EtcdCluster],
) -> None:
    w, cluster = world
    w.service.start()
    killed: EtcdMember | None = None
    queue = [(f"pod{i:03d}", 0) for i in range(PODS)]
    running: list[tuple[str, int, str, Any]] = []
    answered: dict[str, list[str]] = {}
    failed: list[str] = []
    launched = 0
    began = time.monotonic()
    try:
        while queue or running:
            assert time.monotonic() - began < 180, "the burst did not finish"
            if killed is None and launched >= KILL_AFTER:
                killed = leader(cluster)
                killed.kill()
            while queue and len(running) < AT_ONCE:
                pod, attempt = queue.pop(0)
                cid = pod if attempt == 0 else f"{pod}-r{attempt}"
                running.append(
                    (pod, attempt, cid, launch(w.plugin(), w.stdin, cni_env("ADD", cid, w.sock)))
                )
                launched += 1
            time.sleep(0.005)
            for item in list(running):
                pod, attempt, cid, proc = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                code, out, err = finish(proc)
                if code == 0:
                    answered[cid] = ips_of(out)
                    continue
                doc = one_line_error(out)  # a runtime retries a "try again" under a new id
                assert doc["code"] == TRY_AGAIN_LATER, (cid, doc, err)
                assert attempt < 4, (cid, doc)
                failed.append(cid)
                queue.insert(0, (pod, attempt + 1))
    finally:
        for _, _, _, proc in running:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    print(
        f"{PODS} pods, {launched} ADDs in {time.monotonic() - began:.1f} s, leader "
        f"{killed.name if killed else '?'} killed after {KILL_AFTER}, {len(failed)} answered 11"
    )
    assert killed is not None
    assert len(answered) == PODS

    pairs = held(w.settings)
    addresses = [a for a, _ in pairs]
    assert len(addresses) == len(set(addresses)), "an address is held twice"
    by_handle: dict[str | None, set[str]] = defaultdict(set)
    for address, handle in pairs:
        by_handle[handle].add(address)
    for handle, held_addresses in by_handle.items():  # never two of one family
        v4 = [a for a in held_addresses if ":" not in a]
        assert len(v4) <= 1 and len(held_addresses) - len(v4) <= 1, (handle, held_addresses)
    for cid, ips in answered.items():
        assert len(ips) == 2 and by_handle[f"{NETWORK}.{cid}"] == set(ips), cid
    live = sorted(answered)
    rc, report, text = ipam_check(w.settings, live, w.dir)
    assert report["problems"] == [], text
    leaks = {a for a, h in pairs if h not in {f"{NETWORK}.{c}" for c in answered}}
    assert {leak["ip"] for leak in report["leakedIPs"]} == leaks, text
    gc = json.dumps(gc_conf(w.conf, live)).encode()
    code, out, err = run_plugin(w.plugin(), gc, cni_env("GC", "", w.sock))
    assert code == 0, (out, err)
    rc, report, text = ipam_check(w.settings, live, w.dir)
    assert (rc, report["problemCount"]) == (0, 0), text
    assert w.service.terminate() == 0
