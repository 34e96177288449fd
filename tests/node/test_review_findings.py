"""Regression tests for defects found by reviewing the node agent against issue 7 and
calico-behaviour.md §10–12.  Each test failed before its fix."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.datastore import keys
from tortie.datastore.memory import MemoryDatastore
from tortie.errors import DatastoreError, InvalidInput
from tortie.ipam.nodes import NodeService
from tortie.node.bird import Peer, RoutingView, render
from tortie.node.config import config_from_env
from tortie.node.hostaddrs import HostAddress
from tortie.node.hostprep import FakeHost
from tortie.node.startup import redetect, startup

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from netns import NetnsPool, require_root

LOG = logging.getLogger("test.node.review")


def _addr(ifname: str, a: str, plen: int) -> HostAddress:
    return HostAddress(ifname, 2, a, plen, 6 if ":" in a else 4, "global")


def _env(tmp_path: Path, name: str, **kw: str) -> dict[str, str]:
    return {"NODENAME": name, "CALICO_NODENAME_FILE": str(tmp_path / name), **kw}


def _bird() -> str:
    path = shutil.which("bird") or next(
        (p for p in ("/usr/sbin/bird", "/sbin/bird") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip("needs BIRD 2: `bird` not found (apt-get install bird2)")
    return path


# Finding 1: one corrupt Node made every other node's startup fail (conflict check).
def test_corrupt_other_node_does_not_block_startup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryDatastore()
    store.create(keys.resource_key("nodes", "node-b"), '{"kind": "Node", "spec": [1, 2')
    host = FakeHost(given=[_addr("eth0", "10.10.0.11", 24)], default_routes={4})
    config = config_from_env(_env(tmp_path, "node-a", IP="autodetect"))
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = startup(config, store, LOG, host)
    assert result.ipv4 == "10.10.0.11/24"
    assert NodeService(store).get("node-a") is not None
    assert any("node-b" in r.getMessage() for r in caplog.records)


# Finding 2: a mesh peer without its own AS was dialled with THIS node's AS; Calico uses
# the global default AS for it (bird.cfg: the peer's as_num, else /global/as_num).
def test_peer_without_as_uses_default_as_not_local_as() -> None:
    view = RoutingView(
        node_name="a",
        router_id="10.0.0.1",
        as_number=65001,
        ipv4="10.0.0.1",
        ipv6=None,
        peers=(Peer("b", "10.0.0.2", None, None), Peer("c", "10.0.0.3", None, 65003)),
    )
    text = render(view)
    assert "neighbor 10.0.0.2 as 64512;" in text
    assert "neighbor 10.0.0.3 as 65003;" in text
    assert "local as 65001;" in text


# Finding 3: with IP empty and an address stored, startup keeps the stored address (§10),
# but AUTODETECT_POLL_INTERVAL re-detection replaced it with whatever first-found saw.
def test_redetect_keeps_stored_ipv4_when_ip_is_empty(tmp_path: Path) -> None:
    store = MemoryDatastore()
    host = FakeHost(
        given=[_addr("eth0", "10.10.0.11", 24), _addr("eth1", "10.20.0.11", 24)],
        default_routes={4},
    )
    first = config_from_env(_env(tmp_path, "node-a", IP="10.20.0.11"))
    startup(first, store, LOG, host)
    again = config_from_env(_env(tmp_path, "node-a", IP="", AUTODETECT_POLL_INTERVAL="1s"))
    result = startup(again, store, LOG, host)
    assert result.ipv4 == "10.20.0.11/24"
    after = redetect(again, store, result, LOG, host)
    assert after.ipv4 == "10.20.0.11/24"
    node = NodeService(store).get("node-a")
    assert node is not None and node.ipv4_address == "10.20.0.11/24"


def test_redetect_still_follows_ip_autodetect(tmp_path: Path) -> None:
    store = MemoryDatastore()
    host = FakeHost(given=[_addr("eth0", "10.10.0.11", 24)], default_routes={4})
    config = config_from_env(_env(tmp_path, "node-a", IP="autodetect"))
    result = startup(config, store, LOG, host)
    moved = FakeHost(given=[_addr("eth0", "10.10.0.12", 24)], default_routes={4})
    assert redetect(config, store, result, LOG, moved).ipv4 == "10.10.0.12/24"


# Finding 4: NO_DEFAULT_POOLS=true with CALICO_IPV6POOL_CIDR=none ("no pool") was refused
# as if a CIDR were set.
def test_no_default_pools_accepts_cidr_none(tmp_path: Path) -> None:
    config = config_from_env(
        _env(tmp_path, "node-a", NO_DEFAULT_POOLS="true", CALICO_IPV6POOL_CIDR="none")
    )
    assert config.no_default_pools


# Finding 7: a node name that is no DNS-1123 subdomain (HOSTNAME "node_1", a space, 300
# characters) was written as a Node that nobody, this agent included, could read back.
@pytest.mark.parametrize("name", ["node_1", "bad name", "a" * 254, "-edge"])
def test_invalid_node_name_is_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    env = {"HOSTNAME": name, "CALICO_NODENAME_FILE": str(tmp_path / "nn"), "IP": "10.1.0.5"}
    with pytest.raises(InvalidInput) as info:
        config_from_env(env)
    message = str(info.value)
    assert "HOSTNAME" in message and "NODENAME" in message and "\n" not in message
    assert len(message) < 400


def test_valid_node_names_still_accepted(tmp_path: Path) -> None:
    for name in ("node-1", "Worker-2.Example.COM"):
        env = {"NODENAME": name, "CALICO_NODENAME_FILE": str(tmp_path / "nn")}
        assert config_from_env(env).node_name == name.lower()


# Finding 8: an agent whose own Node was deleted ('tortie delete node' while it runs) went
# on silently: its affinities released, dropped by every peer, yet reported as running.
def test_agent_stops_when_its_node_is_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from tortie.node.agent import run_agent

    store = MemoryDatastore()
    config = config_from_env(
        _env(
            tmp_path,
            "node-a",
            CALICO_NETWORKING_BACKEND="none",
            TORTIE_RUN_DIR=str(tmp_path / "run"),
        )
    )
    stop = threading.Event()
    codes: list[int] = []
    host = FakeHost(given=[_addr("eth0", "10.10.0.11", 24)], default_routes={4})
    agent = threading.Thread(target=lambda: codes.append(run_agent(config, store, LOG, stop, host)))
    key = keys.resource_key("nodes", "node-a")
    with caplog.at_level(logging.INFO, logger=LOG.name):
        agent.start()
        try:
            deadline = time.monotonic() + 10
            while not (tmp_path / "run" / "agent.json").exists():
                assert time.monotonic() < deadline, "agent did not finish startup"
                time.sleep(0.02)
            time.sleep(0.2)
            assert agent.is_alive()
            kv = store.get(key)
            assert kv is not None
            store.delete(key, kv.revision)
            agent.join(timeout=5)
        finally:
            stop.set()
            agent.join(timeout=5)
    assert codes == [1]
    assert any("was deleted" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "run" / "agent.pid").exists()


# Finding 9: a default pool refused by the IPPool rules (IPIP and VXLAN both Always, an
# unmasked CIDR, a bad selector) was reported in IPPool field names only, not naming the
# CALICO_IPV4POOL_* variable to change.
@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"CALICO_IPV4POOL_IPIP": "Always", "CALICO_IPV4POOL_VXLAN": "Always"}, "_IPIP"),
        ({"CALICO_IPV4POOL_CIDR": "10.244.1.0/16"}, "CALICO_IPV4POOL_CIDR"),
        ({"CALICO_IPV4POOL_NODE_SELECTOR": "!!bad"}, "CALICO_IPV4POOL_NODE_SELECTOR"),
    ],
)
def test_bad_default_pool_names_the_variable(
    tmp_path: Path, extra: dict[str, str], variable: str
) -> None:
    store = MemoryDatastore()
    host = FakeHost(given=[_addr("eth0", "10.10.0.11", 24)], default_routes={4})
    config = config_from_env(_env(tmp_path, "node-a", IP="autodetect", **extra))
    with pytest.raises(InvalidInput) as info:
        startup(config, store, LOG, host)
    assert variable in str(info.value)
    assert list(store.list("/calico/")) == []


def test_default_pool_created_meanwhile_by_another_node_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two nodes starting at once: the other one creates the pool between our look and our
    # create (load_pools sees none, the create finds it).
    from tortie.node import defaultpools

    store = MemoryDatastore()
    host = FakeHost(given=[_addr("eth0", "10.10.0.11", 24)], default_routes={4})
    startup(config_from_env(_env(tmp_path, "node-b", IP="10.10.0.12/24")), store, LOG, host)
    monkeypatch.setattr(defaultpools, "load_pools", lambda _store: [])
    config = config_from_env(_env(tmp_path, "node-a", IP="autodetect"))
    assert startup(config, store, LOG, host).ipv4 == "10.10.0.11/24"


# Finding 10: a corrupt value in this node's own Node stopped startup with the decoding
# error only; it now says how to recover.
def test_corrupt_own_node_says_how_to_recover(tmp_path: Path) -> None:
    store = MemoryDatastore()
    bad = '{"kind": "Node", "metadata": {"name": "node-a"}, "spec": {"bgp": {"ipv4Address": "x"}}}'
    store.create(keys.resource_key("nodes", "node-a"), bad)
    host = FakeHost(given=[_addr("eth0", "10.10.0.11", 24)], default_routes={4})
    config = config_from_env(_env(tmp_path, "node-a", IP="autodetect"))
    with pytest.raises(DatastoreError) as info:
        startup(config, store, LOG, host)
    message = str(info.value)
    assert "ipv4Address" in message and "tortie apply -f" in message
    assert "tortie delete node node-a" in message and "\n" not in message
    assert [kv.key for kv in store.list("/calico/")] == [keys.resource_key("nodes", "node-a")]


# Finding 11: with AUTODETECT_POLL_INTERVAL, a re-detection that found nothing (an address
# gone for a moment) raised before BIRD's configuration was rendered, every turn: while it
# lasted, no new node or block reached BIRD.
class _RecordingBird:
    texts: list[str] = []

    def __init__(self, run_dir: str, log: logging.Logger) -> None:
        pass

    def apply(self, text: str) -> bool:
        self.texts.append(text)
        return True

    def supervise(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_failing_redetection_does_not_stop_routing_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import threading

    from tortie.node import birdproc
    from tortie.node.agent import run_agent

    monkeypatch.setattr(birdproc, "Bird", _RecordingBird)
    _RecordingBird.texts = []
    store = MemoryDatastore()
    host = FakeHost(given=[_addr("eth0", "10.10.0.11", 24)], default_routes={4})
    config = config_from_env(
        _env(
            tmp_path,
            "node-a",
            IP="autodetect",
            AUTODETECT_POLL_INTERVAL="0.1s",
            TORTIE_RUN_DIR=str(tmp_path / "run"),
        )
    )
    stop = threading.Event()
    agent = threading.Thread(target=run_agent, args=(config, store, LOG, stop, host))
    agent.start()
    try:
        deadline = time.monotonic() + 10
        while not _RecordingBird.texts:
            assert time.monotonic() < deadline, "agent rendered no configuration"
            time.sleep(0.02)
        host.given = []  # the address disappears: re-detection finds nothing
        time.sleep(0.3)
        other = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": "node-b"},
            "spec": {"bgp": {"ipv4Address": "10.10.0.12/24"}},
        }
        store.create(keys.resource_key("nodes", "node-b"), json.dumps(other))
        deadline = time.monotonic() + 3
        while not any("neighbor 10.10.0.12" in t for t in _RecordingBird.texts):
            assert time.monotonic() < deadline, "node-b never reached BIRD's configuration"
            time.sleep(0.05)
    finally:
        stop.set()
        agent.join(timeout=10)
    assert not agent.is_alive()


# Finding 12: a second agent started with the same run directory ran a second BIRD on the
# same socket and pid file, and removed the first agent's files when it stopped.
def test_second_agent_on_the_same_run_dir_is_refused(tmp_path: Path) -> None:
    import threading

    from tortie.errors import Conflict
    from tortie.node.agent import run_agent

    store = MemoryDatastore()
    run_dir = tmp_path / "run"
    config = config_from_env(
        _env(tmp_path, "node-a", CALICO_NETWORKING_BACKEND="none", TORTIE_RUN_DIR=str(run_dir))
    )
    stop = threading.Event()
    first = threading.Thread(target=run_agent, args=(config, store, LOG, stop))
    first.start()
    second_stop = threading.Event()
    try:
        deadline = time.monotonic() + 10
        while not (run_dir / "agent.json").exists():
            assert time.monotonic() < deadline, "first agent did not finish startup"
            time.sleep(0.02)
        threading.Timer(3.0, second_stop.set).start()  # ends a second agent that ran
        with pytest.raises(Conflict) as info:
            run_agent(config, store, LOG, second_stop)
        assert "TORTIE_RUN_DIR" in str(info.value) and str(os.getpid()) in str(info.value)
        assert (run_dir / "agent.pid").read_text() == str(os.getpid())
        assert (run_dir / "agent.json").exists()
        assert first.is_alive()
    finally:
        stop.set()
        second_stop.set()
        first.join(timeout=10)
    assert not (run_dir / "agent.pid").exists()


# Finding 5: BIRD refusing the rendered configuration was re-checked (a `bird -p` process)
# and logged again on every loop turn (each second) while nothing changed.
def test_refused_configuration_is_not_retried_until_it_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bird()
    import subprocess

    from tortie.node import birdproc

    calls: list[list[str]] = []
    real_run = subprocess.run

    def counting_run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return real_run(argv, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "run", counting_run)
    bird = birdproc.Bird(str(tmp_path), LOG)
    bad = "router id 1.2.3.4;\nprotocol nonsense {}\n"
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        assert not bird.apply(bad)
        assert not bird.apply(bad)
        assert not bird.apply(bad)
    assert len(calls) == 1
    assert sum("refused" in r.getMessage() for r in caplog.records) == 1
    assert not os.path.exists(tmp_path / "bird.cfg")


# Finding 6: the kernel protocol lacked `persist` (§11), so stopping or upgrading the agent
# (BIRD gets SIGTERM) withdrew every route from the kernel and cut pods off until BIRD
# came back.  Real BIRD in a namespace this test creates.
@pytest.fixture
def namespaces() -> Iterator[NetnsPool]:
    require_root()
    with NetnsPool() as pool:
        yield pool


def test_routes_stay_in_kernel_when_bird_stops(namespaces: NetnsPool, tmp_path: Path) -> None:
    bird = _bird()
    ns = namespaces.new()
    ns.ip("link", "set", "lo", "up")
    ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    ns.ip("addr", "add", "10.77.0.1/24", "dev", "eth0")
    ns.ip("link", "set", "eth0", "up")
    ns.ip("link", "set", "eth1", "up")
    view = RoutingView(
        node_name="a",
        router_id="10.77.0.1",
        as_number=64512,
        ipv4="10.77.0.1",
        ipv6=None,
        blocks4=("10.88.1.0/26",),
        pools4=("10.88.0.0/16",),
    )
    conf, sock, pid = tmp_path / "bird.cfg", tmp_path / "bird.ctl", tmp_path / "bird.pid"
    conf.write_text(render(view))
    ns.run(bird, "-c", str(conf), "-s", str(sock), "-P", str(pid))

    def blackhole() -> bool:
        return "10.88.1.0/26" in ns.ip("route", "show", "type", "blackhole")

    deadline = time.monotonic() + 10
    while not blackhole() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert blackhole(), "BIRD did not program the block's blackhole route"
    bird_pid = int(pid.read_text().strip())
    os.kill(bird_pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(bird_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(bird_pid, signal.SIGKILL)
        pytest.fail("BIRD did not stop on SIGTERM")
    assert blackhole(), "stopping BIRD withdrew its kernel routes (kernel protocol lacks persist)"
