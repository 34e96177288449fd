"""Every new Node field round-trips through ``tortie get -o yaml`` and ``apply``."""

from __future__ import annotations

import yaml

from cli.clihelp import Cli

NODE = """apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1}
spec:
  bgp: {ipv4Address: 10.0.0.1/24, ipv6Address: "fd00::1/64", ipv4IPIPTunnelAddr: 10.1.0.1}
  ipv4VXLANTunnelAddr: 10.1.0.2
  vxlanTunnelMACAddr: "66:00:00:00:00:01"
  ipv6VXLANTunnelAddr: "fd01::2"
  vxlanTunnelMACAddrV6: "66:00:00:00:00:02"
"""


def test_node_tunnel_fields_round_trip_through_get_yaml(cli: Cli) -> None:
    cli.apply(NODE).ok()
    dumped = cli("get", "node", "node1", "-o", "yaml").ok().out
    spec = yaml.safe_load(dumped)["spec"]
    assert spec["bgp"]["ipv4IPIPTunnelAddr"] == "10.1.0.1"
    assert spec["ipv4VXLANTunnelAddr"] == "10.1.0.2"
    assert spec["vxlanTunnelMACAddr"] == "66:00:00:00:00:01"
    assert spec["ipv6VXLANTunnelAddr"] == "fd01::2"
    assert spec["vxlanTunnelMACAddrV6"] == "66:00:00:00:00:02"
    cli("apply", "-f", "-", stdin=dumped).ok()
    again = yaml.safe_load(cli("get", "node", "node1", "-o", "yaml").ok().out)
    assert again["spec"] == spec


def test_bad_mac_is_one_line_error(cli: Cli) -> None:
    result = cli.apply(NODE.replace("66:00:00:00:00:01", "zz"))
    result.fails(result.rc, "Node(node1)", "spec.vxlanTunnelMACAddr 'zz' is not a MAC address")
    assert result.rc != 0
    assert cli("get", "nodes").ok().out.split() == ["NAME"]  # nothing half-written
