"""``tortie ipam check`` and ``tortie ipam release --from-report``: find leaks and
inconsistencies, and release what a report found."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tortie.cli.arg_types import node_name
from tortie.cli.files import read_text
from tortie.cli.settings import cli_store
from tortie.errors import InvalidInput

_LIVE_FIX = (
    'give a JSON list of {"containerID", "ifname"} objects (CNI GC\'s '
    '"cni.dev/valid-attachments"), a JSON list of ids, or one container id per line'
)


def add_check_parser(isub: Any) -> None:
    check = isub.add_parser(
        "check",
        help="find leaked addresses and inconsistencies",
        description="Compare allocations with workload endpoints and node tunnel "
        "addresses; report leaks, orphans and inconsistent records. On nodes without "
        "workload endpoints (only the IPAM plugin), give the runtime's live containers "
        "with --live-containers and --node: the node's CNI allocations held by no listed "
        "container are leaks. Exits 1 when it finds a problem (0 with --exit-zero).",
    )
    check.add_argument(
        "-o",
        "--output",
        metavar="REPORT",
        help="write a JSON report (input for 'ipam release --from-report')",
    )
    check.add_argument(
        "--show-all-ips", action="store_true", help="list every problem, not only the counts"
    )
    check.add_argument(
        "--live-containers",
        metavar="FILE",
        help="the containers that exist on --node ('-': standard input): a JSON list of "
        '{"containerID", "ifname"} (as CNI GC\'s "cni.dev/valid-attachments"), a JSON list '
        "of ids, or one id per line (e.g. 'podman ps -aq --no-trunc')",
    )
    check.add_argument(
        "--node",
        type=node_name,
        metavar="NAME",
        help="the node whose runtime listed --live-containers",
    )
    check.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 even when problems are found (the old behaviour, as calicoctl)",
    )
    check.set_defaults(handler=run_check)


def parse_live_containers(text: str, where: str) -> frozenset[str]:
    """The container ids of a live list in any of the accepted shapes."""
    stripped = text.strip()
    if not stripped:
        raise InvalidInput(
            f"{where} is empty; an empty file is refused so that a failed listing never "
            'makes every allocation a leak: write "[]" for a node with no containers'
        )
    if stripped[0] in "[{":
        try:
            data = json.loads(stripped)
        except ValueError:
            raise InvalidInput(f"{where}: not valid JSON; {_LIVE_FIX}") from None
        if isinstance(data, dict):
            data = data.get("cni.dev/valid-attachments")
        if not isinstance(data, list):
            raise InvalidInput(f"{where}: not a list of containers; {_LIVE_FIX}")
        ids = []
        for i, item in enumerate(data):
            cid = item.get("containerID") if isinstance(item, dict) else item
            if not isinstance(cid, str) or not cid.strip():
                raise InvalidInput(f"{where}: item {i} names no container; {_LIVE_FIX}")
            ids.append(cid.strip())
        return frozenset(ids)
    lines = (line.strip() for line in stripped.splitlines())
    ids = [line for line in lines if line and not line.startswith("#")]
    bad = next((cid for cid in ids if any(ch.isspace() for ch in cid)), None)
    if bad is not None:
        raise InvalidInput(f"{where}: {bad[:60]!r} is not a container id; {_LIVE_FIX}")
    return frozenset(ids)


def run_check(args: argparse.Namespace) -> int:
    from tortie.ipam.check import LiveContainers, check

    live = None
    if args.live_containers is not None or args.node is not None:
        if args.live_containers is None or args.node is None:
            raise InvalidInput(
                "--live-containers and --node go together: give the node's container list "
                "and the node's name"
            )
        text = read_text(args.live_containers, "live container list", _LIVE_FIX)
        where = (
            "standard input"
            if args.live_containers == "-"
            else f"live container list {args.live_containers}"
        )
        live = LiveContainers(args.node, parse_live_containers(text, where))
    report = check(cli_store(args.config), live)
    print(f"Found {report.allocations} IPAM allocations.")
    print(f"Found {report.in_use} addresses in use by workload endpoints and node tunnels.")
    if live is not None:
        print(
            f"Found {report.live_held} allocations held by the {len(live.container_ids)} "
            f"live containers of node {live.node}."
        )
    if report.unverifiable:
        print(
            f"  {report.unverifiable} allocations belong to nodes with no recorded endpoints "
            "(not verifiable, not leaks)."
        )
    print(f"Found {len(report.leaks)} leaked addresses.")
    for leak in report.leaks:
        print(f"  {leak.address} (handle {leak.handle_id}, node {leak.node})")
    for problem in report.problems:
        print(f"  {problem.line()}")
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                json.dump(report.to_json(), fh, indent=2)
        except OSError as exc:
            raise InvalidInput(
                f"report file {args.output}: cannot write it ({exc.strerror}); "
                "choose a writable path for -o"
            ) from None
        print(f"Report written to {args.output}")
    print(f"Check complete; found {report.problem_count} problems.")
    return 1 if report.problem_count and not args.exit_zero else 0


_HANDLE_PROBLEMS = ("handle-without-ips", "handle-count-mismatch")


def release_from_report(ipam: Any, paths: list[str]) -> int:
    """Release the addresses leaked in every report, then settle the handles the reports
    name (leaks' handles and handles whose counts disagree with the blocks), so nothing a
    report named is left behind."""
    from tortie.ipam.check import cluster_guid, settle_handles
    from tortie.ipam.requests import ReleaseOptions

    guid = cluster_guid(ipam.store)
    leaked: dict[str, dict[str, Any]] | None = None
    handles: set[str] = set()
    for path in paths:
        report = _read_report(path, guid)
        these = {x["ip"]: x for x in report["leakedIPs"]}
        leaked = (
            these
            if leaked is None
            else {
                ip: x
                for ip, x in leaked.items()
                if ip in these and these[ip].get("handle") == x.get("handle")
            }
        )
        for p in report.get("problems") or []:
            if (
                isinstance(p, dict)
                and p.get("kind") in _HANDLE_PROBLEMS
                and isinstance(p.get("subject"), str)
            ):
                handles.add(p["subject"])
    items = [
        ReleaseOptions(ip, x.get("handle"), x.get("sequenceNumber"))
        for ip, x in sorted((leaked or {}).items())
    ]
    result = ipam.release_ips(items)
    for a in result.released:
        print(f"Released leaked IP address {a}")
    for a, why in result.refused:
        print(f"Skipped {a}: {why}")
    for a in result.not_allocated:
        print(f"Skipped {a}: no longer allocated")
    handles |= {x["handle"] for x in (leaked or {}).values() if isinstance(x.get("handle"), str)}
    for handle_id in settle_handles(ipam.store, handles, ipam.policy):
        print(f"Corrected handle {handle_id}: its counts now match the blocks")
    print(f"Released {len(result.released)} of {len(items)} addresses leaked in every report.")
    return 0


def _read_report(path: str, guid: str) -> dict[str, Any]:
    fix = "give a file written by 'tortie ipam check -o'"
    text = read_text(path, "report", fix)
    try:
        report = json.loads(text)
    except ValueError:
        raise InvalidInput(f"report {path}: not valid JSON; {fix}") from None
    if not isinstance(report, dict) or "leakedIPs" not in report:
        raise InvalidInput(f"report {path}: not an 'ipam check' report; {fix}")
    if report.get("clusterGUID") != guid:
        raise InvalidInput(
            f"report {path} was made for another cluster ({report.get('clusterGUID')}, "
            f"this is {guid}); run 'tortie ipam check -o' against this datastore"
        )
    items = report["leakedIPs"]
    if not isinstance(items, list) or not all(
        isinstance(x, dict) and isinstance(x.get("ip"), str) for x in items
    ):
        raise InvalidInput(
            f"report {path}: leakedIPs must be a list of objects with an 'ip'; {fix}"
        )
    return report
