"""``tortie preflight`` and ``tortie migrate ipv6-only``."""

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
    mig = sub.add_parser("migrate", help="move a running cluster between address families")
    msub = mig.add_subparsers(dest="migrate_command", metavar="SUBCOMMAND")
    msub.required = True
    v6 = msub.add_parser(
        "ipv6-only",
        help="plan (and with --apply do) the switch of a cluster to IPv6-only",
        description="The seed's 'Configure IPv6-only, after installation': create the IPv6 "
        "pool if missing, check every node has an IPv6 address and a router id, disable the "
        "IPv4 pools (existing pods keep their addresses until they restart), and list the "
        "manifest and flag changes still to make. Shows the plan; changes nothing without "
        "--apply; safe to re-run.",
    )
    v6.add_argument("--ipv6-pool", default="", metavar="CIDR", help="the IPv6 pool to create")
    v6.add_argument("--apply", action="store_true", help="carry out the plan")
    v6.set_defaults(handler=_migrate)


def _preflight(args: argparse.Namespace) -> int:
    from tortie.ipam.pools import load_pools
    from tortie.rollout import kubeflags, preflight

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
    rows += preflight.check_kube_dns(others, fams, flags["kubelet"].get("cluster-dns"))
    rows += preflight.check_host(fams, *preflight.read_host())
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


def _migrate(args: argparse.Namespace) -> int:
    from tortie.rollout.migrate import apply, plan

    store = cli_store(args.config, reading=not args.apply)
    p = plan(store, args.ipv6_pool)
    print("Plan for IPv6-only:")
    for step in p.steps:
        if step.done:
            mark = "done"
        elif step.blocking:
            mark = "BLOCKED"
        elif step.action == "manual":
            mark = "to do by hand"
        elif step.action == "node":
            mark = "warning"
        else:
            mark = "to do"
        print(f"  [{mark}] {step.text}")
    if not args.apply:
        print("Nothing changed; run again with --apply to carry out the steps marked 'to do'.")
        return 1 if p.blocked else 0
    for line in apply(store, p, args.ipv6_pool):
        print(line)
    print("Applied. Now make the changes marked 'to do by hand'.")
    return 0
