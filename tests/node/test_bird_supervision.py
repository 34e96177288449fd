"""One BIRD per run directory, whatever happened before (issue 15 item 5), with real BIRD 2
in network namespaces this module creates.

- ``tortie node run`` killed with SIGKILL leaves its BIRD running; the next agent on the
  same run directory adopts it: one BIRD afterwards, serving the new agent's config.
- A BIRD that keeps dying is restarted with growing delays (1, 2, 4 s between starts).
- ``apply`` on a dead BIRD starts it only when the back-off allows.
- A pid file naming some other process, or a process whose command line merely names the
  run directory's files, is neither adopted nor killed.
- Two BIRDs left on one run directory (the state the old supervisor produced), or one
  that does not answer on its socket, are stopped and replaced by one.

BIRD processes are counted by scanning /proc for command lines naming the run
directory's control socket (independently of the code under test).  ``Bird`` is driven
inside the namespace by bird_driver.py (a child process: BIRD is started by it and so in
the namespace); the agent runs as ``tortie node run``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tortie.datastore import keys
from tortie.datastore.sqlite import SqliteDatastore
from tortie.node.birdfind import names_run_dir, stat_fields, stop_left_behind
from tortie.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from netns import IP, Netns, NetnsPool, require_root

BIN = Path(sys.executable).parent
DRIVER = Path(__file__).resolve().parent / "bird_driver.py"
TICK = os.sysconf("SC_CLK_TCK")


def _bird_binaries() -> tuple[str, str]:
    found = []
    for tool in ("bird", "birdc"):
        path = next(
            (
                f"{d}/{tool}"
                for d in ("/usr/sbin", "/usr/bin", "/sbin")
                if os.access(f"{d}/{tool}", os.X_OK)
            ),
            None,
        )
        if path is None:
            pytest.skip(f"needs BIRD 2 ({tool} not found): apt-get install bird2")
        found.append(path)
    return found[0], found[1]


@pytest.fixture(scope="module")
def pool() -> Iterator[NetnsPool]:
    require_root()
    _bird_binaries()
    with NetnsPool() as p:
        yield p


# ------------------------------------------------------------------ helpers


def wait_for(
    what: str, cond: Callable[[], bool], timeout: float = 20, detail: Callable[[], str] = lambda: ""
) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{detail()}")
        time.sleep(0.02)
    return time.monotonic() - start


def birds_for(socket: str) -> list[int]:
    """Live BIRD processes whose command line names ``socket`` (zombies have none)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == b"bird" and socket.encode() in argv:
            pids.append(int(entry.name))
    return sorted(pids)


def started_at(pid: int) -> float:
    """When ``pid`` started, seconds after boot (10 ms resolution)."""
    return stat_fields(Path(f"/proc/{pid}/stat").read_text())[1] / TICK


def birdc(socket: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_bird_binaries()[1], "-s", socket, *command],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def router_id(socket: str) -> str | None:
    out = birdc(socket, "show", "status").stdout
    return next((ln.split()[-1] for ln in out.splitlines() if "Router ID is" in ln), None)


def config(n: int) -> str:
    """A configuration told apart by its router id 10.0.0.n; touches nothing."""
    return f"router id 10.0.0.{n};\nprotocol device {{}}\n"


def start_bird_by_hand(ns: Netns, files: RunDir) -> subprocess.Popen[bytes]:
    """A BIRD as a previous agent left it: same files, not the driver's child."""
    proc = subprocess.Popen(
        [
            str(IP), "netns", "exec", ns.name, _bird_binaries()[0], "-f",
            "-c", files.bird_config, "-s", files.bird_socket, "-P", files.bird_pid,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for("the hand-started BIRD to answer", lambda: router_id(files.bird_socket) is not None)
    return proc


class Driver:
    """One ``Bird`` in a process inside ``ns`` (bird_driver.py)."""

    def __init__(self, ns: Netns, run_dir: Path, supervise_every: float) -> None:
        self.run_dir = run_dir
        self.files = RunDir(str(run_dir))
        self.texts = 0
        self.proc = subprocess.Popen(
            [str(IP), "netns", "exec", ns.name, sys.executable, str(DRIVER), str(run_dir),
             str(supervise_every)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.first = self._read()

    def log(self) -> str:
        path = self.run_dir / "driver.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _read(self, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        assert line, f"the driver did not answer (rc {self.proc.poll()})\n{self.log()}"
        doc: dict[str, Any] = json.loads(line)
        return doc

    def _send(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read()

    def apply(self, text: str) -> dict[str, Any]:
        self.texts += 1
        path = self.run_dir / f"text-{self.texts}.cfg"
        path.write_text(text)
        return self._send(f"apply {path}")

    def state(self) -> dict[str, Any]:
        return self._send("state")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the driver stops its BIRD and exits
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class Lab:
    """A namespace, a run directory, and drivers of ``Bird`` on it."""

    def __init__(self, ns: Netns, run_dir: Path) -> None:
        self.ns = ns
        self.files = RunDir(str(run_dir))
        self.run_dir = run_dir
        self.drivers: list[Driver] = []

    def driver(self, supervise_every: float) -> Driver:
        driver = Driver(self.ns, self.run_dir, supervise_every)
        self.drivers.append(driver)
        return driver

    def bird_by_hand(self, n: int) -> subprocess.Popen[bytes]:
        """A BIRD as a previous agent left it (config 10.0.0.n): the run directory's
        files, and not the driver's child."""
        Path(self.files.bird_config).write_text(config(n))
        return start_bird_by_hand(self.ns, self.files)


@pytest.fixture
def lab(pool: NetnsPool, tmp_path: Path) -> Iterator[Lab]:
    ns = pool.new()
    ns.ip("link", "set", "lo", "up")
    lab = Lab(ns, tmp_path)
    yield lab
    for driver in lab.drivers:
        driver.close()
    for pid in birds_for(lab.files.bird_socket):  # a failed test's leftovers, by pid
        os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ pure parts


def test_a_command_line_is_ours_only_with_both_our_socket_and_our_config() -> None:
    files = RunDir("/run/x")
    ours = ["bird", "-f", "-c", files.bird_config, "-s", files.bird_socket, "-P", "p"]
    assert names_run_dir(ours, files.bird_socket, files.bird_config)
    other = RunDir("/run/y")
    assert not names_run_dir(ours, other.bird_socket, other.bird_config)
    assert not names_run_dir(
        ["bird", "-s", files.bird_socket], files.bird_socket, files.bird_config
    )
    assert not names_run_dir(
        [files.bird_socket, files.bird_config], files.bird_socket, files.bird_config
    )


def test_stat_fields_survive_a_command_name_with_spaces_and_parentheses() -> None:
    line = "42 (a b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0"
    assert stat_fields(line) == ("S", 98765)


# ------------------------------------------------------------------ the agent


def test_sigkilled_agent_then_a_new_one_leaves_one_bird_serving_the_new_config(
    pool: NetnsPool, tmp_path: Path
) -> None:
    if not (BIN / "tortie").exists():
        pytest.skip(f"{BIN}/tortie is not installed (pip install -e .)")
    ns = pool.new()
    ns.ip("link", "set", "lo", "up")
    ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    ns.ip("addr", "add", "10.10.0.11/24", "dev", "eth0")
    ns.ip("link", "set", "eth0", "up")
    ns.ip("link", "set", "eth1", "up")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    files = RunDir(str(run_dir))
    db = str(tmp_path / "tortie.db")
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "DATASTORE_TYPE": "sqlite",
        "SQLITE_PATH": db,
        "NODENAME": "node-a",
        "CALICO_NODENAME_FILE": files.nodename,
        "TORTIE_RUN_DIR": str(run_dir),
        "IP": "autodetect",
        "IP6": "none",
        "CALICO_IPV4POOL_CIDR": "10.244.0.0/16",
        "CALICO_IPV6POOL_CIDR": "none",
        "TORTIE_BGP_CONNECT_RETRY_TIME": "1",
        "TORTIE_CNI_SERVICE": "false",
    }
    log_path = tmp_path / "agents.log"

    def agent() -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [str(IP), "netns", "exec", ns.name, "env", "-i",
                 *(f"{k}={v}" for k, v in env.items()), str(BIN / "tortie"), "node", "run"],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def log() -> str:
        return log_path.read_text(errors="replace")

    def one_bird_answering() -> bool:
        return len(birds_for(files.bird_socket)) == 1 and router_id(files.bird_socket) is not None

    first = agent()
    second = None
    try:
        wait_for("the first agent's BIRD", one_bird_answering, detail=log)
        (bird_pid,) = birds_for(files.bird_socket)
        first.kill()  # SIGKILL: no clean-up at all
        first.wait(timeout=10)
        time.sleep(0.5)
        assert birds_for(files.bird_socket) == [bird_pid], "BIRD should outlive a SIGKILLed agent"

        store = SqliteDatastore(db)  # a new peer: the next agent renders another text
        peer = {"kind": "Node", "metadata": {"name": "node-b"},
                "spec": {"bgp": {"ipv4Address": "10.10.0.12/24"}}}  # fmt: skip
        store.create(keys.resource_key("nodes", "node-b"), json.dumps(peer))
        store.close()

        second = agent()

        def serves_new_config() -> bool:
            out = birdc(files.bird_socket, "show", "protocols").stdout
            return "Mesh_10_10_0_12" in out

        wait_for("BIRD serving the second agent's configuration", serves_new_config, detail=log)
        counts = []
        for _ in range(15):  # through several turns of the agent's loop
            counts.append(len(birds_for(files.bird_socket)))
            time.sleep(0.2)
        assert counts == [1] * 15, f"BIRDs for the run directory over 3 s: {counts}\n{log()}"
        assert birds_for(files.bird_socket) == [bird_pid], "adopted, not replaced"
        assert f"adopted BIRD (pid {bird_pid})" in log()
        assert serves_new_config()

        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0, log()
        assert birds_for(files.bird_socket) == []
        assert not os.path.exists(files.bird_socket) and not os.path.exists(files.bird_pid)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid in birds_for(files.bird_socket):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ back-off


def test_a_bird_that_keeps_dying_is_restarted_with_growing_delays(lab: Lab) -> None:
    driver = lab.driver(0.02)
    socket = lab.files.bird_socket
    assert driver.apply(config(1))["running"]
    wait_for("BIRD", lambda: len(birds_for(socket)) == 1, detail=driver.log)
    pid = birds_for(socket)[0]
    starts = [started_at(pid)]
    for _ in range(3):
        os.kill(pid, signal.SIGKILL)  # as soon as it is up
        old = pid

        def restarted(old: int = old) -> bool:
            now = birds_for(socket)
            return len(now) == 1 and now != [old]

        wait_for("the restarted BIRD", restarted, timeout=15, detail=driver.log)
        pid = birds_for(socket)[0]
        starts.append(started_at(pid))
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(starts)]
    print(f"gaps between starts: {gaps} s")
    for gap, want in zip(gaps, (1.0, 2.0, 4.0), strict=True):
        assert want - 0.05 <= gap < want + 1.0, f"gaps {gaps}, want about 1, 2, 4"
    assert driver.state()["restarts"] == 3
    wait_for("the last BIRD to answer", lambda: router_id(socket) == "10.0.0.1")


def test_apply_on_a_dead_bird_waits_for_the_back_off(lab: Lab) -> None:
    driver = lab.driver(0)  # supervise never runs: only apply can start BIRD
    socket = lab.files.bird_socket
    assert driver.apply(config(1))["running"]
    wait_for("BIRD", lambda: len(birds_for(socket)) == 1, detail=driver.log)
    time.sleep(1.2)  # the first back-off (1 s) has passed
    os.kill(birds_for(socket)[0], signal.SIGKILL)
    wait_for("BIRD gone", lambda: birds_for(socket) == [])
    answer = driver.apply(config(2))
    assert answer["applied"] and answer["running"], "due: started at once"
    second = answer["pid"]
    seen = time.monotonic()
    wait_for("the second BIRD", lambda: birds_for(socket) == [second])
    second_start = started_at(second)
    os.kill(second, signal.SIGKILL)
    wait_for("BIRD gone", lambda: birds_for(socket) == [])
    for n in (3, 4, 5):  # within the next 2 s: accepted, but nothing starts
        answer = driver.apply(config(n))
        assert answer["applied"] and not answer["running"], answer
        assert birds_for(socket) == []
        time.sleep(0.3)
    assert time.monotonic() - seen < 2.0, "the machine was too slow for this test's timing"
    time.sleep(max(0.0, seen + 2.05 - time.monotonic()))
    answer = driver.apply(config(6))
    assert answer["applied"] and answer["running"], answer
    third = answer["pid"]
    wait_for("the third BIRD", lambda: birds_for(socket) == [third])
    gap = started_at(third) - second_start
    print(f"second to third start: {gap:.2f} s")
    assert gap >= 2.0 - 0.05
    wait_for("the third BIRD serving the last text", lambda: router_id(socket) == "10.0.0.6")
    assert driver.state()["restarts"] == 2
    assert "starts with the new configuration in" in driver.log()


# ------------------------------------------------------------------ what is found at start


def test_a_stale_pid_file_naming_another_process_is_left_alone(lab: Lab) -> None:
    files = lab.files
    sleep = subprocess.Popen(["sleep", "60"])
    impostor = subprocess.Popen(  # names our socket and config, but is no BIRD
        [sys.executable, "-c", "import time; time.sleep(60)", "-c", files.bird_config,
         "-s", files.bird_socket],
    )  # fmt: skip
    try:
        Path(files.bird_pid).write_text(f"{sleep.pid}\n")
        driver = lab.driver(0.05)
        assert driver.first["adopted"] is False and driver.first["pid"] is None
        answer = driver.apply(config(1))
        assert answer["running"] and answer["pid"] not in (sleep.pid, impostor.pid)
        wait_for("one BIRD answering", lambda: router_id(files.bird_socket) == "10.0.0.1")
        assert birds_for(files.bird_socket) == [answer["pid"]]
        time.sleep(0.5)
        assert sleep.poll() is None and impostor.poll() is None, "killed a process not ours"
        assert Path(files.bird_pid).read_text().strip() == str(answer["pid"])
        assert f"names pid {sleep.pid}, which is no BIRD of this run directory" in driver.log()
    finally:
        for proc in (sleep, impostor):
            proc.kill()
            proc.wait()


def test_an_answering_bird_left_behind_is_adopted_and_its_death_seen(lab: Lab) -> None:
    files = lab.files
    left = lab.bird_by_hand(1)
    try:
        driver = lab.driver(0.05)
        assert driver.first["adopted"] is True and driver.first["pid"] == left.pid
        answer = driver.apply(config(2))
        assert answer["applied"] and answer["pid"] == left.pid
        assert router_id(files.bird_socket) == "10.0.0.2", "reconfigured through birdc"
        assert birds_for(files.bird_socket) == [left.pid]
        left.send_signal(signal.SIGKILL)  # not reaped yet: a zombie, which is dead too

        def replaced() -> bool:
            now = birds_for(files.bird_socket)
            return len(now) == 1 and now != [left.pid]

        wait_for("the driver's own BIRD", replaced, timeout=10, detail=driver.log)
        wait_for("it serving the last text", lambda: router_id(files.bird_socket) == "10.0.0.2")
        assert driver.state()["restarts"] == 1
    finally:
        if left.poll() is None:
            left.kill()
        left.wait()


def test_two_birds_left_behind_are_both_replaced_by_one(lab: Lab) -> None:
    files = lab.files
    first = lab.bird_by_hand(1)
    os.unlink(files.bird_socket)  # as the old supervisor did before a restart
    second = lab.bird_by_hand(1)
    try:
        assert birds_for(files.bird_socket) == sorted([first.pid, second.pid])
        driver = lab.driver(0.05)
        assert driver.first["adopted"] is False
        first.wait(timeout=15)
        second.wait(timeout=15)
        answer = driver.apply(config(2))
        assert answer["running"]
        wait_for("the new BIRD answering", lambda: router_id(files.bird_socket) == "10.0.0.2")
        assert birds_for(files.bird_socket) == [answer["pid"]]
        assert "2 run for it" in driver.log()
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_a_bird_that_does_not_answer_is_replaced(lab: Lab) -> None:
    files = lab.files
    left = lab.bird_by_hand(1)
    left.send_signal(signal.SIGSTOP)  # wedged: alive, silent
    try:
        driver = lab.driver(0.05)
        assert driver.first["adopted"] is False
        left.wait(timeout=15)
        assert "does not answer on its control socket" in driver.log()
        answer = driver.apply(config(2))
        assert answer["running"] and answer["pid"] != left.pid
        wait_for("the new BIRD answering", lambda: router_id(files.bird_socket) == "10.0.0.2")
        assert birds_for(files.bird_socket) == [answer["pid"]]
    finally:
        if left.poll() is None:
            left.kill()
        left.wait()


def test_an_agent_without_bird_stops_the_one_left_behind(lab: Lab) -> None:
    files = lab.files
    left = lab.bird_by_hand(1)
    sleep = subprocess.Popen(["sleep", "60"])  # and the pid file names something else
    Path(files.bird_pid).write_text(f"{sleep.pid}\n")
    try:
        assert stop_left_behind(str(lab.run_dir), logging.getLogger("test")) == 1
        left.wait(timeout=15)
        assert birds_for(files.bird_socket) == [] and sleep.poll() is None
        assert stop_left_behind(str(lab.run_dir), logging.getLogger("test")) == 0
    finally:
        for proc in (left, sleep):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
