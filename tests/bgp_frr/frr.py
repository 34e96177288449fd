"""A real FRR router (Debian ``frr`` 8.4: ``zebra`` + ``bgpd``) inside a test namespace,
every file (configuration, pid files, zserv and vty sockets, logs) in a directory of the
test's own, queried with ``vtysh --vty_socket DIR``, stopped by the PIDs it wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from netns import Netns

FRR_DIR = Path("/usr/lib/frr")
VTYSH = "/usr/bin/vtysh"


def require_frr() -> None:
    for binary in (FRR_DIR / "zebra", FRR_DIR / "bgpd", Path(VTYSH)):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"needs FRR ({binary} not found): apt-get install frr")


@dataclass
class Neighbor:
    address: str
    remote_as: str  # a number, or "external" / "internal" (FRR: any other AS / ours)
    port: int = 179


@dataclass
class Frr:
    ns: Netns
    directory: Path
    asn: int
    router_id: str
    neighbors: Sequence[Neighbor]
    networks: Sequence[str] = ()  # announced (no RIB route needed: import-check off)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def config(self) -> str:
        lines = [
            "frr defaults traditional",
            "hostname tor",
            "log file " + str(self.directory / "bgpd.log"),
            f"router bgp {self.asn}",
            f" bgp router-id {self.router_id}",
            " no bgp ebgp-requires-policy",
            " no bgp default ipv4-unicast",
            " no bgp network import-check",
            " timers bgp 3 9",
        ]
        for n in self.neighbors:
            lines.append(f" neighbor {n.address} remote-as {n.remote_as}")
            lines.append(f" neighbor {n.address} timers connect 1")
            lines.append(f" neighbor {n.address} advertisement-interval 0")
            if n.port != 179:
                lines.append(f" neighbor {n.address} port {n.port}")
        for family in (4, 6):
            lines.append(f" address-family ipv{family} unicast")
            for net in self.networks:
                if (":" in net) == (family == 6):
                    lines.append(f"  network {net}")
            for n in self.neighbors:
                if (":" in n.address) == (family == 6):
                    lines.append(f"  neighbor {n.address} activate")
            lines.append(" exit-address-family")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o777)  # the daemons drop to user frr for some files
        (d / "zebra.conf").write_text("hostname tor\n")
        (d / "bgpd.conf").write_text(self.config())
        common = ["-z", str(d / "zserv.api"), "--vty_socket", str(d), "-u", "root", "-g", "frrvty"]
        self._spawn(
            "zebra",
            [
                str(FRR_DIR / "zebra"),
                "-f",
                str(d / "zebra.conf"),
                "-i",
                str(d / "zebra.pid"),
                *common,
                "-P",
                "0",
                "--log",
                f"file:{d / 'zebra.log'}",
            ],
        )
        self._wait_for(d / "zserv.api")
        self._spawn(
            "bgpd",
            [
                str(FRR_DIR / "bgpd"),
                "-f",
                str(d / "bgpd.conf"),
                "-i",
                str(d / "bgpd.pid"),
                *common,
                "-P",
                "0",
                "--log",
                f"file:{d / 'bgpd.log'}",
            ],
        )
        self._wait_for(d / "bgpd.vty")

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.directory / f"{name}.out", "ab")  # noqa: SIM115 - closed right after
        self.procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", self.ns.name, *argv],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        )
        out.close()

    def _wait_for(self, path: Path, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if any(p.poll() is not None for p in self.procs):
                raise AssertionError(f"FRR daemon exited: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"FRR did not create {path}: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-2000:]
            for p in sorted(self.directory.glob("*.out")) + sorted(self.directory.glob("*.log"))
        )

    def vtysh(self, *commands: str) -> str:
        argv = [VTYSH, "--vty_socket", str(self.directory), "-d", "bgpd"]
        for c in commands:
            argv += ["-c", c]
        proc = self.ns.run(*argv, check=False, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def configure(self, *lines: str) -> None:
        """Change the running configuration (``configure terminal`` then ``lines``)."""
        self.vtysh("configure terminal", *lines)

    def json(self, command: str) -> Any:
        return json.loads(self.vtysh(command + " json") or "{}")

    def established(self) -> set[str]:
        peers = self.json("show bgp neighbors")
        return {a for a, p in peers.items() if p.get("bgpState") == "Established"}

    def routes(self, family: int) -> dict[str, list[dict[str, Any]]]:
        """Prefix -> its paths, from ``show bgp ipvN unicast json``."""
        table = self.json(f"show bgp ipv{family} unicast")
        routes: dict[str, list[dict[str, Any]]] = table.get("routes", {})
        return routes

    def next_hops(self, family: int) -> dict[str, set[str]]:
        """Prefix -> the global next hops of its paths."""
        out: dict[str, set[str]] = {}
        for prefix, paths in self.routes(family).items():
            for path in paths:
                for hop in path.get("nexthops", []):
                    if hop.get("scope", "global") == "global":
                        out.setdefault(prefix, set()).add(hop["ip"])
        return out

    def stop(self) -> None:
        """SIGTERM to the daemons this object started (by their PIDs), then wait."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
