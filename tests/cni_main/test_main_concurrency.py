"""100 concurrent ADDs on one host (one process each, 100 pod namespaces), then 100
concurrent DELs: distinct addresses, and nothing left afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from main_helpers import Env

from netns import NetnsPool

PODS = 100


def run_all(world: Env, command: str, pods: list[tuple[str, str]]) -> list[dict[str, object]]:
    conf_file = world.tmp / "conf.json"
    conf_file.write_text(json.dumps(world.conf("dual")))
    procs = []
    for cid, path in pods:
        with conf_file.open("rb") as stdin:
            proc = subprocess.Popen(
                world.plugin_argv("calico"),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=world.env(command, cid, path),
            )
        procs.append(proc)
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (out, err)
        results.append(json.loads(out) if out.strip() else {})
    return results


@pytest.mark.root
@pytest.mark.slow
def test_hundred_concurrent_adds(world: Env, namespaces: NetnsPool) -> None:
    pods = [(f"{i:03d}concurrent", namespaces.new().path) for i in range(PODS)]
    start = time.monotonic()
    results = run_all(world, "ADD", pods)
    took = time.monotonic() - start
    print(f"{PODS} concurrent dual-stack ADDs: {took:.1f} s")
    v4 = [str(r["ips"][0]["address"]) for r in results]  # type: ignore[index]
    v6 = [str(r["ips"][1]["address"]) for r in results]  # type: ignore[index]
    assert len(set(v4)) == PODS and len(set(v6)) == PODS
    assert all(a.endswith("/32") for a in v4) and all(a.endswith("/128") for a in v6)
    assert len(world.allocations()) == 2 * PODS
    assert len(world.weps()) == PODS
    host = world.host
    assert host is not None
    assert len([n for n in host.link_names() if n.startswith("cali")]) == PODS

    start = time.monotonic()
    run_all(world, "DEL", pods)
    print(f"{PODS} concurrent DELs: {time.monotonic() - start:.1f} s")
    assert world.allocations() == {}
    assert world.weps() == []
    assert not [n for n in host.link_names() if n.startswith("cali")]
