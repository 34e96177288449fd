"""``tortie migrate ipv6-only``: the seed's "Configure IPv6-only, after installation" as a
plan that is shown first and applied only when asked: an IPv6 pool (created if missing),
every node with an IPv6 address and a router id, the IPv4 pools disabled (existing pods
keep their addresses until they restart), and the manifest and flag changes still to make.
Safe to re-run: every step looks at what is there first."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import InvalidInput
from tortie.ipam.admin import Admin
from tortie.ipam.nodes import NodeService
from tortie.ipam.pools import load_pools
from tortie.model.ippool import IPPool


@dataclass
class Step:
    action: str  # create-pool, disable-pool, node, manual
    text: str
    blocking: bool = False
    done: bool = False
    pool: str = ""  # the IPPool a pool step acts on


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    @property
    def blocked(self) -> list[Step]:
        return [s for s in self.steps if s.blocking]


def carried_vxlan_mode(pools: list[IPPool]) -> str:
    """The vxlanMode the new IPv6 pool takes over from the enabled IPv4 pools: Always when
    any has it, else CrossSubnet when any has that, else Never (IPIP cannot carry IPv6)."""
    modes = {x.vxlan_mode for x in pools if x.version == 4 and not x.disabled}
    return next((m for m in ("Always", "CrossSubnet") if m in modes), "Never")


def plan(store: Datastore, ipv6_pool: str = "") -> Plan:
    p = Plan()
    pools = load_pools(store)
    v6 = [x for x in pools if x.version == 6]
    net: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    if ipv6_pool:
        try:
            net = ipaddress.ip_network(ipv6_pool, strict=True)
        except ValueError as exc:
            raise InvalidInput(f"--ipv6-pool {ipv6_pool[:60]!r} is not a CIDR ({exc})") from None
        if net.version != 6:
            raise InvalidInput(f"--ipv6-pool {ipv6_pool} is an IPv4 CIDR; give an IPv6 one")
    enabled = [x for x in v6 if not x.disabled]
    used = enabled[0] if enabled else (v6[0] if v6 else None)
    unused = (
        f" (--ipv6-pool {ipv6_pool} not used: an IPv6 pool exists)"
        if used is not None and net is not None and used.network != net
        else ""
    )
    if enabled:
        names = ", ".join(x.name for x in enabled)
        p.steps.append(Step("create-pool", f"IPv6 pool present: {names}{unused}", done=True))
    elif used is not None:
        p.steps.append(
            Step(
                "enable-pool",
                f"enable the IPv6 pool {used.name} ({used.cidr}){unused}",
                pool=used.name,
            )
        )
    elif ipv6_pool:
        mode = carried_vxlan_mode(pools)
        carried = f" with vxlanMode {mode} as the IPv4 pools" if mode != "Never" else ""
        p.steps.append(
            Step("create-pool", f"create IPv6 pool default-ipv6-ippool {ipv6_pool}{carried}")
        )
    else:
        p.steps.append(
            Step(
                "create-pool",
                "no IPv6 pool: give --ipv6-pool CIDR (the IPv6 "
                "range of kube-controller-manager's --cluster-cidr)",
                blocking=True,
            )
        )
    for node in NodeService(store).list():
        problems = []
        if not node.ipv6_address:
            problems.append(
                "no IPv6 address (set IP6=autodetect on its calico-node / "
                "tortie node and restart it)"
            )
        if not node.router_id:
            problems.append(
                "no explicit router id (set CALICO_ROUTER_ID=hash, or a unique value per "
                "node: "
                + (
                    "once IP=none its router id cannot come from the IPv4 address)"
                    if node.ipv4_address
                    else "without an IPv4 address BGP has no router id)"
                )
            )
        if problems:
            p.steps.append(
                Step(
                    "node",
                    f"node {node.name}: " + "; ".join(problems),
                    blocking=not node.ipv6_address,
                )
            )
        else:
            p.steps.append(
                Step(
                    "node",
                    f"node {node.name}: IPv6 {node.ipv6_address}, router id {node.router_id}",
                    done=True,
                )
            )
    for pool in (x for x in pools if x.version == 4):
        if pool.disabled:
            p.steps.append(
                Step(
                    "disable-pool",
                    f"IPv4 pool {pool.name} already disabled",
                    done=True,
                    pool=pool.name,
                )
            )
        else:
            p.steps.append(
                Step(
                    "disable-pool",
                    f"disable IPv4 pool {pool.name} ({pool.cidr}); "
                    "pods keep their IPv4 addresses until they restart",
                    pool=pool.name,
                )
            )
    p.steps.append(
        Step(
            "manual",
            "manifest: tortie manifest rewrite --mode ipv6 --ipv6-pool "
            f"{used.cidr if used is not None else ipv6_pool or 'CIDR'} --in-place calico.yaml "
            "(IP=none, IP6=autodetect, CALICO_ROUTER_ID=hash, assign_ipv4 false)",
        )
    )
    p.steps.append(
        Step(
            "manual",
            "Kubernetes flags: IPv6 --bind-address/--advertise-address, "
            "--service-cluster-ip-range, --cluster-cidr, kubelet --node-ip and "
            "--cluster-dns, kube-proxy --bind-address; check with 'tortie preflight'",
        )
    )
    p.steps.append(Step("manual", "kube-dns: tortie manifest rewrite-kube-dns --ipv6 FILE"))
    return p


def apply(store: Datastore, p: Plan, ipv6_pool: str) -> list[str]:
    if p.blocked:
        raise InvalidInput(
            "the plan is blocked: "
            + "; ".join(s.text for s in p.blocked)
            + "; fix these first (nothing was changed)"
        )
    done = []
    admin = Admin(store)
    for step in p.steps:
        if step.done or step.action in ("manual", "node"):
            continue
        if step.action == "create-pool":
            doc = {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": "default-ipv6-ippool"},
                "spec": {
                    "cidr": ipv6_pool,
                    "blockSize": 122,
                    "natOutgoing": False,
                    "nodeSelector": "all()",
                    "vxlanMode": carried_vxlan_mode(load_pools(store)),
                },
            }
            done += admin.execute(admin.plan("create", [doc]))
        elif step.action in ("disable-pool", "enable-pool"):
            kv = store.get(keys.resource_key("ippools", step.pool))
            if kv is None:
                continue
            doc = json.loads(kv.value)
            doc.setdefault("spec", {})["disabled"] = step.action == "disable-pool"
            done += admin.execute(admin.plan("apply", [doc]))
    return done
