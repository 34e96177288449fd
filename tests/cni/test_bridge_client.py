"""A real CNI client: the reference ``bridge`` plugin calls our ``calico-ipam`` launcher.

Everything happens inside test-created namespaces (a "host" namespace holding the
bridge and two pod namespaces); they are deleted afterwards.  Root only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cni_helpers import add_pool, allocated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (shared netns helper)
from netns import Netns, NetnsPool
from tortie.cni.install import write_executables
from tortie.datastore.sqlite import SqliteDatastore

BRIDGE = "/usr/lib/cni/bridge"


@pytest.fixture
def namespaces() -> Iterator[NetnsPool]:
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (creates network namespaces)"
    elif not os.access(BRIDGE, os.X_OK):
        reason = f"{BRIDGE} missing (Debian package containernetworking-plugins)"
    if reason:
        print(f"SKIP bridge client test: {reason}")
        pytest.skip(reason)
    with NetnsPool() as pool:
        yield pool


def _bridge(
    host: Netns, command: str, conf: dict[str, Any], pod: Netns | None, cid: str, cni_path: str
) -> tuple[int, str]:
    env = [
        f"CNI_COMMAND={command}",
        f"CNI_CONTAINERID={cid}",
        f"CNI_NETNS={pod.path if pod else ''}",
        "CNI_IFNAME=eth0",
        f"CNI_PATH={cni_path}",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    proc = host.run("env", "-i", *env, BRIDGE, input=json.dumps(conf), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _ping(pod: Netns, addr: str, v6: bool) -> None:
    argv = ["ping", "-6" if v6 else "-4", "-c1", "-W2", addr]
    last = None
    for _ in range(10):  # IPv6 may still be in DAD (tentative) for a moment
        last = pod.run(*argv, check=False)
        if last.returncode == 0:
            return
        time.sleep(0.5)
    assert last is not None
    raise AssertionError(f"{pod.name}: ping {addr} failed: {last.stdout} {last.stderr}")


def test_bridge_plugin_with_calico_ipam(namespaces: NetnsPool, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    write_executables(str(bin_dir))
    db = str(tmp_path / "tortie.db")
    store = SqliteDatastore(db)
    add_pool(store, "pool4", "10.91.0.0/24")
    add_pool(store, "pool6", "fd00:91::/120")
    store.close()
    host, pod_a, pod_b = namespaces.new(), namespaces.new(), namespaces.new()
    conf = {
        "cniVersion": "1.0.0",
        "name": "brnet",
        "type": "bridge",
        "bridge": "br-tortie",
        "isGateway": False,
        "ipMasq": False,
        "ipam": {"type": "calico-ipam", "assign_ipv6": "true"},
        "sqlite_path": db,
        "nodename": "node-1",
    }
    cni_path = f"{bin_dir}:/usr/lib/cni"
    results = {}
    for pod, cid in ((pod_a, "pod-a"), (pod_b, "pod-b")):
        code, out = _bridge(host, "ADD", conf, pod, cid, cni_path)
        assert code == 0, out
        results[cid] = json.loads(out)
    addrs = {cid: [ip["address"].split("/")[0] for ip in r["ips"]] for cid, r in results.items()}
    for cid, (v4, v6) in addrs.items():
        assert v4.startswith("10.91.0.") and v6.startswith("fd00:91::"), (cid, results[cid])
        link = (pod_a if cid == "pod-a" else pod_b).link("eth0")
        assert link is not None
        got = {a["local"] for a in link["addr_info"]}
        assert {v4, v6} <= got
    _ping(pod_a, addrs["pod-b"][0], v6=False)
    _ping(pod_a, addrs["pod-b"][1], v6=True)
    _ping(pod_b, addrs["pod-a"][0], v6=False)
    _ping(pod_b, addrs["pod-a"][1], v6=True)
    # CHECK through the client: bridge first hands prevResult to our IPAM CHECK.  (pod-b's
    # result: the bridge MAC recorded in pod-a's result changed when pod-b joined, which
    # the bridge plugin's own CHECK would report.)
    code, out = _bridge(
        host, "CHECK", {**conf, "prevResult": results["pod-b"]}, pod_b, "pod-b", cni_path
    )
    assert code == 0, out
    code, out = _bridge(
        host, "CHECK", {**conf, "prevResult": results["pod-b"]}, pod_a, "pod-a", cni_path
    )
    assert code == 1 and json.loads(out)["code"] == 103, out
    assert "not brnet.pod-a" in out
    # DEL, twice, the second without a netns
    for pod, cid in ((pod_a, "pod-a"), (pod_b, "pod-b")):
        assert _bridge(host, "DEL", conf, pod, cid, cni_path)[0] == 0
        code, out = _bridge(host, "DEL", conf, None, cid, cni_path)
        assert code == 0, out
    store = SqliteDatastore(db)
    try:
        assert allocated(store) == {}
    finally:
        store.close()
