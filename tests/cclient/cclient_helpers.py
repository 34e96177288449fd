"""Helpers for the compiled thin client's tests: builds of ``tortie_cni.c`` (plain and
with the sanitizers), configured copies under plugin names, and a fake service on a
Unix socket that answers whatever a test tells it to."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tortie.cni.cclient import build, source_path
from tortie.cni.install import configured_client, interpreter_path, package_root

# A sanitizer report must not look like a plugin's exit status 1.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "exitcode=97:detect_leaks=0:abort_on_error=0",
    "UBSAN_OPTIONS": "halt_on_error=1:exitcode=98:print_stacktrace=1",
}


def require_compiler() -> str:
    cc = build.find_compiler()
    if cc is None:
        pytest.skip("no C compiler (cc/gcc) on PATH: the compiled client cannot be built")
    return cc


def compile_into(directory: Path, sanitized: bool) -> Path:
    out = directory / ("tortie-cni-client-asan" if sanitized else "tortie-cni-client")
    build.compile_client(source_path(), str(out), build.SANITIZE if sanitized else ())
    return out


def install(binary: Path, bin_dir: Path, socket_path: str = "/nonexistent/cni.sock") -> Path:
    """Configured copies of ``binary`` as ``calico-ipam`` and ``calico`` in ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    data = configured_client(binary.read_bytes(), socket_path, interpreter_path(), package_root())
    for name in ("calico-ipam", "calico"):
        path = bin_dir / name
        path.write_bytes(data)
        path.chmod(0o755)
    return bin_dir


def run(
    plugin: Path, stdin: bytes, env: Mapping[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(plugin)],
        input=stdin,
        env={**SANITIZER_ENV, **env},
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def cni_error(proc: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    """The one-line CNI error the client printed (exit status 1, clean stderr)."""
    assert proc.returncode == 1, proc
    text = proc.stdout.decode()
    assert text.endswith("\n") and text.count("\n") == 1, f"not one line: {text!r}"
    doc: dict[str, Any] = json.loads(text)
    assert isinstance(doc["code"], int) and doc["msg"], doc
    assert b"Sanitizer" not in proc.stderr and b"runtime error" not in proc.stderr, proc.stderr
    return doc


Handler = Callable[[socket.socket], None]


class FakeService:
    """Accepts connections on ``path`` and hands each to ``handler`` (in a thread);
    ``requests`` holds what each client sent before it shut its side."""

    def __init__(self, path: str, handler: Handler | None = None, read_request: bool = True):
        self.path = path
        self.handler = handler
        self.read_request = read_request
        self.requests: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> FakeService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        os.unlink(self.path)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                if self.read_request:
                    self.requests.append(read_to_eof(conn))
                if self.handler is not None:
                    with contextlib.suppress(OSError):
                        self.handler(conn)


def read_to_eof(conn: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def answering(data: bytes) -> Handler:
    def handler(conn: socket.socket) -> None:
        conn.sendall(data)

    return handler
