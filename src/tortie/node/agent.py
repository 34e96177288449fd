"""``tortie node run``: startup, then keep BIRD in step with the datastore until told to
stop (SIGTERM / SIGINT), then stop BIRD and remove the run-time files.

The loop: note the store revision, read nodes / this node's blocks / pools, render the
BIRD configuration, apply it when the text changed, restart BIRD if it died, re-detect
addresses when AUTODETECT_POLL_INTERVAL says so, then wait for a change under the watched
prefixes (etcd: a watch; SQLite: cheap revision polling) or one second.  A datastore that
is briefly unreachable is logged and retried; routes already in the kernel stay.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time

from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import Conflict, TortieError, Unavailable
from tortie.node.bird import render
from tortie.node.config import NodeConfig
from tortie.node.routing import load_view, watched
from tortie.node.startup import StartupResult, redetect, startup

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import IO

    from tortie.cni.host import NodeService
    from tortie.datastore.config import DatastoreSettings
    from tortie.node.hostprep import Host
    from tortie.node.metrics import AgentMetrics

STATUS_FILE = "agent.json"
PID_FILE = "agent.pid"


def write_status(run_dir: str, result: StartupResult, **extra: object) -> None:
    doc = {
        "node": result.node_name,
        "pid": os.getpid(),
        "backend": result.backend,
        "ipv4": result.ipv4,
        "ipv6": result.ipv6 if result.ipv6_support else None,
        "routerID": result.router_id,
        "startup": "done",
        **extra,
    }
    tmp = os.path.join(run_dir, STATUS_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    os.replace(tmp, os.path.join(run_dir, STATUS_FILE))


def _claim_run_dir(run_dir: str) -> IO[str]:
    """Lock the run directory for this agent (a second agent there would start a second
    BIRD on the same socket and delete the first one's files when it stops) and write
    our pid.  The lock dies with the process, so a crashed agent leaves no stale claim."""
    fh = open(os.path.join(run_dir, PID_FILE), "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        other = fh.read().strip()[:20] or "?"
        fh.close()
        raise Conflict(
            f"another node agent (pid {other}) already runs with run directory {run_dir}; "
            "stop it first, or give this agent its own TORTIE_RUN_DIR"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def cni_observer(metrics: AgentMetrics) -> Callable[[str, bool, float], None]:
    """The CNI service's per-call callback, counted in the agent's metrics."""

    def observe(verb: str, ok: bool, seconds: float) -> None:
        metrics.cni_requests.labels(verb, "ok" if ok else "error").inc()
        metrics.cni_latency.labels(verb).observe(seconds)

    return observe


def start_cni_service(
    config: NodeConfig,
    store: Datastore,
    settings: DatastoreSettings | None,
    log: logging.Logger,
    metrics: AgentMetrics | None,
) -> NodeService:
    """Serve the CNI plugins on ``$TORTIE_RUN_DIR/cni.sock`` (tortie/cni/host.py)."""
    from tortie.cni.host import start_node_service
    from tortie.rundir import RunDir

    return start_node_service(
        RunDir(config.run_dir),
        log,
        trusted_uids=config.cni_trusted_uids,
        settings=settings,
        store=store,
        observe=cni_observer(metrics) if metrics is not None else None,
    )


def run_agent(
    config: NodeConfig,
    store: Datastore,
    log: logging.Logger,
    stop: threading.Event,
    host: Host | None = None,
    settings: DatastoreSettings | None = None,
) -> int:
    """Run the agent until ``stop``.  ``settings``: how ``store`` was opened (CNI calls
    naming the same datastore then share its connection)."""
    os.makedirs(config.run_dir, exist_ok=True)
    pid_file = _claim_run_dir(config.run_dir)
    bird = None
    service = None
    try:
        metrics = None  # Prometheus metrics (issue 9 item 5), imported only when enabled
        if config.metrics_enabled:
            from tortie.node.metrics import serve

            metrics = serve(config, log)
        began = time.monotonic()
        result = startup(config, store, log, host)
        if metrics is not None:
            metrics.started(time.monotonic() - began)
        if config.cni_service:
            service = start_cni_service(config, store, settings, log, metrics)
        if result.backend == "bird":
            from tortie.node.birdproc import Bird

            bird = Bird(config.run_dir, log)
        write_status(config.run_dir, result)
        log.info("agent running for node %s (backend %s)", result.node_name, result.backend)
        prefixes = watched(result.node_name)
        last_text = refused = ""
        applied = False
        next_poll = time.monotonic() + config.poll_interval if config.poll_interval else None
        while not stop.is_set():
            try:
                revision = store.current_revision()
                if store.get(keys.resource_key("nodes", result.node_name)) is None:
                    # Deleted under us ('tortie delete node'): its blocks are gone and the
                    # other nodes dropped it; running on would leave a silently cut-off host.
                    log.error(
                        "node %s was deleted from the datastore while its agent runs; "
                        "stopping: restart the agent to register the node again, or leave "
                        "it stopped if the node is decommissioned",
                        result.node_name,
                    )
                    return 1
                if next_poll is not None and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + config.poll_interval
                    try:
                        new = redetect(config, store, result, log, host)
                    except Unavailable:
                        raise
                    except TortieError as exc:
                        # An address gone for a moment must not stop routing updates.
                        log.warning("address re-detection failed, addresses kept: %s", exc)
                        new = result
                    if new != result:
                        result = new
                        write_status(config.run_dir, result)
                if bird is not None:
                    view = load_view(
                        store, result, log, config.bgp_hold_time, config.bgp_connect_retry
                    )
                    text = render(view)
                    if text in (last_text, refused):
                        pass  # a refused text is checked again only once it changes
                    elif bird.apply(text):
                        last_text, applied = text, True
                        log.info(
                            "routing: %d peers, blocks %s",
                            len(view.peers),
                            ", ".join(view.blocks4 + view.blocks6) or "none",
                        )
                    else:
                        refused = text
                    bird.supervise()
                woke = store.wait_for_change(prefixes, revision, timeout=1.0)
                if metrics is not None:
                    metrics.after_pass(store, result.node_name, bird, woke, applied)
                applied = False
            except Unavailable as exc:
                log.warning("datastore unavailable (%s); retrying in 1 s", exc)
                stop.wait(1.0)
            except TortieError as exc:
                log.error("%s; retrying in 5 s", exc)
                stop.wait(5.0)
        log.info("stopping")
        return 0
    finally:
        if service is not None:
            service.stop()  # drains, then closes the stores it opened (cni/host.py)
        if bird is not None:
            bird.stop()
        for name in (STATUS_FILE, PID_FILE):
            path = os.path.join(config.run_dir, name)
            if os.path.exists(path):
                os.unlink(path)
        pid_file.close()  # releases the run directory
