"""``tortie create|apply|replace|delete -f FILE`` and ``tortie get KIND [NAME]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tortie.cli.files import read_text
from tortie.cli.output import table
from tortie.cli.settings import cli_store
from tortie.errors import InvalidInput

VERB_HELP = {
    "create": "create resources from a file; fails if one exists",
    "apply": "create or update resources from a file",
    "replace": "update existing resources from a file; fails if one is missing",
    "delete": "delete resources named in a file, or 'delete KIND NAME'",
}


def register(sub: Any) -> None:
    for verb, help_text in VERB_HELP.items():
        p = sub.add_parser(
            verb,
            help=help_text,
            description=help_text + ". "
            "FILE is YAML or JSON: one resource, several '---' documents, or a <Kind>List; "
            "'-' reads standard input. Every resource is checked before anything is written.",
        )
        p.add_argument(
            "-f", "--filename", metavar="FILE", help="resource file, or - for standard input"
        )
        if verb == "delete":
            p.add_argument("kind", nargs="?", help="resource type, e.g. ippool")
            p.add_argument("name", nargs="?", help="resource name")
            p.add_argument("-n", "--namespace", default=None, help="namespace (workload endpoints)")
        p.set_defaults(handler=_verb, verb=verb)

    get = sub.add_parser(
        "get",
        help="show resources",
        description="Show resources of a kind "
        "(ippools, nodes, ipamconfig, workloadendpoints, bgppeers, bgpconfigurations, "
        "felixconfigurations), all or one by name.",
    )
    get.add_argument(
        "kind",
        help="resource type: ippool(s), node(s), ipamconfig, workloadendpoint(s), bgppeer(s), "
        "bgpconfiguration(s), felixconfiguration(s)",
    )
    get.add_argument("name", nargs="?", help="one resource by name")
    get.add_argument(
        "-o",
        "--output",
        default="ps",
        choices=("ps", "wide", "yaml", "json"),
        help="output format (default: a table)",
    )
    get.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="namespace of workload endpoints (default: 'default', as calicoctl)",
    )
    get.add_argument(
        "-A", "--all-namespaces", action="store_true", help="workload endpoints of every namespace"
    )
    get.set_defaults(handler=_get)


def _read(path: str) -> str:
    if path == "-":
        return read_text(path, "file", "save it as UTF-8 YAML or JSON")
    return read_text(path, "file", "check the path given to -f; save it as UTF-8 YAML or JSON")


def _verb(args: argparse.Namespace) -> int:
    from tortie.ipam.admin import Admin
    from tortie.model.documents import load_documents

    verb: str = args.verb
    if verb == "delete" and not args.filename:
        if not (args.kind and args.name):
            raise InvalidInput(
                "delete needs -f FILE or a KIND and NAME, e.g. 'tortie delete ippool pool-a'"
            )
        from tortie.model.resources import kind_for_cli_name

        info = kind_for_cli_name(args.kind)
        admin = Admin(cli_store(args.config))
        docs = admin.get(info, args.name, args.namespace)
    else:
        if not args.filename:
            raise InvalidInput(f"{verb} needs -f FILE (or - for standard input)")
        source = "standard input" if args.filename == "-" else args.filename
        docs = load_documents(_read(args.filename), source)
        if not docs:
            raise InvalidInput(
                f"{source}: no resources found; give a file with at least one resource to {verb}"
            )
        admin = Admin(cli_store(args.config))
    planned = admin.plan(verb, docs)
    for line in admin.execute(planned):
        print(line)
    return 0


def _get(args: argparse.Namespace) -> int:
    from tortie.ipam.admin import Admin
    from tortie.model.documents import dump
    from tortie.model.resources import kind_for_cli_name

    info = kind_for_cli_name(args.kind)
    admin = Admin(cli_store(args.config, reading=True))
    # As calicoctl: a namespaced kind is listed in 'default' unless -n or -A says otherwise.
    namespace = None if args.all_namespaces else args.namespace
    if namespace is None and info.namespaced and not args.all_namespaces:
        namespace = "default"
    docs = admin.get(info, args.name, namespace)
    if args.output in ("yaml", "json"):
        list_kind = None if args.name else info.list_kind
        revision = max(
            (int(d.get("metadata", {}).get("resourceVersion") or 0) for d in docs), default=0
        )
        sys.stdout.write(dump(docs, args.output, list_kind, str(revision)))
        return 0
    headers, rows = _columns(info.kind, docs, wide=args.output == "wide")
    sys.stdout.write(table(headers, rows, border=False))
    return 0


def _columns(
    kind: str, docs: list[dict[str, Any]], wide: bool
) -> tuple[list[str], list[list[str]]]:
    def meta(d: dict[str, Any], k: str) -> str:
        return str(d.get("metadata", {}).get(k, ""))

    def spec(d: dict[str, Any], *path: str) -> str:
        cur: Any = d.get("spec", {})
        for p in path:
            cur = cur.get(p, "") if isinstance(cur, dict) else ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        if isinstance(cur, list):
            return ",".join(str(c) for c in cur)
        return str(cur)

    if kind == "IPPool":
        if wide:
            return (
                [
                    "NAME",
                    "CIDR",
                    "NAT",
                    "IPIPMODE",
                    "VXLANMODE",
                    "DISABLED",
                    "DISABLEBGPEXPORT",
                    "SELECTOR",
                ],
                [
                    [
                        meta(d, "name"),
                        spec(d, "cidr"),
                        spec(d, "natOutgoing"),
                        spec(d, "ipipMode"),
                        spec(d, "vxlanMode"),
                        spec(d, "disabled"),
                        spec(d, "disableBGPExport"),
                        spec(d, "nodeSelector"),
                    ]
                    for d in docs
                ],
            )
        return ["NAME", "CIDR", "SELECTOR"], [
            [meta(d, "name"), spec(d, "cidr"), spec(d, "nodeSelector")] for d in docs
        ]
    if kind == "Node":
        if wide:
            return (
                ["NAME", "ASN", "IPV4", "IPV6"],
                [
                    [
                        meta(d, "name"),
                        spec(d, "bgp", "asNumber") or "(64512)",
                        spec(d, "bgp", "ipv4Address"),
                        spec(d, "bgp", "ipv6Address"),
                    ]
                    for d in docs
                ],
            )
        return ["NAME"], [[meta(d, "name")] for d in docs]
    if kind == "BGPPeer":  # calicoctl's columns, the same with -o wide
        return (
            ["NAME", "PEERIP", "NODE", "ASN"],
            [
                [
                    meta(d, "name"),
                    spec(d, "peerIP"),
                    spec(d, "node") or spec(d, "nodeSelector") or "(global)",
                    spec(d, "asNumber") or "0",
                ]
                for d in docs
            ],
        )
    if kind == "BGPConfiguration":
        return (
            ["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
            [
                [
                    meta(d, "name"),
                    spec(d, "logSeverityScreen"),
                    spec(d, "nodeToNodeMeshEnabled") or "-",
                    spec(d, "asNumber") or "-",
                ]
                for d in docs
            ],
        )
    if kind == "FelixConfiguration":  # calicoctl shows the name only
        return ["NAME"], [[meta(d, "name")] for d in docs]
    if kind == "WorkloadEndpoint":
        return (
            ["NAMESPACE", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE"],
            [
                [
                    meta(d, "namespace"),
                    spec(d, "pod") or spec(d, "workload") or meta(d, "name"),
                    spec(d, "node"),
                    spec(d, "ipNetworks"),
                    spec(d, "interfaceName"),
                ]
                for d in docs
            ],
        )
    return (
        ["NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS", "MAXBLOCKSPERHOST"],
        [
            [
                meta(d, "name"),
                spec(d, "strictAffinity"),
                spec(d, "autoAllocateBlocks"),
                spec(d, "maxBlocksPerHost"),
            ]
            for d in docs
        ],
    )
