"""Talking to a running BIRD 2 over its control socket: ``birdc`` and the parsers of its
answers (``show protocols``, ``show route``).  Shared by ``tortie node status``/``health``
(status.py), the metrics (metrics.py) and the supervisor (birdproc.py), none of which
imports another for it."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from tortie.errors import NotFound, TortieError


def find_bird() -> tuple[str, str]:
    """Paths of ``bird`` and ``birdc``; ``NotFound`` (one line, with the fix) when absent."""
    bird, birdc = shutil.which("bird"), shutil.which("birdc")
    for candidate in ("/usr/sbin/bird", "/sbin/bird"):
        if bird is None and os.access(candidate, os.X_OK):
            bird = candidate
    for candidate in ("/usr/sbin/birdc", "/sbin/birdc"):
        if birdc is None and os.access(candidate, os.X_OK):
            birdc = candidate
    if bird is None or birdc is None:
        raise NotFound(
            "BIRD 2 is not installed (no bird/birdc on PATH): install it (Debian: apt-get "
            "install bird2), or set CALICO_NETWORKING_BACKEND=none to run without routing"
        )
    return bird, birdc


def birdc(socket_path: str, *command: str, timeout: float = 10) -> str:
    """One ``birdc`` command on the agent's control socket; its output."""
    _, client = find_bird()
    try:
        proc = subprocess.run(
            [client, "-s", socket_path, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TortieError(f"birdc {' '.join(command)}: no answer in {timeout:g} s") from None
    if proc.returncode != 0 or "Unable to connect" in proc.stdout + proc.stderr:
        raise NotFound(
            f"no BIRD answers on {socket_path} ({(proc.stderr or proc.stdout).strip()[:200]}); "
            "is 'tortie node run' running with this TORTIE_RUN_DIR?"
        )
    return proc.stdout


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
