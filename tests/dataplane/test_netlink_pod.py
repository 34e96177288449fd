"""The netlink dataplane in a multi-threaded process, as the node service runs it: pods
set up from many threads at once land in their own namespaces, and nothing leaks."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from netns import Netns, NetnsPool, list_netns, require_root

RUNNER = str(Path(__file__).with_name("netlink_runner.py"))


@pytest.fixture
def namespaces() -> Iterator[NetnsPool]:
    require_root()
    with NetnsPool() as pool:
        yield pool
    assert not {ns.name for ns in pool.created} & list_netns()


def run(host: Netns, pods: list[tuple[Netns, str]], rounds: int = 1) -> dict[str, Any]:
    req = {"pods": [[p.path, a] for p, a in pods], "rounds": rounds}
    proc = host.run(sys.executable, RUNNER, input=json.dumps(req), check=False)
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


@pytest.mark.root
def test_eight_threads_wire_eight_pods_each_in_its_own_namespace(namespaces: NetnsPool) -> None:
    host = namespaces.new()
    pods = [(namespaces.new(), f"10.66.0.{i + 10}/32") for i in range(8)]
    answer = run(host, pods)
    assert answer["errors"] == []
    for i, (pod, address) in enumerate(pods):
        link = pod.link("eth0")
        assert link is not None and link["address"] == answer["macs"][pod.path]
        addrs = pod.ip_json("-4", "addr", "show", "dev", "eth0")
        assert [a["local"] for a in addrs[0]["addr_info"]] == [address.split("/")[0]]
        assert pod.link_names() == {"lo", "eth0"}  # nothing of another pod's here
        host_link = host.link(f"calint{i}")
        assert host_link is not None and host_link["link_index"] == link["ifindex"]
        routes = host.routes("-4")
        assert {"dst": address.split("/")[0], "dev": f"calint{i}"}.items() <= next(
            r for r in routes if r["dst"] == address.split("/")[0]
        ).items()
    assert host.link_names() == {"lo"} | {f"calint{i}" for i in range(8)}


@pytest.mark.root
def test_twenty_rounds_leak_no_file_descriptor(namespaces: NetnsPool) -> None:
    host = namespaces.new()
    pods = [(namespaces.new(), f"10.67.0.{i + 10}/32") for i in range(2)]
    answer = run(host, pods, rounds=20)
    assert answer["errors"] == []
    assert answer["fds_after"] == answer["fds_before"]
