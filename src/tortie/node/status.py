"""``tortie node status`` and ``tortie node health``: what the agent and its BIRD say,
read from the run directory (pid files, the agent's status file, BIRD's control socket)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from tortie.errors import NotFound
from tortie.node.agent import PID_FILE, STATUS_FILE
from tortie.node.birdproc import birdc


@dataclass(frozen=True)
class Session:
    peer: str
    family: int
    peer_type: str
    state: str  # BIRD's protocol state: up, start, down
    since: str
    info: str  # Established, Active, Connect, ...

    @property
    def established(self) -> bool:
        return self.state == "up" and self.info.startswith("Established")


@dataclass(frozen=True)
class Route:
    prefix: str
    via: str
    protocol: str


PEER_TYPES = {"Mesh_": "node-to-node mesh", "Global_": "global", "Node_": "node specific"}


def _type_of(name: str) -> str | None:
    return next((t for p, t in PEER_TYPES.items() if name.startswith(p)), None)


def _peer_of(name: str) -> tuple[str, int]:
    """``Mesh_10_0_0_2`` -> ("10.0.0.2", 4); ``Global_fd00__2`` -> ("fd00::2", 6)."""
    raw = name.split("_", 1)[1]
    parts = raw.split("_")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return ".".join(parts), 4
    return raw.replace("_", ":"), 6


def parse_protocols(text: str) -> list[Session]:
    sessions = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "BGP":
            continue
        peer_type = _type_of(fields[0])
        if peer_type is None:
            continue
        # name proto table state date time [info...]
        peer, family = _peer_of(fields[0])
        sessions.append(
            Session(
                peer=peer,
                family=family,
                peer_type=peer_type,
                state=fields[3],
                since=" ".join(fields[4:6]),
                info=" ".join(fields[6:]),
            )
        )
    return sessions


def parse_routes(text: str) -> list[Route]:
    routes: list[Route] = []
    prefix = protocol = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith(("BIRD ", "Table ")):
            continue
        if not line[0].isspace():
            prefix = line.split()[0]
        if "[" in line:  # a route line; further paths of one prefix leave the prefix out
            protocol = line.split("[", 1)[1].split()[0]
        elif "via" in line.split():
            words = line.split()
            routes.append(Route(prefix, words[words.index("via") + 1], protocol))
    return routes


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
    pid = _alive(os.path.join(run_dir, PID_FILE))
    if pid is None:
        raise NotFound(
            f"no node agent is running with run directory {run_dir}; start it with "
            "'tortie node run' (or set TORTIE_RUN_DIR to the agent's run directory)"
        )
    try:
        with open(os.path.join(run_dir, STATUS_FILE), encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        raise NotFound(
            f"the node agent (pid {pid}) in {run_dir} has not finished startup yet; "
            "try again in a moment"
        ) from None
    sessions: list[Session] = []
    routes: list[Route] = []
    bird_pid = _alive(os.path.join(run_dir, "bird.pid"))
    if doc.get("backend") == "bird" and bird_pid is not None:
        sock = os.path.join(run_dir, "bird.ctl")
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
