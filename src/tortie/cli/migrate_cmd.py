"""``tortie migrate ipv6-only``: the seed's "Configure IPv6-only, after installation" as a
plan, applied only with --apply (docs/design/rollout.md)."""

from __future__ import annotations

import argparse
from typing import Any

from tortie.cli.settings import cli_store


def register(sub: Any) -> None:
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
