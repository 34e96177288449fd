"""``tortie node serve-cni``: the CNI node service alone, without the routing agent."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tortie.cli.node_common import IN_HELP, run_dir, setup_logging
from tortie.cli.settings import cli_settings, cli_store


def register(node_sub: Any) -> None:
    serve = node_sub.add_parser(
        "serve-cni",
        help=f"serve the CNI plugins on {IN_HELP.cni_socket}, without the routing agent",
        description="Only the CNI part of 'tortie node run': answer the thin plugins' calls "
        f"on {IN_HELP.cni_socket} (or --socket) with the datastore kept open, warm "
        "blocks, group commit and the netlink dataplane, until SIGTERM or SIGINT. For "
        "nodes whose routes are made elsewhere, and for measuring. Datastore from the "
        "environment or --config, as every command; TORTIE_CNI_TRUSTED_UIDS as for 'run' "
        "(a trusted uid is as good as root: its calls run as root).",
    )
    serve.add_argument("--socket", default="", help=f"socket path (default {IN_HELP.cni_socket})")
    serve.set_defaults(handler=_serve_cni)


def _serve_cni(args: argparse.Namespace) -> int:
    from tortie.cni.host import StopSignals, start_node_service
    from tortie.node.config import config_from_env

    log = setup_logging()
    signals = StopSignals().install()
    config = config_from_env(os.environ)  # trusted uids and metrics as for 'node run'
    observe = None
    if config.metrics_enabled:
        from tortie.node.agent import cni_observer
        from tortie.node.metrics import serve

        metrics = serve(config, log)
        observe = cni_observer(metrics) if metrics is not None else None
    settings = cli_settings(args.config)
    store = cli_store(args.config)
    service = start_node_service(
        run_dir(),
        log,
        trusted_uids=config.cni_trusted_uids,
        settings=settings,
        store=store,
        observe=observe,
        socket_path=args.socket or None,
    )
    try:
        signals.wait()
    finally:
        if signals.signals:
            log.info("stopping on %s", signals.received)
        if service.stop():
            store.close()
    return 0
