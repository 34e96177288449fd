"""natOutgoing programmed by the node agent itself (``tortie node run`` in the lab's node
namespace, SQLite store): rules appear without anyone calling the applier, follow a pool
change within ~2 s, stay while the agent restarts (an established flow keeps its
translation), and ``tortie node cleanup`` removes them.  Real nft, real namespaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nat_lab import HOLD_TCP, NODE4, NODE6, OUT4, OUT6, NatLab, stop
from netns import IP

BIN = Path(sys.executable).parent
POOLS = {"pool-a": ("10.244.0.0/16", True), "pool-b": ("10.245.0.0/16", False),
         "pool-a6": ("fd00:244::/48", True), "pool-b6": ("fd00:245::/48", False)}  # fmt: skip


def pool_doc(name: str, nat: bool) -> str:
    cidr = POOLS[name][0]
    return json.dumps(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "natOutgoing": nat, "blockSize": 26 if "." in cidr else 122},
        }
    )


class Agent:
    def __init__(self, lab: NatLab, tmp: Path) -> None:
        self.lab = lab
        self.run_dir = tmp / "run"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "DATASTORE_TYPE": "sqlite",
            "SQLITE_PATH": str(tmp / "tortie.db"),
            "TORTIE_RUN_DIR": str(self.run_dir),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def tortie(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(IP), "netns", "exec", self.lab.node.name, str(BIN / "tortie"), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        env = {
            **self.env,
            "NODENAME": "nat-node",
            "CALICO_NODENAME_FILE": str(self.run_dir / "nodename"),
            "CALICO_NETWORKING_BACKEND": "none",
            "NO_DEFAULT_POOLS": "true",
            "IP": "autodetect",
            "IP6": "autodetect",
        }
        self.run_dir.mkdir(exist_ok=True)
        log = open(self.run_dir / "agent.log", "ab")  # noqa: SIM115 - closed right after
        self.proc = subprocess.Popen(
            [str(IP), "netns", "exec", self.lab.node.name, "env", "-i",
             *(f"{k}={v}" for k, v in env.items()), str(BIN / "tortie"), "node", "run"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=20)
        self.proc = None
        return rc

    def log(self) -> str:
        path = self.run_dir / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def agent(lab: NatLab, tmp_path: Path) -> Iterator[Agent]:
    a = Agent(lab, tmp_path)
    for name, (_, nat) in POOLS.items():
        out = a.tortie("apply", "-f", "-", stdin=pool_doc(name, nat))
        assert out.returncode == 0, out.stderr
    a.start()
    try:
        yield a
    finally:
        if a.proc is not None:
            a.proc.kill()
            a.proc.wait()


def until(what: str, check: Callable[[], bool], timeout: float, log: str = "") -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"{what} not after {timeout} s\n{log}"
        time.sleep(0.1)
    return time.monotonic() - start


def test_the_agent_programs_nat_follows_pools_and_keeps_flows_across_a_restart(
    lab: NatLab, agent: Agent
) -> None:
    a, b = lab.pod_a, lab.pod_b
    until("pod A NATed as the node", lambda: lab.ask(a, OUT4) == NODE4, 20, agent.log())
    assert lab.ask(a, OUT6) == NODE6
    assert lab.arrives_from(b, OUT4) == b.ip4  # pool-b: no natOutgoing, no way out
    assert lab.ask(b, OUT4) != NODE4

    # A pool switched on is NATed within ~2 s, IPv4 and IPv6.
    began = time.monotonic()
    for name in ("pool-b", "pool-b6"):
        out = agent.tortie("apply", "-f", "-", stdin=pool_doc(name, True))
        assert out.returncode == 0, out.stderr
    took = until("pool-b NATed", lambda: lab.ask(b, OUT4) == NODE4, 10, agent.log())
    assert lab.ask(b, OUT6) == NODE6
    print(f"natOutgoing switched on, NATed after {time.monotonic() - began:.2f} s")
    assert took < 3.0

    # An established flow through NAT survives the agent stopping and starting again.
    client = subprocess.Popen(
        [str(IP), "netns", "exec", a.ns.name, sys.executable, "-c", HOLD_TCP, OUT4],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def exchange(n: int) -> str:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(f"{n}\n")
        client.stdin.flush()
        return client.stdout.readline().strip()

    try:
        host, port, _ = exchange(1).split()
        assert host == NODE4
        assert agent.stop() == 0
        assert "table ip tortie" in lab.nft("list", "tables")  # rules stay while it is down
        assert exchange(2) == f"{host} {port} 2"
        agent.start()
        until("the agent back", lambda: "agent running" in agent.log().split("stopping")[-1], 20)
        time.sleep(1.0)
        assert exchange(3) == f"{host} {port} 3"
    finally:
        stop(client)
    assert "natOutgoing: tables replaced" in agent.log()

    # Cleanup removes what tortie programmed, and nothing else.
    assert agent.stop() == 0
    out = agent.tortie("node", "cleanup")
    assert out.returncode == 0, out.stderr
    assert "tortie" not in lab.nft("list", "tables")
