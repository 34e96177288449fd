"""The agent loop (``run_agent``) on the memory store with a described host and a
recording stand-in for BIRD: AUTODETECT_POLL_INTERVAL re-detection updates the Node, the
status file and the rendered configuration; a new Node re-renders; stopping cleans up.
Real BIRD in namespaces is exercised by tests/node_cluster."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tortie.datastore import keys
from tortie.datastore.memory import MemoryDatastore
from tortie.ipam.nodes import NodeService
from tortie.node import birdproc
from tortie.node.agent import run_agent
from tortie.node.config import config_from_env
from tortie.node.hostaddrs import HostAddress
from tortie.node.hostprep import FakeHost
from tortie.rundir import RunDir

LOG = logging.getLogger("test.node.agent")


class RecordingBird:
    """Stands in for ``birdproc.Bird``: keeps every configuration it is given."""

    instances: list[RecordingBird] = []

    accept = True

    def __init__(self, run_dir: str, log: logging.Logger) -> None:
        self.texts: list[str] = []
        self.stopped = False
        RecordingBird.instances.append(self)

    def apply(self, text: str) -> bool:
        self.texts.append(text)
        return self.accept

    def supervise(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def node_ipv4(store: MemoryDatastore) -> str | None:
    node = NodeService(store).get("node-a")
    return None if node is None else node.ipv4_address


def v4(address: str) -> HostAddress:
    return HostAddress("eth0", 2, address, 24, 4, "global")


@pytest.fixture
def bird(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[RecordingBird]]:
    RecordingBird.instances = []
    RecordingBird.accept = True
    monkeypatch.setattr(birdproc, "Bird", RecordingBird)
    yield RecordingBird


def start(
    store: MemoryDatastore, tmp_path: Path, host: FakeHost, stop: threading.Event, **env: str
) -> tuple[threading.Thread, list[int]]:
    config = config_from_env(
        {
            "NODENAME": "node-a",
            "CALICO_NODENAME_FILE": str(tmp_path / "nodename"),
            "IP": "autodetect",
            "TORTIE_RUN_DIR": str(tmp_path / "run"),
            **env,
        }
    )
    rc: list[int] = []
    thread = threading.Thread(target=lambda: rc.append(run_agent(config, store, LOG, stop, host)))
    thread.start()
    return thread, rc


def test_poll_interval_moves_the_node_and_the_bird_configuration(
    tmp_path: Path, bird: type[RecordingBird]
) -> None:
    store = MemoryDatastore()
    host = FakeHost(given=[v4("10.10.0.11")], default_routes={4})
    run_dir = tmp_path / "run"
    stop = threading.Event()
    thread, rc = start(store, tmp_path, host, stop, AUTODETECT_POLL_INTERVAL="50ms")
    try:
        wait_for("first configuration", lambda: bool(bird.instances and bird.instances[0].texts))
        fake = bird.instances[0]
        assert "router id 10.10.0.11;" in fake.texts[-1]
        assert Path(RunDir(str(run_dir)).agent_pid).exists()

        host.given = [v4("10.10.0.42")]  # the host's address moved
        wait_for("the Node to follow", lambda: node_ipv4(store) == "10.10.0.42/24")
        wait_for("BIRD to follow", lambda: "router id 10.10.0.42;" in fake.texts[-1])
        status = json.loads(Path(RunDir(str(run_dir)).agent_status).read_text())
        assert status["ipv4"] == "10.10.0.42/24" and status["routerID"] == "10.10.0.42"

        applied = len(fake.texts)
        peer = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": "node-b"},
            "spec": {"bgp": {"ipv4Address": "10.10.0.12/24"}},
        }
        store.create(keys.resource_key("nodes", "node-b"), json.dumps(peer))
        wait_for("a session to node-b", lambda: "neighbor 10.10.0.12" in fake.texts[-1])
        assert "source address 10.10.0.42;" in fake.texts[-1]
        time.sleep(0.3)  # more polls and wake-ups, nothing changed: nothing re-applied
        assert len(fake.texts) == applied + 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert rc == [0] and fake.stopped
    assert (
        not Path(RunDir(str(run_dir)).agent_pid).exists()
        and not Path(RunDir(str(run_dir)).agent_status).exists()
    )


def test_refused_configuration_is_not_retried_until_it_changes(
    tmp_path: Path, bird: type[RecordingBird]
) -> None:
    bird.accept = False  # as BIRD refusing the rendered text in 'bird -p'
    store = MemoryDatastore()
    host = FakeHost(given=[v4("10.10.0.11")], default_routes={4})
    stop = threading.Event()
    thread, rc = start(store, tmp_path, host, stop)
    try:
        wait_for("first configuration", lambda: bool(bird.instances and bird.instances[0].texts))
        fake = bird.instances[0]
        time.sleep(1.5)  # at least one more turn of the loop, nothing changed
        assert len(fake.texts) == 1
        peer = {
            "kind": "Node",
            "metadata": {"name": "node-b"},
            "spec": {"bgp": {"ipv4Address": "10.10.0.12/24"}},
        }
        store.create(keys.resource_key("nodes", "node-b"), json.dumps(peer))
        wait_for("the changed text to be offered", lambda: len(fake.texts) == 2)
        assert "neighbor 10.10.0.12" in fake.texts[-1]
    finally:
        stop.set()
        thread.join(timeout=10)
    assert rc == [0]
