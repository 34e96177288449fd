"""The node service's call queue and shutdown over real sockets: first come, first served
per container, one worker per container, hung-up clients dropped, a drained stop that
closes nothing under a running call, workers stranded in a pod's namespace retired, and
the thin client's bounded connect (a real launcher process against a full backlog)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cni"))
from cni_helpers import cni_env

from tortie.cni import thin, wire
from tortie.cni.calls import netns_identity
from tortie.cni.install import write_executables
from tortie.cni.service import CniService, Stores
from tortie.rundir import RunDir


class Recorder:
    """A runner in place of ``run_plugin``: records (container, verb, thread, netns) in
    the order calls start; ``hold`` blocks calls of a container until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[tuple[str, str]] = []
        self.finished: list[tuple[str, str, float]] = []
        self.threads: list[tuple[str, str]] = []
        self.where: list[tuple[int, int] | None] = []
        self.gates: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}
        self.concurrent: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.on_run: Callable[[str, str], None] | None = None

    def hold(self, cid: str) -> threading.Event:
        self.entered[cid] = threading.Event()
        gate = self.gates[cid] = threading.Event()
        return gate

    def __call__(self, _plugin: Any, _stdin: bytes, env: dict[str, str], **_: Any) -> Any:
        cid, verb = env.get("CNI_CONTAINERID", ""), env.get("CNI_COMMAND", "")
        with self.lock:
            self.started.append((cid, verb))
            self.threads.append((cid, threading.current_thread().name))
            self.concurrent[cid] = self.concurrent.get(cid, 0) + 1
            self.peak[cid] = max(self.peak.get(cid, 0), self.concurrent[cid])
        if cid in self.entered:
            self.entered[cid].set()
        gate = self.gates.get(cid)
        if gate is not None:
            assert gate.wait(30)
        if self.on_run is not None:
            self.on_run(cid, verb)
        with self.lock:
            self.where.append(netns_identity())  # where the worker is when the call ends
            self.concurrent[cid] -= 1
            self.finished.append((cid, verb, time.monotonic()))
        return 0, json.dumps({"cid": cid, "verb": verb})


class ClosingStores(Stores):
    def __init__(self) -> None:
        super().__init__(None)
        self.closed_at: float | None = None

    def close(self) -> None:
        self.closed_at = time.monotonic()
        super().close()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def svc(tmp_path: Path, rec: Recorder) -> Iterator[CniService]:
    log = logging.getLogger(f"test.queue.{uuid.uuid4().hex[:6]}")
    log.setLevel(logging.INFO)
    service = CniService(
        str(tmp_path / "cni.sock"), ClosingStores(), log=log, workers=4, runner=rec
    )
    service.start()
    yield service
    for gate in rec.gates.values():
        gate.set()
    service.stop(5.0)


def env_of(verb: str, cid: str) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in cni_env(verb, container=cid).items()}


def send_async(path: str, verb: str, cid: str, answers: list[Any]) -> threading.Thread:
    def go() -> None:
        answers.append(thin.call(path, b"ipam", env_of(verb, cid), b"{}"))

    t = threading.Thread(target=go)
    t.start()
    return t


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_add_del_add_of_one_container_keep_their_arrival_order(
    svc: CniService, rec: Recorder
) -> None:
    """The review's case, repeated with other containers' calls racing alongside: an ADD
    runs long, the runtime sends DEL, then retries ADD; they run ADD, DEL, ADD."""
    for round_ in range(5):
        cid = f"pod-{round_}"
        gate = rec.hold(cid)
        answers: list[Any] = []
        threads = [send_async(svc.path, "ADD", cid, answers)]
        assert rec.entered[cid].wait(10)
        noise = [send_async(svc.path, "ADD", f"other-{round_}-{i}", answers) for i in range(12)]
        threads.append(send_async(svc.path, "DEL", cid, answers))
        wait_for(lambda: svc.queue.waiting(cid) == 1)  # noqa: B023
        threads.append(send_async(svc.path, "ADD", cid, answers))
        wait_for(lambda: svc.queue.waiting(cid) == 2)  # noqa: B023
        gate.set()
        for t in threads + noise:
            t.join(30)
        assert [v for c, v in rec.started if c == cid] == ["ADD", "DEL", "ADD"]
        assert all(a is not None and a[0] == 0 for a in answers)


def test_one_container_cannot_take_every_worker(svc: CniService, rec: Recorder) -> None:
    """Forty retries of one stuck container occupy one worker; another container's call
    is answered at once."""
    gate = rec.hold("stuck")
    answers: list[Any] = []
    retries = [send_async(svc.path, "ADD", "stuck", answers) for _ in range(40)]
    wait_for(lambda: svc.queue.waiting("stuck") == 39)
    began = time.monotonic()
    answer = thin.call(svc.path, b"ipam", env_of("ADD", "free"), b"{}")
    assert answer is not None and answer[0] == 0
    assert time.monotonic() - began < 2.0
    assert rec.peak["stuck"] == 1
    gate.set()
    for t in retries:
        t.join(30)
    assert rec.peak["stuck"] == 1 and len(answers) == 40


def test_a_call_whose_client_hung_up_is_dropped_before_it_starts(
    svc: CniService, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    gate = rec.hold("c1")
    answers: list[Any] = []
    first = send_async(svc.path, "ADD", "c1", answers)
    assert rec.entered["c1"].wait(10)
    quitter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    quitter.connect(svc.path)
    quitter.sendall(wire.encode_request(b"ipam", env_of("DEL", "c1"), b"{}"))
    quitter.shutdown(socket.SHUT_WR)
    wait_for(lambda: svc.queue.waiting("c1") == 1)
    quitter.close()  # the runtime killed the plugin: nobody reads this answer
    with caplog.at_level(logging.INFO):
        gate.set()
        first.join(30)
        wait_for(lambda: svc.queue.dropped == 1)
    assert rec.started == [("c1", "ADD")]  # the DEL never ran
    assert any("hung up before it started; dropped" in r.message for r in caplog.records)
    assert answers and answers[0] is not None and answers[0][0] == 0


def test_stop_drains_running_and_queued_calls_before_the_stores_close(
    tmp_path: Path, rec: Recorder
) -> None:
    stores = ClosingStores()
    service = CniService(str(tmp_path / "s.sock"), stores, workers=2, runner=rec)
    service.start()
    gate = rec.hold("slow")
    answers: list[Any] = []
    threads = [send_async(service.path, "ADD", "slow", answers)]
    assert rec.entered["slow"].wait(10)
    threads.append(send_async(service.path, "DEL", "slow", answers))
    wait_for(lambda: service.queue.waiting("slow") == 1)
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(service.stop(10.0)))
    stopper.start()
    wait_for(lambda: not os.path.exists(service.path))  # accepting stopped at once
    assert thin.call(service.path, b"ipam", env_of("ADD", "late"), b"{}") is None
    time.sleep(0.3)
    assert stopper.is_alive()  # still draining: the ADD runs
    gate.set()
    stopper.join(15)
    assert stopped == [True]
    stores.close()  # what NodeService.stop does after a True
    assert stores.closed_at is not None
    assert [v for _, v, _ in rec.finished] == ["ADD", "DEL"]
    assert max(t for _, _, t in rec.finished) <= stores.closed_at
    for t in threads:
        t.join(10)
    assert [a[0] for a in answers] == [0, 0]


def test_a_bounded_drain_answers_unstarted_calls_and_closes_nothing_under_a_running_one(
    tmp_path: Path, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    from tortie.cni.host import NodeService

    stores = ClosingStores()
    log = logging.getLogger("test.queue.bounded")
    service = CniService(str(tmp_path / "s.sock"), stores, log=log, workers=2, runner=rec)
    service.start()
    gate = rec.hold("slow")
    answers: list[Any] = []
    threads = [send_async(service.path, "ADD", "slow", answers)]
    assert rec.entered["slow"].wait(10)
    threads.append(send_async(service.path, "DEL", "slow", answers))
    wait_for(lambda: service.queue.waiting("slow") == 1)
    with caplog.at_level(logging.INFO):
        assert NodeService(service, stores, log).stop(0.3) is False
    assert stores.closed_at is None  # the ADD still runs: its store stays open
    threads[1].join(10)
    deleted = answers[0]
    assert deleted is not None and json.loads(deleted[1])["code"] == 11  # DEL: try again
    gate.set()
    threads[0].join(10)
    assert answers[1] is not None and answers[1][0] == 0  # the running ADD finished
    assert rec.started == [("slow", "ADD")]
    assert not [r for r in caplog.records if "Cancelled" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a network namespace")
def test_a_worker_left_in_a_pod_namespace_is_retired_and_replaced(
    svc: CniService, rec: Recorder
) -> None:
    from tortie.dataplane.netns import open_netns, setns

    name = f"tortie-q-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        fd = open_netns(f"/var/run/netns/{name}")

        def strand(cid: str, _verb: str) -> None:
            if cid == "stranded":
                setns(fd, name)  # and never steps back: a dataplane fault at that seam

        rec.on_run = strand
        home = netns_identity()
        answer = thin.call(svc.path, b"ipam", env_of("ADD", "stranded"), b"{}")
        assert answer is not None and answer[0] == 0
        wait_for(lambda: svc.queue.retired == 1)
        wait_for(lambda: svc.queue.workers == 4)  # replaced
        stranded_thread = rec.threads[0][1]
        for i in range(12):  # more calls than workers: every worker serves one
            answer = thin.call(svc.path, b"ipam", env_of("ADD", f"after-{i}"), b"{}")
            assert answer is not None and answer[0] == 0
        assert rec.where[0] != home  # the fault really stranded that worker
        assert all(w == home for w in rec.where[1:])
        assert all(t != stranded_thread for _, t in rec.threads[1:])
        assert svc.queue.retired == 1  # its replacement started in the host's namespace
        os.close(fd)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_a_backlog_that_never_drains_gives_error_11_within_seconds(tmp_path: Path) -> None:
    """A listening socket that never accepts, its backlog full: the launcher (a real
    plugin process) answers CNI error 11 naming the socket, instead of blocking."""
    path = str(tmp_path / "stalled.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    fill: list[socket.socket] = []
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            s.close()
            break
        fill.append(s)
    bin_dir = tmp_path / "bin"
    write_executables(str(bin_dir), path)
    began = time.monotonic()
    proc = subprocess.run(
        [str(bin_dir / "calico-ipam")],
        input=b'{"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "calico-ipam"}}',
        env={"PATH": os.environ["PATH"], **cni_env("ADD", container="c")},
        capture_output=True,
        timeout=60,
    )
    took = time.monotonic() - began
    for s in fill:
        s.close()
    listener.close()
    assert proc.returncode == 1, proc
    doc = json.loads(proc.stdout)
    assert doc["code"] == 11 and path in doc["msg"] and "restart" in doc["msg"], doc
    assert thin.CONNECT_TIMEOUT - 0.5 < took < thin.CONNECT_TIMEOUT + 5


def test_the_wire_module_is_shared_and_names_the_run_directory_socket() -> None:
    assert thin.encode_request is wire.encode_request
    assert thin.decode_answer is wire.decode_answer
    assert thin.socket_path({b"TORTIE_RUN_DIR": b"/r"}, "/d") == RunDir("/r").cni_socket
    assert RunDir().cni_socket == thin.LAUNCHER_SOCKET
