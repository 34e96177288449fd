"""Throw-away network namespaces for tests (root only), shared by every test package.

Use from a test module (the tests directory has no ``__init__``)::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/
    from netns import Netns, NetnsPool, require_root

    @pytest.fixture
    def namespaces() -> Iterator[NetnsPool]:
        require_root()
        with NetnsPool() as pool:
            yield pool

Every namespace is named ``tt-<random hex>`` and deleted when the pool closes, which also
removes every interface inside it.

One limit is machine-wide: the kernel's IPv4 and IPv6 neighbour tables are shared by every
namespace (``gc_thresh3``, 1,024 entries each, not settable from inside a namespace).  A
lab of many hosts on one link (40 nodes: 40 × 39 entries) fills them, and then ARP/ND
fails everywhere on the machine ("No buffer space available", "neighbor table overflow"
in dmesg).  Permanent entries do not count: large labs pin theirs (``nud permanent``),
or route through a router namespace so each host has one neighbour.  Nothing here touches the machine's own namespace:
commands run through ``ip -n NAME`` or ``ip netns exec NAME``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import pytest

IP = shutil.which("ip") or next(
    (p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None
)


def require_root() -> None:
    """Skip the calling test unless it can create network namespaces."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces (ip netns add)")
    if IP is None:
        pytest.skip("needs iproute2: `ip` not found")


class CommandError(subprocess.CalledProcessError):
    """A failed command, with its stderr in the message."""

    def __str__(self) -> str:
        return f"{super().__str__()} stderr: {(self.stderr or '').strip()}"


class Netns:
    """One named namespace under /run/netns."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    def run(
        self, *argv: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a program inside the namespace (``ip netns exec``)."""
        return subprocess.run(
            [str(IP), "netns", "exec", self.name, *argv],
            check=check,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    def ip(self, *args: str, check: bool = True) -> str:
        """``ip -n NAME ARGS``; stdout.  Raises ``CalledProcessError`` (with stderr)."""
        proc = subprocess.run(
            [str(IP), "-n", self.name, *args], capture_output=True, text=True, timeout=30
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc.stdout

    def ip_json(self, *args: str) -> Any:
        """``ip -n NAME -j ARGS`` parsed (a list)."""
        out = self.ip("-j", *args)
        return json.loads(out) if out.strip() else []

    def link(self, ifname: str) -> dict[str, Any] | None:
        """The ``ip -j -d addr show dev`` entry of an interface, or None if absent."""
        links = self.ip_json("-d", "addr", "show")
        return next((lk for lk in links if lk["ifname"] == ifname), None)

    def link_names(self) -> set[str]:
        return {lk["ifname"] for lk in self.ip_json("link", "show")}

    def routes(self, family: str = "-4", table: str = "main") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.ip_json(family, "route", "show", "table", table)
        return result

    def sysctl(self, key: str) -> str:
        """Read a sysctl inside the netns; ``key`` is its path under /proc/sys
        ("net/ipv4/conf/eth0/forwarding")."""
        return self.run("cat", f"/proc/sys/{key}").stdout.strip()

    def set_sysctl(self, key: str, value: str) -> None:
        """Write a sysctl inside this namespace only (e.g. forwarding for a test host)."""
        path = f"/proc/sys/{key}"
        self.run("sh", "-c", f'echo {value} > "$1"', "sh", path)


def create_netns(prefix: str = "tt-") -> Netns:
    name = prefix + secrets.token_hex(4)
    subprocess.run([str(IP), "netns", "add", name], check=True, capture_output=True)
    return Netns(name)


def delete_netns(ns: Netns | str) -> None:
    """Delete a namespace; no error if it is already gone."""
    name = ns.name if isinstance(ns, Netns) else ns
    subprocess.run([str(IP), "netns", "delete", name], check=False, capture_output=True)


def list_netns() -> set[str]:
    out = subprocess.run([str(IP), "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


class NetnsPool:
    """Creates namespaces on demand; deletes all of them on close (use as a fixture)."""

    def __init__(self, prefix: str = "tt-") -> None:
        self.prefix = prefix
        self.created: list[Netns] = []

    def new(self) -> Netns:
        ns = create_netns(self.prefix)
        self.created.append(ns)
        return ns

    def close(self) -> None:
        for ns in reversed(self.created):
            delete_netns(ns)
        self.created.clear()

    def __enter__(self) -> NetnsPool:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def run_python_in(
    ns: Netns, python: str, code: str, args: Sequence[str] = (), input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code args`` inside ``ns`` (so the code's "current" netns is ``ns``)."""
    return ns.run(python, "-c", code, *args, check=False, input=input)
