"""Helpers for the node service fault tests: a ``tortie node serve-cni`` process, the
launchers as a runtime runs them, raw socket clients, and what the store holds.

Every process here is started by the test and stopped by its PID; nothing touches the
network (the IPAM plugin only).  Sockets live in a short directory under /tmp that other
uids may traverse (the uid test connects as 65534)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tortie.cni import thin
from tortie.datastore import keys
from tortie.datastore.backends import open_datastore
from tortie.datastore.config import DatastoreSettings
from tortie.model.ipam_records import decode_block

SRC = str(Path(__file__).resolve().parents[2] / "src")
PYTHON = sys.executable
NODE = "node-1"
NETWORK = "net1"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \[[A-Z]+\] ")


def store_env(settings: DatastoreSettings) -> dict[str, str]:
    """The environment that points the CLI (and ``serve-cni``) at ``settings``' store."""
    if settings.datastore_type == "sqlite":
        return {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(settings.sqlite_path)}
    return {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": ",".join(settings.etcd_endpoints)}


def store_conf(settings: DatastoreSettings) -> dict[str, Any]:
    """The network configuration keys that point the IPAM plugin at the same store."""
    if settings.datastore_type == "sqlite":
        return {"sqlite_path": str(settings.sqlite_path)}
    return {"datastore_type": "etcdv3", "etcd_endpoints": ",".join(settings.etcd_endpoints)}


def base_env() -> dict[str, str]:
    """A clean environment: nothing of the test runner's TORTIE_* or datastore settings."""
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "PYTHONPATH": SRC}


def cli(
    settings: DatastoreSettings, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``tortie ARGS`` of this worktree against ``settings``' store."""
    return subprocess.run(
        [PYTHON, "-m", "tortie.cli.main", *args],
        env={**base_env(), **store_env(settings)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Service:
    """One ``tortie node serve-cni --socket PATH`` process, its log in a file."""

    def __init__(
        self,
        path: str,
        settings: DatastoreSettings,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.settings = settings
        self.log_path = log_path
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process; do not wait for it (see ``ready``)."""
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [PYTHON, "-m", "tortie.cli.main", "node", "serve-cni", "--socket", self.path]
        env = {**base_env(), **store_env(self.settings), "PYTHONFAULTHANDLER": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        return self.proc

    def ready(self) -> bool:
        """True once this run of the process logged that it serves (it listens then)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"serve-cni exited {self.proc.returncode}: {self.log()}")
        return f"serving CNI on {self.path}" in self.log(since_start=True)

    def start(self, timeout: float = 20.0) -> Service:
        self.spawn()
        deadline = time.monotonic() + timeout
        while not self.ready():
            assert time.monotonic() < deadline, f"serve-cni did not start: {self.log()}"
            time.sleep(0.01)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM by PID; its exit code (fails when it does not exit in ``timeout``)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"serve-cni ignored SIGTERM for {timeout} s") from None

    def kill(self) -> None:
        """SIGKILL by PID (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()

    def log(self, since_start: bool = False) -> str:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data[self._log_start if since_start else 0 :].decode(errors="replace")

    def status(self, field: str) -> int:
        """A number from /proc/PID/status (``VmHWM`` in kB, ``Threads``)."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+)", text, re.M)
        assert match, field
        return int(match.group(1))

    def served(self) -> int:
        """Calls the finished runs of this service answered (from their last log line)."""
        return sum(
            int(n) for n in re.findall(r"CNI service stopped: served (\d+) calls", self.log())
        )


def cni_env(command: str, container: str, socket_path: str | None = None) -> dict[str, str]:
    env = {
        **base_env(),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": "/var/run/netns/none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }
    if socket_path is not None:
        env["TORTIE_CNI_SOCKET"] = socket_path
    return env


def launch(plugin: str, stdin: bytes, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [plugin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(stdin)
    proc.stdin.close()
    proc.stdin = None  # written: ``communicate`` only reads
    return proc


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def run_plugin(
    plugin: str, stdin: bytes, env: Mapping[str, str], timeout: float = 60
) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, stderr) of one launcher run."""
    return finish(launch(plugin, stdin, env), timeout)


def one_line_error(out: bytes) -> dict[str, Any]:
    """The CNI error a plugin printed: exactly one line of JSON with code and msg."""
    text = out.decode()
    assert text.endswith("\n") and text.count("\n") == 1, f"not one line: {text!r}"
    doc: dict[str, Any] = json.loads(text)
    assert isinstance(doc.get("code"), int) and doc.get("msg"), doc
    return doc


def ips_of(out: bytes) -> list[str]:
    return [ip["address"].split("/")[0] for ip in json.loads(out)["ips"]]


def raw_exchange(path: str, data: bytes, close_write: bool = True, timeout: float = 15) -> bytes:
    """Send ``data`` on a fresh connection and read until the service closes it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(data)
            if close_write:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # refused part-way: the answer is still there to read
        return read_to_eof(sock)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def service_error(answer: bytes) -> tuple[int, dict[str, Any]]:
    """(exit code, decoded CNI error) of a raw answer; the error must be one line."""
    decoded = thin.decode_answer(answer)
    assert decoded is not None, f"no complete answer: {answer[:200]!r}"
    code, out = decoded
    assert b"\n" not in out, out
    doc: dict[str, Any] = json.loads(out)
    return code, doc


def held(settings: DatastoreSettings) -> list[tuple[str, str | None]]:
    """(address, handle) of every allocation in the store, duplicates kept."""
    store = open_datastore(settings)
    try:
        out = []
        for version in (4, 6):
            for kv in store.list(keys.block_prefix(version)):
                block = decode_block(kv.key, kv.value)
                out += [(str(block.address(o)), a.handle_id) for o, a in block.allocated()]
        return out
    finally:
        store.close()


def handles(settings: DatastoreSettings) -> set[str]:
    store = open_datastore(settings)
    try:
        return {kv.key.rsplit("/", 1)[1] for kv in store.list(keys.handle_prefix())}
    finally:
        store.close()


def ipam_check(
    settings: DatastoreSettings, live: Sequence[str], tmp: Path
) -> tuple[int, dict[str, Any], str]:
    """``tortie ipam check --live`` with ``live`` as the runtime's containers on NODE:
    (exit code, JSON report, printed text)."""
    live_file = tmp / "live.json"
    report_file = tmp / "report.json"
    live_file.write_text(json.dumps([{"containerID": c, "ifname": "eth0"} for c in live]))
    proc = cli(
        settings, "ipam", "check", "--live", str(live_file), "--node", NODE,
        "-o", str(report_file), "--show-all-ips",
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc
    report: dict[str, Any] = json.loads(report_file.read_text())
    return proc.returncode, report, proc.stdout


def gc_conf(conf: Mapping[str, Any], live: Sequence[str]) -> dict[str, Any]:
    """A CNI GC request: the live attachments, leak grace period 0 (collect now)."""
    return {
        **conf,
        "ipam": {**conf["ipam"], "leak_grace_period": "0s"},
        "cni.dev/valid-attachments": [{"containerID": c, "ifname": "eth0"} for c in live],
    }


def non_log_lines(text: str) -> list[str]:
    """The lines of a serve-cni output that are not log records."""
    return [line for line in text.splitlines() if line.strip() and not LOG_LINE.match(line)]
