"""``tortie ipam show|check|release|configure|split|assign``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tortie.cli.ipam_check_cmd import add_check_parser, release_from_report
from tortie.cli.output import count, table, with_percent
from tortie.cli.settings import cli_store
from tortie.core.addr import Address
from tortie.datastore.base import Datastore
from tortie.errors import Exhausted, InvalidInput, NotFound


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "t", "yes", "y", "1"):
        return True
    if low in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")


def _nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def register(sub: Any) -> None:
    ipam = sub.add_parser(
        "ipam",
        help="IP address management: show, check, release, assign, ...",
        description="Inspect and manage IP address allocations.",
    )
    isub = ipam.add_subparsers(dest="ipam_command", metavar="SUBCOMMAND")
    isub.required = True

    show = isub.add_parser(
        "show",
        help="usage of pools and blocks, one address, borrowed addresses or the configuration",
        description="Show how many addresses of each IP pool are in use (with --show-blocks, "
        "of each block too), whether one address is in use and by whom (--ip), the addresses "
        "borrowed from other nodes' blocks (--show-borrowed) or the IPAM configuration "
        "(--show-configuration).",
    )
    show.add_argument(
        "--show-blocks", action="store_true", help="one row per block under each pool"
    )
    show.add_argument("--ip", metavar="ADDR", help="whether ADDR is in use, and by whom")
    show.add_argument(
        "--show-borrowed",
        action="store_true",
        help="addresses handed out from another node's block",
    )
    show.add_argument("--show-configuration", action="store_true", help="the IPAM configuration")
    show.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="output format (default table)",
    )
    show.set_defaults(handler=_show)

    add_check_parser(isub)

    release = isub.add_parser(
        "release",
        help="release addresses by address, handle or check report",
        description="Release addresses: the given ones (--ip), every address of a handle "
        "(--handle), or the addresses found leaked in every given 'ipam check -o' report "
        "(--from-report; a report of another cluster is refused).",
    )
    group = release.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--ip", action="append", metavar="ADDR", help="an address to release (repeatable)"
    )
    group.add_argument("--handle", metavar="ID", help="release every address of a handle")
    group.add_argument(
        "--from-report",
        action="append",
        metavar="FILE",
        help="release addresses leaked in every given report (repeatable)",
    )
    release.set_defaults(handler=_release)

    configure = isub.add_parser(
        "configure",
        help="change IPAM settings",
        description="Change the cluster-wide IPAM configuration (IPAMConfiguration 'default').",
    )
    configure.add_argument(
        "--strictaffinity",
        type=_bool,
        metavar="BOOL",
        help="never borrow from another node's block",
    )
    configure.add_argument(
        "--max-blocks-per-host",
        type=_nonneg,
        metavar="N",
        help="most blocks one node may claim (needs strict affinity; 0: default 20)",
    )
    configure.set_defaults(handler=_configure)

    split = isub.add_parser(
        "split",
        help="split a pool into N smaller pools",
        description="Replace a pool (by --cidr or --name) with N equal pools named "
        "split-<name>-<i> that keep its settings; N must be a power of two and each part "
        "at least one block. Blocks and allocations stay where they are.",
    )
    split.add_argument("count", type=int, metavar="N", help="number of parts (a power of two)")
    target = split.add_mutually_exclusive_group(required=True)
    target.add_argument("--cidr", help="the pool's CIDR")
    target.add_argument("--name", help="the pool's name")
    split.set_defaults(handler=_split)

    assign = isub.add_parser(
        "assign",
        help="assign addresses to a handle on a node (for orchestrators)",
        description="Assign addresses and print them. Nothing is kept when fewer "
        "than asked could be assigned.",
    )
    assign.add_argument(
        "--handle", required=True, metavar="ID", help="handle the addresses belong to"
    )
    assign.add_argument("--node", required=True, help="node the addresses are for")
    assign.add_argument(
        "--ipv4", type=_nonneg, default=None, metavar="N", help="number of IPv4 addresses"
    )
    assign.add_argument(
        "--ipv6", type=_nonneg, default=None, metavar="N", help="number of IPv6 addresses"
    )
    assign.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="P",
        help="pool name or CIDR to use, in order (repeatable)",
    )
    assign.add_argument(
        "--ip", action="append", default=[], metavar="ADDR", help="a specific address (repeatable)"
    )
    assign.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="K=V",
        help="attribute recorded with the addresses",
    )
    assign.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )
    assign.set_defaults(handler=_assign)


def _store(args: argparse.Namespace) -> Datastore:
    return cli_store(args.config)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------- show


def _show(args: argparse.Namespace) -> int:
    from tortie.ipam.service import Ipam

    store = cli_store(args.config, reading=True)
    ipam = Ipam(store)
    if args.ip:
        return _show_ip(ipam, args.ip, args.output)
    if args.show_configuration:
        cfg = ipam.get_config()
        data = {
            "StrictAffinity": cfg.strict_affinity,
            "AutoAllocateBlocks": cfg.auto_allocate_blocks,
            "MaxBlocksPerHost": cfg.max_blocks_per_host,
        }
        if args.output == "json":
            _emit_json(
                {
                    "strictAffinity": cfg.strict_affinity,
                    "autoAllocateBlocks": cfg.auto_allocate_blocks,
                    "maxBlocksPerHost": cfg.max_blocks_per_host,
                }
            )
        else:
            sys.stdout.write(
                table(
                    ["PROPERTY", "VALUE"],
                    [
                        [k, str(v).lower() if isinstance(v, bool) else str(v)]
                        for k, v in data.items()
                    ],
                )
            )
        return 0
    if args.show_borrowed:
        return _show_borrowed(store, args.output)
    from tortie.ipam.usage import usage, usage_json

    rows = usage(store)
    if args.output == "json":
        _emit_json(usage_json(rows))
        return 0
    lines = []
    for p in rows:
        lines.append(
            [
                "IP Pool",
                p.cidr,
                count(p.total),
                with_percent(p.in_use, p.total),
                with_percent(p.free, p.total),
            ]
        )
        if args.show_blocks:
            for b in p.blocks:
                lines.append(
                    [
                        "Block",
                        b.cidr,
                        count(b.total),
                        with_percent(b.in_use, b.total),
                        with_percent(b.free, b.total),
                    ]
                )
    sys.stdout.write(table(["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"], lines))
    return 0


def _show_ip(ipam: Any, address: str, output: str) -> int:

    addr = str(single_address(address, "--ip"))
    found = ipam.find_allocation(addr)
    if found is None:
        if output == "json":
            _emit_json({"ip": addr, "inUse": False})
        else:
            print(f"{addr} is not assigned")
        return 0
    block, ordinal = found
    owner = block.owner(ordinal)
    seq = block.sequence_number_for_allocation.get(str(ordinal))
    if output == "json":
        _emit_json(
            {
                "ip": addr,
                "inUse": True,
                "block": block.cidr,
                "affinity": block.affinity,
                "handle": owner.handle_id,
                "sequenceNumber": seq,
                "attributes": dict(owner.secondary),
            }
        )
        return 0
    print(f"IP {addr} is in use")
    print(f"  Block: {block.cidr} ({block.affinity or 'no affinity'})")
    print(f"  Handle: {owner.handle_id}")
    print(f"  Sequence number: {seq}")
    if owner.secondary:
        print("  Attributes:")
        for k, v in sorted(owner.secondary.items()):
            print(f"    {k}: {v}")
    return 0


def _show_borrowed(store: Datastore, output: str) -> int:
    from tortie.ipam.usage import load_blocks

    rows = []
    for block in load_blocks(store):
        owner_node = block.host()
        if owner_node is None:
            continue
        for ordinal, attr in block.allocated():
            node = attr.secondary.get("node")
            if node and node != owner_node:
                kind = "pod" if "pod" in attr.secondary else "workload"
                who = "/".join(
                    x for x in (attr.secondary.get("namespace"), attr.secondary.get("pod")) if x
                ) or (attr.handle_id or "")
                rows.append(
                    {
                        "ip": str(block.address(ordinal)),
                        "borrowingNode": node,
                        "block": block.cidr,
                        "blockOwner": owner_node,
                        "type": kind,
                        "allocatedTo": who,
                    }
                )
    if output == "json":
        _emit_json({"borrowed": rows})
    else:
        sys.stdout.write(
            table(
                ["IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER", "TYPE", "ALLOCATED-TO"],
                [
                    [
                        r["ip"],
                        r["borrowingNode"],
                        r["block"],
                        r["blockOwner"],
                        r["type"],
                        r["allocatedTo"],
                    ]
                    for r in rows
                ],
            )
        )
    return 0


# ------------------------------------------------------------------- release


def _release(args: argparse.Namespace) -> int:
    from tortie.ipam.requests import ReleaseOptions
    from tortie.ipam.service import Ipam

    ipam = Ipam(_store(args))
    if args.handle:
        from tortie.model.names import check_handle

        check_handle(args.handle, "--handle", "give a handle id without '/' or spaces")
        try:
            released = ipam.release_by_handle(args.handle)
        except NotFound:
            raise NotFound(
                f"handle {args.handle} does not exist; find handles with 'tortie ipam show --ip=ADDR'"
            ) from None
        print(f"Successfully released {len(released)} addresses of handle {args.handle}")
        return 0
    if args.from_report:
        return release_from_report(ipam, args.from_report)

    addresses = [str(single_address(a, "--ip")) for a in args.ip]
    result = ipam.release_ips([ReleaseOptions(a) for a in addresses])
    for a in result.released:
        print(f"Successfully released IP address {a}")
    for a in result.not_allocated:
        print(f"tortie: IP address {a} is not assigned; nothing to release", file=sys.stderr)
    return 0 if not result.not_allocated else 1


# ----------------------------------------------------------------- configure


def _configure(args: argparse.Namespace) -> int:
    from tortie.ipam.admin import config_with
    from tortie.ipam.service import Ipam

    if args.strictaffinity is None and args.max_blocks_per_host is None:
        raise InvalidInput(
            "ipam configure needs --strictaffinity=BOOL and/or --max-blocks-per-host=N"
        )
    ipam = Ipam(_store(args))
    new = config_with(ipam.get_config(), args.strictaffinity, args.max_blocks_per_host)
    ipam.set_config(new)
    if args.strictaffinity is not None:
        print(f"Successfully set StrictAffinity to: {str(new.strict_affinity).lower()}")
    if args.max_blocks_per_host is not None:
        print(f"Successfully set MaxBlocksPerHost to: {new.max_blocks_per_host}")
    return 0


# --------------------------------------------------------------------- split


def _split(args: argparse.Namespace) -> int:
    from tortie.ipam.admin import Admin

    parts = Admin(_store(args)).split_pool(args.count, args.name, args.cidr)
    for part in parts:
        print(f"Created IPPool({part.name}) {part.cidr}")
    return 0


# -------------------------------------------------------------------- assign


def _assign(args: argparse.Namespace) -> int:
    from tortie.core.addr import parse_network
    from tortie.ipam.assign import FamilyShortfall
    from tortie.ipam.pools import load_pools
    from tortie.ipam.requests import AssignRequest
    from tortie.ipam.service import Ipam
    from tortie.model.names import check_attribute, check_handle, check_node_name, quoted

    attrs = {}
    for item in args.attr:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--attr {quoted(item)} is not KEY=VALUE")
        attrs[check_attribute(key, "--attr")] = value
    for option, value in (("--handle", args.handle), ("--node", args.node)):
        if not value.strip():
            raise InvalidInput(f"{option} is empty; give a non-empty {option}=...")
    check_handle(args.handle, "--handle", "give a handle id without '/' or spaces")
    check_node_name(args.node, "--node", "give the node's name as 'tortie get nodes' shows it")
    specific = [single_address(a, "--ip") for a in args.ip]
    ipam = Ipam(_store(args))
    by_name = {p.name: p for p in load_pools(ipam.store)} if args.pool else {}
    by_cidr = {str(p.network): p for p in by_name.values()}
    resolved = {}
    for item in args.pool:
        found = by_name.get(item)
        if found is None and "/" in item:
            found = by_cidr.get(str(parse_network(item, what="--pool", strict=False)))
        if found is None or found.disabled:
            raise InvalidInput(
                f"--pool {item}: no enabled IPPool has this name or CIDR; "
                "list pools with 'tortie get ippools'"
            )
        resolved[item] = found

    def version_of(pool: str) -> int:
        return resolved[pool].version

    pools4 = tuple(p for p in args.pool if version_of(p) == 4)
    pools6 = tuple(p for p in args.pool if version_of(p) == 6)
    if args.ipv4 is None and args.ipv6 is None:
        # Nothing said: one address of each family the --pool options name, else one IPv4
        # (Calico's default) unless only specific addresses were asked for.
        if args.pool:
            num4, num6 = int(bool(pools4)), int(bool(pools6))
        else:
            num4, num6 = (0 if specific else 1), 0
    else:
        num4, num6 = args.ipv4 or 0, args.ipv6 or 0
    if not (specific or num4 or num6):
        raise InvalidInput("nothing to assign; give --ipv4=N, --ipv6=N or --ip=ADDR")
    for version, num, named in ((4, num4, pools4), (6, num6, pools6)):
        if args.pool and num and not named:
            raise InvalidInput(
                f"--ipv{version}={num} asks for IPv{version} addresses but no --pool names an "
                f"IPv{version} pool; add one or leave out --pool"
            )
    request = AssignRequest(
        node=args.node,
        handle_id=args.handle,
        addresses=tuple(str(a) for a in specific),
        num4=num4,
        num6=num6,
        attrs=attrs,
        ipv4_pools=pools4,
        ipv6_pools=pools6,
    )
    try:
        taken = ipam.assign(request)
    except FamilyShortfall as short:
        raise Exhausted(
            f"assigned only {short.got} of {short.wanted} IPv{short.ip_version} addresses: "
            f"{'; '.join(short.reasons)}; nothing was kept"
        ) from None
    got = {v: [a for a in taken if (":" in a) == (v == 6)] for v in (4, 6)}
    if args.output == "json":
        _emit_json({"ipv4": got[4], "ipv6": got[6]})
    else:
        print("Assigned addresses:")
        for a in got[4] + got[6]:
            print(f"  {a}")
    return 0


def single_address(text: str, option: str) -> Address:
    """One address: a CIDR given where one address is meant is refused, not truncated."""
    from tortie.core.addr import parse_address
    from tortie.model.names import quoted

    if "/" in text:
        raise InvalidInput(
            f"{option} {quoted(text)} is a prefix, not an address; give one address like "
            f"{text.split('/', 1)[0] or '10.0.0.5'} (without '/{text.split('/', 1)[1][:8]}')"
        )
    return parse_address(text, what=option)
