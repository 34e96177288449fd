"""Fixtures for the main CNI plugin tests (see main_helpers.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from main_helpers import Env

from netns import Netns, NetnsPool, list_netns, require_root


@pytest.fixture
def namespaces() -> Iterator[NetnsPool]:
    require_root()
    with NetnsPool() as pool:
        yield pool
    leftovers = {ns.name for ns in pool.created} & list_netns()
    assert not leftovers


def make_host(namespaces: NetnsPool) -> Netns:
    """A "host" namespace like a real node: forwarding on (inside it only), an uplink
    with an address and a default route (proxy ARP answers for 169.254.1.1 only when the
    host routes it through another interface)."""
    host = namespaces.new()
    host.set_sysctl("net/ipv4/ip_forward", "1")
    host.set_sysctl("net/ipv6/conf/all/forwarding", "1")
    host.ip("link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
    host.ip("link", "set", "uplink1", "up")
    host.ip("link", "set", "uplink0", "up")
    host.ip("addr", "add", "10.66.0.1/24", "dev", "uplink0")
    host.ip("addr", "add", "fd00:66::1/64", "dev", "uplink0", "nodad")
    host.ip("route", "add", "default", "dev", "uplink0")
    host.ip("-6", "route", "add", "default", "dev", "uplink0")
    return host


ROUTES = ["in-process", "service", "compiled"]


def _routed(env: Env, route: str) -> Iterator[Env]:
    """The plugins run in-process, or hand every call to ``tortie node serve-cni``
    (through the Python launchers, or through the compiled client: ``compiled``)."""
    if route == "compiled":
        from tortie.cni.cclient import built_client
        from tortie.cni.install import write_executables

        if built_client() is None:
            pytest.skip("no compiled CNI client was built (no C compiler at pip install time)")
        write_executables(env.bin, client="compiled")
    if route != "in-process":
        env.start_service()
    try:
        yield env
    finally:
        if route != "in-process":
            log = env.stop_service()
            assert "Traceback" not in log, log


@pytest.fixture(params=ROUTES)
def world(namespaces: NetnsPool, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Env]:
    """Launchers, a store with an IPv4 and an IPv6 pool, and a host namespace."""
    env = Env(tmp_path, make_host(namespaces))
    env.add_pools("v4", "v6")
    yield from _routed(env, request.param)


@pytest.fixture(params=ROUTES)
def offline(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Env]:
    """Launchers and a store with pools, no namespaces (tests that fail before any
    network change; safe without root)."""
    env = Env(tmp_path, None)
    env.add_pools("v4", "v6")
    yield from _routed(env, request.param)
