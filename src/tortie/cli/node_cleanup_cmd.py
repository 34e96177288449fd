"""``tortie node cleanup``: remove what tortie programmed on this host
(``tortie.dataplane.cleanup.PIECES``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tortie.cli.node_common import run_dir
from tortie.errors import TortieError

HELP = """\
Remove what tortie programmed on this host: its nftables NAT tables (table ip tortie,
table ip6 tortie; no other table is touched), its VXLAN devices (vxlan.calico,
vxlan-v6.calico) and their routes, and the routes BIRD left in the kernel (proto bird).
Pods' interfaces, IP forwarding, the run directory and the datastore are left alone.
Stop the agent first: a running 'tortie node run' programs everything again (cleanup
refuses while the agent of TORTIE_RUN_DIR runs, unless --force).
"""


def register(node_sub: Any) -> None:
    p = node_sub.add_parser(
        "cleanup",
        help="remove what tortie programmed on this host (NAT tables, VXLAN, BIRD routes)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--netns", metavar="NAME", help="act inside this network namespace (/run/netns/NAME)"
    )
    p.add_argument("--force", action="store_true", help="even while the agent runs")
    p.set_defaults(handler=_cleanup)


def _agent_pid() -> int | None:
    try:
        with open(run_dir().agent_pid, encoding="utf-8") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _cleanup(args: argparse.Namespace) -> int:
    from tortie.dataplane.cleanup import cleanup_host

    pid = _agent_pid()
    if pid is not None and not args.force:
        raise TortieError(
            f"the node agent (pid {pid}, run directory {run_dir().path}) is running and would "
            "program everything again; stop it first, or pass --force"
        )
    failed = []
    for name, outcome, ok in cleanup_host(args.netns):
        print(f"{name}: {outcome}")
        if not ok:
            failed.append(name)
    if failed:
        raise TortieError(f"cleanup incomplete ({', '.join(failed)} failed, see above)")
    return 0
