"""``tortie manifest rewrite`` and ``tortie manifest rewrite-kube-dns``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

from tortie.cli.files import read_text
from tortie.errors import InvalidInput

REWRITE_HELP = """\
Do the seed how-to's edits on a Calico manifest (calico.yaml, calico-etcd.yaml, or older
releases of the same shape) for IPv4-only, IPv6-only or dual stack:

  the calico-config ConfigMap's CNI configuration, ipam section:
      ipv4: "assign_ipv4": "true",  "assign_ipv6": "false"
      dual: "assign_ipv4": "true",  "assign_ipv6": "true"
      ipv6: "assign_ipv4": "false", "assign_ipv6": "true"
  the calico-node container's environment:
      IP (autodetect, or none for ipv6), IP6=autodetect, FELIX_IPV6SUPPORT,
      CALICO_IPV6POOL_CIDR / CALICO_IPV4POOL_CIDR (from the --*-pool options),
      CALICO_ROUTER_ID=hash (IPv6-only nodes have no IPv4 address to take it from)

Every other byte stays as it was: comments, key order, quoting, the embedded JSON's
layout, other documents. Running it twice gives the same bytes. An operator-era
Installation (operator.tigera.io/v1) is rewritten the same way: spec.calicoNetwork.ipPools
entries per family and nodeAddressAutodetectionV4/V6.

Note: the seed's IPv6-only snippet still shows "assign_ipv4": "true" although its text says
to disable IPv4 assignment; tortie follows the text ("false").

The result goes to standard output (the changes, one per line, to standard error), or back
into FILE with --in-place. --check changes nothing: it lists what is missing or
inconsistent and exits 1 if anything is.
"""


def register(sub: Any) -> None:
    manifest = sub.add_parser(
        "manifest",
        help="rewrite Calico / kube-dns manifests for IPv4, IPv6 or dual stack",
        description="The seed how-to's manifest edits, done exactly and idempotently.",
    )
    msub = manifest.add_subparsers(dest="manifest_command", metavar="SUBCOMMAND")
    msub.required = True
    rw = msub.add_parser(
        "rewrite",
        help="set the CNI ipam section and calico-node's environment for a mode",
        description=REWRITE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rw.add_argument("--mode", required=True, choices=("ipv4", "ipv6", "dual"))
    rw.add_argument("--ipv6-pool", default="", metavar="CIDR", help="CALICO_IPV6POOL_CIDR")
    rw.add_argument("--ipv4-pool", default="", metavar="CIDR", help="CALICO_IPV4POOL_CIDR")
    rw.add_argument(
        "--router-id",
        choices=("hash", "auto"),
        default="auto",
        help="hash: always set CALICO_ROUTER_ID=hash; auto (default): only for IPv6-only",
    )
    _common(rw)
    rw.set_defaults(handler=_rewrite)
    dns = msub.add_parser(
        "rewrite-kube-dns",
        help="the seed's kube-dns changes for IPv6",
        description="kube-dns for IPv6 (seed how-to): images at least 1.14.8, "
        "--dns-bind-address=[::] on kubedns, --no-negcache on dnsmasq, the sidecar's probes "
        "for SRV records instead of A. Same preservation rules and --check as "
        "'manifest rewrite'.",
    )
    dns.add_argument("--ipv6", action="store_true", required=True, help="the IPv6 changes")
    _common(dns)
    dns.set_defaults(handler=_kube_dns)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the manifest, or - for standard input")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report only; exit 1 if not done")
    mode.add_argument("--in-place", action="store_true", help="rewrite FILE itself")


def _read(args: argparse.Namespace) -> tuple[str, str]:
    if args.in_place and args.file == "-":
        raise InvalidInput("--in-place needs a FILE, not standard input")
    source = "standard input" if args.file == "-" else args.file
    return read_text(args.file, "manifest", "give a YAML manifest"), source


def _finish(args: argparse.Namespace, text: str, result: Any, what: str) -> int:
    source = "standard input" if args.file == "-" else args.file
    if args.check:
        for change in result.changes:
            print(f"needed: {change}")
        for problem in result.problems:
            print(f"problem: {problem}")
        if result.changes or result.problems:
            print(
                f"{source}: not yet {what} ({len(result.changes) + len(result.problems)} "
                "items above)"
            )
            return 1
        print(f"{source}: {what}")
        return 0
    for problem in result.problems:
        print(f"tortie: warning: {problem}", file=sys.stderr)
    if args.in_place:
        if result.text != text:
            directory = os.path.dirname(os.path.abspath(args.file))
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tortie-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(result.text)
            os.chmod(tmp, os.stat(args.file).st_mode & 0o7777)
            os.replace(tmp, args.file)
        for change in result.changes:
            print(f"changed: {change}")
        print(f"{source}: {what} ({len(result.changes)} changes)")
        return 0
    sys.stdout.write(result.text)
    for change in result.changes:
        print(f"# changed: {change}", file=sys.stderr)
    return 0


def _rewrite(args: argparse.Namespace) -> int:
    from tortie.rollout.manifest import rewrite, wanted

    want = wanted(args.mode, args.ipv4_pool, args.ipv6_pool, args.router_id)
    text, source = _read(args)
    return _finish(args, text, rewrite(text, source, want), f"configured for {args.mode}")


def _kube_dns(args: argparse.Namespace) -> int:
    from tortie.rollout.kubedns import rewrite_kube_dns

    text, source = _read(args)
    return _finish(args, text, rewrite_kube_dns(text, source), "ready for IPv6")
