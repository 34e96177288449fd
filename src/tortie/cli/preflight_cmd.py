"""``tortie preflight``: the cluster's Kubernetes flags, pools and host checked against the
seed how-to's tables (docs/design/rollout.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tortie.cli.output import table
from tortie.cli.settings import cli_store
from tortie.errors import InvalidInput


def register(sub: Any) -> None:
    pre = sub.add_parser(
        "preflight",
        help="check the Kubernetes flags, pools and host for the chosen address families",
        description="Read the kube-apiserver, kube-controller-manager, kube-scheduler, kubelet "
        "and kube-proxy flags (from a kubeadm config, a static-pod manifest directory, or the "
        "running processes), the tortie IP pools and this host, and check every row of the "
        "seed how-to's tables: address families of bind, advertise and node addresses, the "
        "service range (one per family), --cluster-cidr equal to the pools, --cluster-dns "
        "inside the service range, node CIDR mask sizes, kube-dns for IPv6, and the host's "
        "IPv6 forwarding, global address and default route. Exit 1 when a check fails.",
    )
    pre.add_argument("--kubeadm-config", metavar="FILE", help="the kubeadm config file")
    pre.add_argument("--manifests", metavar="DIR", help="static-pod manifest directory")
    pre.add_argument("--from-processes", action="store_true", help="the running processes")
    pre.add_argument(
        "--mode",
        choices=("ipv4", "ipv6", "dual"),
        help="the families to check for (default: those of the enabled pools)",
    )
    pre.add_argument("-o", "--output", choices=("table", "json"), default="table")
    pre.set_defaults(handler=_preflight)


def _preflight(args: argparse.Namespace) -> int:
    from tortie.ipam.pools import load_pools
    from tortie.rollout import kubeflags, preflight, preflight_host, preflight_kubedns

    sources = [args.kubeadm_config, args.manifests, args.from_processes]
    if not any(sources):
        raise InvalidInput("give --kubeadm-config FILE, --manifests DIR or --from-processes")
    flags: kubeflags.Flags = {c: {} for c in kubeflags.COMPONENTS}
    others: list[Any] = []
    if args.kubeadm_config:
        for comp, f in kubeflags.from_kubeadm(Path(args.kubeadm_config)).items():
            flags[comp].update(f)
    if args.manifests:
        found, others = kubeflags.from_manifests(Path(args.manifests))
        for comp, f in found.items():
            flags[comp].update(f)
    if args.from_processes:
        for comp, f in kubeflags.from_processes().items():
            flags[comp].update(f)
    pools = [p for p in load_pools(cli_store(args.config, reading=True)) if not p.disabled]
    by_family: dict[int, list[Any]] = {4: [], 6: []}
    for p in pools:
        by_family[p.version].append(p.network)
    if args.mode:
        fams = {"ipv4": {4}, "ipv6": {6}, "dual": {4, 6}}[args.mode]
    else:
        fams = {v for v, nets in by_family.items() if nets}
        if not fams:
            raise InvalidInput("no enabled IP pools in the datastore: give --mode ipv4|ipv6|dual")
    rows = preflight.check_flags(flags, by_family, fams)
    rows += preflight_kubedns.check_kube_dns(others, fams, flags["kubelet"].get("cluster-dns"))
    rows += preflight_host.check_host(fams, *preflight_host.read_host())
    failed = sum(r.result == preflight.FAIL for r in rows)
    if args.output == "json":
        print(
            json.dumps(
                {
                    "families": sorted(fams),
                    "failures": failed,
                    "checks": [r.to_json() for r in rows],
                },
                indent=2,
            )
        )
    else:
        sys.stdout.write(
            table(
                ["COMPONENT", "CHECK", "RESULT", "FOUND", "FIX"],
                [[r.component, r.item, r.result.upper(), r.detail, r.fix] for r in rows],
                border=False,
            )
        )
        print(
            f"{len(rows)} checks: {failed} failed, "
            f"{sum(r.result == preflight.WARN for r in rows)} warnings"
        )
    return 1 if failed else 0
