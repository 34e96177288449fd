"""``tortie node run|status|health``: the resident agent and what it reports
(``serve-cni``: ``node_service_cmd``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from tortie.cli.node_common import DEFAULT_RUN_DIR, IN_HELP, run_dir, setup_logging
from tortie.cli.output import table
from tortie.cli.settings import cli_settings, cli_store


def _run_dir() -> str:
    return run_dir().path


def register(node_sub: Any) -> None:
    run = node_sub.add_parser(
        "run",
        help="start the node agent: startup, then routes between nodes with BIRD 2",
        description="Do 'tortie node startup', then stay up: render BIRD 2's configuration "
        "from the datastore (by default a full mesh of iBGP sessions to the other nodes, one "
        "per family; BGPConfiguration and BGPPeer resources add routers, route reflectors "
        "and per-node peers; this node's blocks announced, learned routes imported into "
        "the kernel), start BIRD as a child (or adopt the one a previous agent left running "
        "in TORTIE_RUN_DIR: never two), reconfigure it when nodes or blocks change, restart "
        "it if it dies, waiting 1, 2, 4 ... 30 s between quick restarts; program the VXLAN "
        "dataplane of pools with vxlanMode and publish the pod MTU. The datastore is "
        "followed with watches, not re-read. SIGTERM or SIGINT stops BIRD and the agent. "
        "Same variables as "
        "'tortie node startup --help'; run-time files go to TORTIE_RUN_DIR "
        f"(default {DEFAULT_RUN_DIR}). TORTIE_BGP_HOLD_TIME (seconds: 0 = BIRD's default, "
        "or 3 to 65535) and TORTIE_BGP_CONNECT_RETRY_TIME (seconds, default 5) shorten BGP "
        "timers for labs and tests. "
        "FELIX_PROMETHEUSMETRICSENABLED=true serves Prometheus metrics on "
        "FELIX_PROMETHEUSMETRICSPORT (default 9091) of FELIX_PROMETHEUSMETRICSHOST (default "
        "every address): BGP sessions, this node's blocks and addresses per pool, counters. "
        f"The agent also serves the CNI plugins on {IN_HELP.cni_socket} (root and the "
        "uids of TORTIE_CNI_TRUSTED_UIDS may call, by peer credentials; mode 0600, or 0666 "
        "when other uids are trusted): the plugins hand their calls to "
        "it and run in-process only when no agent answers. TORTIE_CNI_SERVICE=false turns "
        "this off.",
    )
    run.set_defaults(handler=_run)
    status = node_sub.add_parser(
        "status",
        help="BGP sessions and learned routes of the agent on this host",
        description="Like 'calicoctl node status': the agent's BGP sessions per family "
        "(peer address; type: node-to-node mesh, global or node specific; state, since, "
        "info) and the routes learned from peers, read from the agent's run directory "
        "(TORTIE_RUN_DIR). -o json gives the same as one JSON document.",
    )
    status.add_argument("-o", "--output", choices=("text", "json"), default="text")
    status.set_defaults(handler=_status)
    health = node_sub.add_parser(
        "health",
        help="liveness / readiness probe (exit 0 or 1, one line why)",
        description="--live: the agent and its BIRD run. --ready: startup is done and every "
        "BGP session is established (calico-node's -felix-ready -bird-ready).",
    )
    mode = health.add_mutually_exclusive_group(required=True)
    mode.add_argument("--live", action="store_true", help="liveness")
    mode.add_argument("--ready", action="store_true", help="readiness")
    health.set_defaults(handler=_health)


def _run(args: argparse.Namespace) -> int:
    from tortie.cni.host import StopSignals
    from tortie.node.agent import run_agent
    from tortie.node.config import config_from_env

    log = setup_logging()
    config = config_from_env(os.environ)
    signals = StopSignals().install()  # the handler only sets the event: no logging there
    settings = cli_settings(args.config)
    try:
        return run_agent(config, cli_store(args.config), log, signals.stop, settings=settings)
    finally:
        if signals.signals:
            log.info("stopped on %s", signals.received)


def _status(args: argparse.Namespace) -> int:
    import json

    from tortie.node.status import read_status

    status = read_status(_run_dir())
    if args.output == "json":
        print(json.dumps(status.to_json(), indent=2))
        return 0
    print(f"tortie node agent is running for node {status.node} (pid {status.agent_pid}).")
    if status.backend != "bird":
        print(f"Networking backend: {status.backend} (no BGP).")
        return 0
    for family in (4, 6):
        rows = [
            [s.peer, s.peer_type, s.state, s.since, s.info]
            for s in status.sessions
            if s.family == family
        ]
        print(f"\nIPv{family} BGP status")
        if rows:
            sys.stdout.write(table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], rows))
        else:
            print(f"No IPv{family} peers found.")
    print("\nRoutes learned from peers")
    rows = [[r.prefix, r.via, r.protocol] for r in status.routes]
    if rows:
        sys.stdout.write(table(["PREFIX", "VIA", "FROM"], rows))
    else:
        print("none")
    return 0


def _health(args: argparse.Namespace) -> int:
    from tortie.node.status import health

    ok, why = health(_run_dir(), ready=bool(args.ready))
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
