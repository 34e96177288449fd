"""A node with two pods and an outside host, in namespaces (root): the NAT tests (tests/nat)
and bench/nat_bench.py.

Layout: the node namespace holds ``wan0`` (172.30.0.1/24, fd00:30::1/64) to the outside
namespace (``eth0``: 172.30.0.2/24, fd00:30::2/64), which has NO route to any pool: a
packet from a pod address reaches it, but its answer goes nowhere unless the node
NATs.  Pods sit behind ``cali-a`` / ``cali-b`` as Calico wires them (the node side
answers for 169.254.1.1 / fe80::1; every neighbour entry is pinned, see ``pin``): pod A has 10.244.1.5 and fd00:244::5 (pool
``pool-a``), pod B 10.245.1.5 and fd00:245::5 (pool ``pool-b``).

The outside host runs ``PEER_SERVER``: on UDP and TCP port 7000, over both families, it
logs each peer address it sees to a file and answers with it, so a pod learns the source
address the outside saw, and the test can read what arrived even when no answer can
get back.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netns import IP, Netns, NetnsPool
from tortie.model.ippool import IPPool, ippool_from_dict

NODE4, NODE6 = "172.30.0.1", "fd00:30::1"
OUT4, OUT6 = "172.30.0.2", "fd00:30::2"
PORT = 7000

PEER_SERVER = r"""
import socket, sys, threading
log = open(sys.argv[1], "a", buffering=1)
def seen(addr):
    host = addr[0][7:] if addr[0].startswith("::ffff:") else addr[0]
    log.write(host + "\n")
    return host
def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 7000))
    while True:
        data, addr = s.recvfrom(2048)
        try:
            s.sendto((seen(addr) + "\n").encode(), addr)
        except OSError:
            pass  # no route back to an address that was not NATed
def serve(conn, addr):
    host = seen(addr)
    with conn:
        for line in conn.makefile("r"):
            conn.sendall(f"{host} {addr[1]} {line.strip()}\n".encode())
t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("::", 7000))
t.listen(16)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    conn, addr = t.accept()
    threading.Thread(target=serve, args=(conn, addr), daemon=True).start()
"""

# Ask a peer server over TCP which address and port it sees; prints them, or "unreachable".
ASK_TCP = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], 7000), timeout=2)
    s.sendall(b"hello\n")
    print(" ".join(s.makefile("r").readline().split()[:2]))
except OSError:
    print("unreachable")
"""

# One UDP datagram to the outside host (no answer needed).
SEND_UDP = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.sendto(b"x", (sys.argv[1], 7000))
"""

# A long-lived TCP connection: each line on stdin goes out, the answer is printed.
HOLD_TCP = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 7000), timeout=5)
f = s.makefile("r")
for line in sys.stdin:
    s.sendall(line.encode())
    print(f.readline().strip(), flush=True)
"""


def pool(name: str, cidr: str, **spec: Any) -> IPPool:
    return ippool_from_dict({"metadata": {"name": name}, "spec": {"cidr": cidr, **spec}})


@dataclass
class Pod:
    ns: Netns
    ip4: str
    ip6: str


class NatLab:
    def __init__(self, namespaces: NetnsPool, tmp: Path) -> None:
        self.node = namespaces.new()
        self.outside = namespaces.new()
        self.tmp = tmp
        self.log = tmp / "peers.log"
        self.log.write_text("")
        self.extra: list[subprocess.Popen[str]] = []
        for ns in (self.node, self.outside):
            _no_dad(ns)
            ns.ip("link", "set", "lo", "up")
        n, o = self.node, self.outside
        n.ip("link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", o.name)
        n.ip("addr", "add", f"{NODE4}/24", "dev", "wan0")
        n.ip("addr", "add", f"{NODE6}/64", "dev", "wan0", "nodad")
        n.ip("link", "set", "wan0", "up")
        o.ip("addr", "add", f"{OUT4}/24", "dev", "eth0")
        o.ip("addr", "add", f"{OUT6}/64", "dev", "eth0", "nodad")
        o.ip("link", "set", "eth0", "up")
        n.set_sysctl("net/ipv4/ip_forward", "1")
        n.set_sysctl("net/ipv6/conf/all/forwarding", "1")
        for addr in (OUT4, OUT6):
            pin(n, "wan0", addr, mac(o, "eth0"))
        for addr in (NODE4, NODE6):
            pin(o, "eth0", addr, mac(n, "wan0"))
        self.pod_a = self._pod(namespaces, "cali-a", "10.244.1.5", "fd00:244::5")
        self.pod_b = self._pod(namespaces, "cali-b", "10.245.1.5", "fd00:245::5")
        self.server = subprocess.Popen(
            [str(IP), "netns", "exec", o.name, sys.executable, "-c", PEER_SERVER, str(self.log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.server.stdout is not None
        assert self.server.stdout.readline().strip() == "ready"

    def _pod(self, namespaces: NetnsPool, veth: str, ip4: str, ip6: str) -> Pod:
        pod = Pod(namespaces.new(), ip4, ip6)
        n, p = self.node, pod.ns
        _no_dad(p)
        n.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", p.name)
        n.ip("addr", "add", "169.254.1.1/32", "dev", veth)
        n.ip("addr", "add", "fe80::1/64", "dev", veth, "nodad")
        n.ip("link", "set", veth, "up")
        n.ip("route", "add", f"{ip4}/32", "dev", veth)
        n.ip("-6", "route", "add", f"{ip6}/128", "dev", veth)
        p.ip("link", "set", "lo", "up")
        p.ip("addr", "add", f"{ip4}/32", "dev", "eth0")
        p.ip("addr", "add", f"{ip6}/128", "dev", "eth0", "nodad")
        p.ip("link", "set", "eth0", "up")
        p.ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        p.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        p.ip("-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
        for gateway in ("169.254.1.1", "fe80::1"):
            pin(p, "eth0", gateway, mac(n, veth))
        for addr in (ip4, ip6):
            pin(n, veth, addr, mac(p, "eth0"))
        return pod

    def add_node_address(self, address: str) -> None:
        """Another address on the node's ``wan0`` (an SNAT target), known to the outside."""
        plen = 64 if ":" in address else 24
        self.node.ip("addr", "add", f"{address}/{plen}", "dev", "wan0", "nodad")
        pin(self.outside, "eth0", address, mac(self.node, "wan0"))

    def close(self) -> None:
        for proc in [self.server, *self.extra]:
            stop(proc)

    # ------------------------------------------------------------------ probes

    def ask(self, pod: Pod, dst: str) -> str:
        """The source address a peer server at ``dst`` saw for a TCP connection from
        ``pod``, or "unreachable" (no answer came back)."""
        return self.ask_port(pod, dst)[0]

    def ask_port(self, pod: Pod, dst: str) -> tuple[str, int]:
        """The source address and port the peer server saw (port 0: unreachable)."""
        out = pod.ns.run(sys.executable, "-c", ASK_TCP, dst, check=False, timeout=20)
        words = out.stdout.split()
        if len(words) != 2:
            return (out.stdout.strip() or f"error: {out.stderr.strip()}", 0)
        return words[0], int(words[1])

    def serve_in(self, ns: Netns, name: str) -> subprocess.Popen[str]:
        """Start another peer server (in a pod); stopped by ``close``."""
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [str(IP), "netns", "exec", ns.name, sys.executable, "-c", PEER_SERVER, str(log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.extra.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def arrives_from(self, pod: Pod, dst: str) -> str | None:
        """Send one UDP datagram; the source address it arrived with, or None."""
        before = len(self.peers())
        pod.ns.run(sys.executable, "-c", SEND_UDP, dst, timeout=20)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            seen = self.peers()
            if len(seen) > before:
                return seen[-1]
            time.sleep(0.02)
        return None

    def peers(self) -> list[str]:
        return [ln for ln in self.log.read_text().splitlines() if ln]

    def nft(self, *args: str) -> str:
        return self.node.run("nft", *args).stdout


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a helper process we started and close its pipes."""
    proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def ping(pod: Pod, dst: str) -> bool:
    argv = ["ping", "-c", "1", "-W", "2"] + (["-6"] if ":" in dst else [])
    return pod.ns.run(*argv, dst, check=False, timeout=10).returncode == 0


def mac(ns: Netns, dev: str) -> str:
    return str(ns.ip_json("link", "show", "dev", dev)[0]["address"])


def pin(ns: Netns, dev: str, address: str, lladdr: str) -> None:
    """A permanent neighbour entry.  The kernel's neighbour tables are shared by every
    namespace of the machine (gc_thresh3, default 1024): other tests with many namespaces
    can fill them ("neighbor table overflow"), and then ARP/ND here fails and packets never
    leave.  Permanent entries are exempt from that limit."""
    family = ["-6"] if ":" in address else []
    ns.ip(*family, "neigh", "replace", address, "lladdr", lladdr, "dev", dev, "nud", "permanent")


def _no_dad(ns: Netns) -> None:
    for scope in ("all", "default"):
        ns.set_sysctl(f"net/ipv6/conf/{scope}/accept_dad", "0")
