"""Node startup allocates tunnel addresses for encapsulated default pools; IPIP on a
kernel without ipip stops it with one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tortie.datastore.memory import MemoryDatastore
from tortie.errors import InvalidInput
from tortie.ipam.check import check
from tortie.ipam.nodes import NodeService
from tortie.node.config import config_from_env
from tortie.node.hostaddrs import HostAddress
from tortie.node.hostprep import FakeHost
from tortie.node.startup import startup
from tortie.node.tunnel import derived_mac

LOG = logging.getLogger("test.overlay")


def host() -> FakeHost:
    return FakeHost(
        given=[
            HostAddress("eth0", 2, "10.10.0.11", 24, 4, "global"),
            HostAddress("eth0", 2, "fd10::11", 64, 6, "global"),
        ],
        default_routes={4},
    )


def env(tmp_path: Path, **kw: str) -> dict[str, str]:
    base = {
        "NODENAME": "node-a",
        "IP": "autodetect",
        "IP6": "autodetect",
        "CALICO_NODENAME_FILE": str(tmp_path / "nodename"),
        "TORTIE_RUN_DIR": str(tmp_path / "run"),
        "CALICO_IPV4POOL_CIDR": "10.244.0.0/16",
        "CALICO_IPV6POOL_CIDR": "fd00:244::/48",
    }
    return {**base, **kw}


def test_vxlan_backend_start_gives_tunnel_addresses(tmp_path: Path) -> None:
    store = MemoryDatastore()
    config = config_from_env(
        env(
            tmp_path,
            CALICO_NETWORKING_BACKEND="vxlan",
            CALICO_IPV4POOL_VXLAN="Always",
            CALICO_IPV6POOL_VXLAN="Always",
        )
    )
    startup(config, store, LOG, host())
    startup(config, store, LOG, host())  # a restart changes nothing
    node = NodeService(store).get("node-a")
    assert node is not None
    assert node.ipv4_vxlan_tunnel_addr and node.ipv6_vxlan_tunnel_addr
    assert node.vxlan_tunnel_mac == derived_mac("node-a")
    report = check(store)
    assert report.allocations == 2 and not report.leaks and not report.problems


def test_ipip_pool_stops_start_on_kernel_without_ipip(tmp_path: Path) -> None:
    store = MemoryDatastore()
    config = config_from_env(env(tmp_path, CALICO_IPV4POOL_IPIP="Always"))
    with pytest.raises(InvalidInput) as err:
        startup(config, store, LOG, host(), kernel_ipip=lambda: False)
    text = str(err.value)
    assert text.startswith("node node-a: IPPool default-ipv4-ippool") and "\n" not in text
    assert "ipip module" in text and "vxlanMode" in text
    node = NodeService(store).get("node-a")
    assert node is not None and node.ipv4_ipip_tunnel_addr is None  # nothing half-done
    startup(config, store, LOG, host(), kernel_ipip=lambda: True)
    node = NodeService(store).get("node-a")
    assert node is not None and node.ipv4_ipip_tunnel_addr is not None
