"""``tortie node status`` and ``tortie node health``: what the agent and its BIRD say,
read from the run directory (pid files, the agent's status file, BIRD's control socket)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from tortie.errors import NotFound
from tortie.node.birdctl import Route, Session, birdc, parse_protocols, parse_routes
from tortie.rundir import RunDir

__all__ = ["NodeStatus", "Route", "Session", "health", "parse_protocols", "parse_routes"]


def _alive(pid_path: str) -> int | None:
    try:
        with open(pid_path, encoding="utf-8") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@dataclass
class NodeStatus:
    node: str
    agent_pid: int
    backend: str
    bird_pid: int | None
    sessions: list[Session]
    routes: list[Route]

    def to_json(self) -> dict[str, object]:
        return {
            "node": self.node,
            "agentPID": self.agent_pid,
            "backend": self.backend,
            "birdPID": self.bird_pid,
            "sessions": [{**asdict(s), "established": s.established} for s in self.sessions],
            "routes": [asdict(r) for r in self.routes],
        }


def read_status(run_dir: str) -> NodeStatus:
    files = RunDir(run_dir)
    pid = _alive(files.agent_pid)
    if pid is None:
        raise NotFound(
            f"no node agent is running with run directory {run_dir}; start it with "
            "'tortie node run' (or set TORTIE_RUN_DIR to the agent's run directory)"
        )
    try:
        with open(files.agent_status, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        raise NotFound(
            f"the node agent (pid {pid}) in {run_dir} has not finished startup yet; "
            "try again in a moment"
        ) from None
    sessions: list[Session] = []
    routes: list[Route] = []
    bird_pid = _alive(files.bird_pid)
    if doc.get("backend") == "bird" and bird_pid is not None:
        sock = files.bird_socket
        sessions = parse_protocols(birdc(sock, "show", "protocols"))
        routes = parse_routes(birdc(sock, "show", "route", "where", "source", "=", "RTS_BGP"))
    return NodeStatus(
        str(doc.get("node")), pid, str(doc.get("backend")), bird_pid, sessions, routes
    )


def health(run_dir: str, ready: bool) -> tuple[bool, str]:
    """calico-node's probes: live = the agent (and its BIRD) run; ready = startup done and
    every BGP session established."""
    try:
        status = read_status(run_dir)
    except NotFound as exc:
        return False, str(exc)
    if status.backend == "bird" and status.bird_pid is None:
        return False, f"BIRD of node {status.node} is not running (the agent restarts it)"
    if not ready:
        return True, f"node agent of {status.node} is live (pid {status.agent_pid})"
    down = [f"{s.peer} ({s.info or s.state})" for s in status.sessions if not s.established]
    if down:
        return False, f"BGP sessions not established: {', '.join(down)}"
    return True, (
        f"node {status.node} is ready: startup done, "
        f"{len(status.sessions)} BGP sessions established"
    )
