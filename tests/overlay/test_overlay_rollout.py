"""manifest rewrite keeps the overlay: calico-vxlan.yaml's IPv6 pool gets VXLAN too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tortie.rollout.encapsulation import encapsulation_env, ipv6_vxlan_mode
from tortie.rollout.manifest import rewrite, wanted

SHARED = Path("/work/shared/reference/calico-manifests")


def calico_vxlan() -> str:
    """calico-vxlan.yaml as Calico generates it from calico.yaml: the vxlan backend,
    IPIP off, VXLAN Always for IPv4 (the IPv6 pool left at Never)."""
    path = SHARED / "calico.yaml"
    if not path.exists():
        pytest.skip(f"the shared Calico manifests are not at {SHARED}")
    text = path.read_text()
    for old, new in (
        ('calico_backend: "bird"', 'calico_backend: "vxlan"'),
        (
            '- name: CALICO_IPV4POOL_IPIP\n              value: "Always"',
            '- name: CALICO_IPV4POOL_IPIP\n              value: "Never"',
        ),
        (
            '- name: CALICO_IPV4POOL_VXLAN\n              value: "Never"',
            '- name: CALICO_IPV4POOL_VXLAN\n              value: "Always"',
        ),
    ):
        assert old in text, old
        text = text.replace(old, new)
    return text


def node_env(text: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    ds = next(d for d in docs if d.get("kind") == "DaemonSet")
    container = next(
        c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "calico-node"
    )
    return {e["name"]: e.get("value") for e in container["env"]}


@pytest.mark.parametrize("mode", ["dual", "ipv6"])
def test_calico_vxlan_ipv6_pool_gets_vxlan(mode: str) -> None:
    out = rewrite(calico_vxlan(), "calico-vxlan.yaml", wanted(mode)).text
    env = node_env(out)
    assert env["CALICO_IPV6POOL_VXLAN"] == "Always"
    assert env["CALICO_IPV4POOL_VXLAN"] == "Always"
    assert env["CALICO_IPV4POOL_IPIP"] == "Never"


def test_stock_calico_ipip_on_bird_leaves_ipv6_native() -> None:
    path = SHARED / "calico.yaml"
    if not path.exists():
        pytest.skip(f"the shared Calico manifests are not at {SHARED}")
    stock = path.read_text()
    assert (
        node_env(rewrite(stock, "calico.yaml", wanted("dual")).text)["CALICO_IPV6POOL_VXLAN"]
        == "Never"
    )
    assert (
        node_env(rewrite(stock, "calico.yaml", wanted("ipv4")).text)["CALICO_IPV6POOL_VXLAN"]
        == "Never"
    )


def test_encapsulation_rules() -> None:
    assert ipv6_vxlan_mode("CrossSubnet", "bird") == "CrossSubnet"
    assert ipv6_vxlan_mode("Never", "vxlan") == "Always"
    assert ipv6_vxlan_mode("Never", "bird") is None
    env = {"CALICO_IPV4POOL_VXLAN": "Always", "CALICO_IPV6POOL_VXLAN": "CrossSubnet"}
    assert encapsulation_env(env, "vxlan", "dual") == {}


def test_migrate_ipv6_only_carries_vxlan_over() -> None:
    from tortie.datastore.memory import MemoryDatastore
    from tortie.ipam.admin import Admin
    from tortie.ipam.pools import load_pools
    from tortie.rollout.migrate import apply, plan

    store = MemoryDatastore()
    admin = Admin(store)
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": "10.244.0.0/16", "vxlanMode": "CrossSubnet"},
    }
    admin.execute(admin.plan("create", [doc]))
    p = plan(store, "fd00:244::/48")
    assert any("vxlanMode CrossSubnet" in s.text for s in p.steps)
    apply(store, p, "fd00:244::/48")
    v6 = next(x for x in load_pools(store) if x.version == 6)
    assert v6.vxlan_mode == "CrossSubnet" and v6.ipip_mode == "Never"
