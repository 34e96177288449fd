"""``tortie ipam check`` and ``tortie ipam release --from-report``: find leaks and
inconsistencies (optionally against the runtime's live containers), and release what
the reports found, leaving no handle they named behind."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tortie.cli.files import read_text
from tortie.cli.settings import cli_store
from tortie.errors import InvalidInput


def add_check_parser(isub: Any) -> None:
    check = isub.add_parser(
        "check",
        help="find leaked addresses and inconsistencies",
        description="Compare allocations with workload endpoints and node tunnel "
        "addresses; report leaks, orphans and inconsistent records. On nodes that use only "
        "the IPAM plugin (no workload endpoints) give the runtime's live containers with "
        "--live FILE --node NAME. Exit status: 0 when nothing is wrong, 1 when problems "
        "were found (0 with --exit-zero), 2 for bad input.",
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
        "--live",
        metavar="FILE",
        help="the runtime's live containers on --node (the list CNI GC gets): a JSON list of "
        '{"containerID", "ifname"} (or an object with "cni.dev/valid-attachments"), or one '
        "container id per line; CNI allocations on that node for other containers are leaks",
    )
    check.add_argument("--node", help="the node --live describes (required with --live)")
    check.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 even when problems are found (calicoctl's behaviour; default: exit 1)",
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from tortie.ipam.check import check

    live = None
    if args.live or args.node:
        live = _live_containers(args.live, args.node)
    report = check(cli_store(args.config, reading=True), live)
    print(f"Found {report.allocations} IPAM allocations.")
    print(f"Found {report.in_use} addresses in use by workload endpoints and node tunnels.")
    if report.unverifiable:
        print(
            f"  {report.unverifiable} allocations belong to nodes with no recorded endpoints (not verifiable, not leaks)."
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
                f"report file {args.output}: cannot write it ({exc.strerror}); choose a writable path for -o"
            ) from None
        print(f"Report written to {args.output}")
    print(f"Check complete; found {report.problem_count} problems.")
    return 1 if report.problem_count and not args.exit_zero else 0


def _live_containers(path: str | None, node: str | None) -> Any:
    from tortie.ipam.check import LiveContainers
    from tortie.model.names import check_node_name

    if not path or not node:
        raise InvalidInput("--live FILE and --node NODE go together; give both")
    check_node_name(node, "--node", "give the node's name as 'tortie get nodes' shows it")
    text = read_text(path, "live container list", "give the runtime's list of live containers")
    ids: set[str] = set()
    stripped = text.strip()
    if not stripped:
        # A failed listing (empty output) must never make every allocation a leak.
        raise InvalidInput(
            f"live container list {path} is empty; write [] for a node with no containers"
        )
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except (ValueError, RecursionError):
            raise InvalidInput(
                f"live container list {path}: not valid JSON; give a JSON list of "
                '{"containerID", "ifname"} or one container id per line'
            ) from None
        if isinstance(data, dict):
            data = data.get("cni.dev/valid-attachments")
        if not isinstance(data, list):
            raise InvalidInput(
                f"live container list {path}: expected a list of attachments; give a JSON list "
                'of {"containerID", "ifname"} or one container id per line'
            )
        for item in data:
            cid = item.get("containerID") if isinstance(item, dict) else item
            if not isinstance(cid, str) or not cid:
                raise InvalidInput(
                    f"live container list {path}: every entry needs a containerID string"
                )
            ids.add(cid)
    else:
        ids = {line.strip() for line in text.splitlines() if line.strip()}
    return LiveContainers(node, frozenset(ids))


def release_from_report(ipam: Any, paths: list[str]) -> int:
    from tortie.ipam.check import cluster_guid
    from tortie.ipam.requests import ReleaseOptions

    guid = cluster_guid(ipam.store)
    leaked: dict[str, dict[str, Any]] | None = None
    bad_handles: set[str] | None = None
    for path in paths:
        text = read_text(path, "report", "give a file written by 'tortie ipam check -o'")
        try:
            report = json.loads(text)
        except ValueError:
            raise InvalidInput(
                f"report {path}: not valid JSON; give a file written by 'tortie ipam check -o'"
            ) from None
        if not isinstance(report, dict) or "leakedIPs" not in report:
            raise InvalidInput(
                f"report {path}: not an 'ipam check' report; give a file written by 'tortie ipam check -o'"
            )
        if report.get("clusterGUID") != guid:
            raise InvalidInput(
                f"report {path} was made for another cluster ({report.get('clusterGUID')}, this is {guid}); run 'tortie ipam check -o' against this datastore"
            )
        items_in = report["leakedIPs"]
        if not isinstance(items_in, list) or not all(
            isinstance(x, dict) and isinstance(x.get("ip"), str) for x in items_in
        ):
            raise InvalidInput(
                f"report {path}: leakedIPs must be a list of objects with an 'ip'; give a file written by 'tortie ipam check -o'"
            )
        these = {x["ip"]: x for x in items_in}
        raw_problems = report.get("problems")
        problems: list[Any] = raw_problems if isinstance(raw_problems, list) else []
        named = {
            str(pr.get("subject"))
            for pr in problems
            if isinstance(pr, dict)
            and pr.get("kind") in ("handle-without-ips", "handle-count-mismatch")
        }
        bad_handles = named if bad_handles is None else bad_handles & named
        leaked = (
            these
            if leaked is None
            else {
                ip: x
                for ip, x in leaked.items()
                if ip in these and these[ip].get("handle") == x.get("handle")
            }
        )
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
    # Handles the report named, and the handles of the released addresses: their counts
    # must match the blocks afterwards, or a record of a crashed ADD would stay behind.
    handles = (bad_handles or set()) | {i.handle_id for i in items if i.handle_id}
    for handle_id in sorted(handles):
        if ipam.repair_handle(handle_id) and ipam.get_handle(handle_id) is None:
            print(f"Removed handle {handle_id}: no block holds an address for it")
    print(f"Released {len(result.released)} of {len(items)} addresses leaked in every report.")
    return 0
