"""An IPIP pool on this kernel (no ``ipip`` module): a real ``tortie node run`` exits
with one line naming the pool, the missing module and the ``vxlanMode`` alternative —
never a silent cluster, never a traceback, nothing left running."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node_cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overlay_lab import SegmentedCluster, netns_processes, require

from netns import NetnsPool
from tortie.node.tunnel import kernel_has_ipip


def test_ipip_pool_stops_the_agent_with_one_line(tmp_path: Path) -> None:
    require()
    if kernel_has_ipip():
        pytest.skip("this kernel has the ipip module; the refusal is for kernels without it")
    store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp_path / "tortie.db")}
    with NetnsPool() as pool:
        cluster = SegmentedCluster(pool, tmp_path, store, ["a"])
        host = cluster.hosts[0]
        try:
            cluster.start_agent(host, "dual", CALICO_IPV4POOL_IPIP="Always")
            assert host.agent is not None
            rc = host.agent.wait(timeout=30)
            procs = netns_processes(host.ns)
        finally:
            cluster.close()
    log = cluster.agent_log(host)
    assert rc not in (0, None), log
    said = [line for line in log.splitlines() if " [INFO] " not in line and line.strip()]
    assert len(said) == 1, log
    line = said[0]
    assert "default-ipv4-ippool" in line and "ipip module" in line and "vxlanMode" in line
    assert "Traceback" not in log
    assert procs == {}  # no BIRD (nor anything else) left in the host's namespace
    assert sorted(p.name for p in host.run_dir.iterdir()) == ["agent.log"]
    spec = cluster.node(host.name)["spec"]  # no tunnel address was taken
    assert "ipv4IPIPTunnelAddr" not in spec.get("bgp", {}), spec
    check = cluster.tortie("ipam", "check")
    assert check.returncode == 0 and "Found 0 IPAM allocations" in check.stdout, check.stdout
