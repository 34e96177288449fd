"""Real etcd servers for tests: one member or a 3-member cluster on loopback, plus TLS files.

Everything listens on 127.0.0.1 on free ports, lives in a caller-given temporary
directory, and is stopped by PID (SIGTERM, then SIGKILL).  Nothing here is pytest-specific
except ``require_etcd``, which skips when the etcd binary is not installed.

    certs = make_certs(tmp / "pki")                      # CA, server, client, expired client
    with EtcdCluster(tmp / "c", size=3) as cluster:      # starts and waits for /health
        cluster.members[0].kill(); cluster.members[0].restart()
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ETCD_BIN = "/usr/bin/etcd"
ETCDCTL_BIN = "/usr/bin/etcdctl"


def etcd_binary() -> str | None:
    if os.path.exists(ETCD_BIN):
        return ETCD_BIN
    return shutil.which("etcd")


def require_etcd() -> str:
    """The etcd binary, or skip the calling test with the reason printed."""
    import pytest

    binary = etcd_binary()
    if binary is None:
        pytest.skip("etcd not installed: apt-get install etcd-server")
    return binary


def free_ports(count: int) -> list[int]:
    """``count`` distinct currently-free TCP ports on 127.0.0.1."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_ports(1)[0]}"


# --------------------------------------------------------------------------- TLS files


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path
    other_ca: Path  # a CA that signed nothing here: "wrong CA"


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def make_certs(directory: Path) -> TlsFiles:
    """A CA, a server cert for 127.0.0.1/localhost, a client cert, an expired client cert
    (valid 2020-2021, signed with ``openssl ca -startdate/-enddate``) and an unrelated CA."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem",
                 "-days", "3650", "-subj", f"/CN=tortie test {name}", cwd=d)  # fmt: skip
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "server.ext"), ("client", "client.ext")):
        _openssl("req", "-new", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=tortie-{name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "365", "-extfile", ext, "-out", f"{name}.pem",
                 cwd=d)  # fmt: skip
    # openssl 3.0's x509 cannot backdate; `openssl ca` takes explicit start/end dates.
    (d / "newcerts").mkdir(exist_ok=True)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca = test_ca\n"
        f"[test_ca]\ndir = {d}\ndatabase = {d}/index.txt\nnew_certs_dir = {d}/newcerts\n"
        f"serial = {d}/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n"
        "[any]\ncommonName = supplied\n"
        "[client_ext]\nextendedKeyUsage = clientAuth\n"
    )
    _openssl("req", "-new", *_EC, "-keyout", "expired.key", "-out", "expired.csr",
             "-subj", "/CN=tortie-expired", cwd=d)  # fmt: skip
    _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
             "-in", "expired.csr", "-out", "expired.pem", "-notext", "-extensions", "client_ext",
             "-startdate", "20200101000000Z", "-enddate", "20210101000000Z", cwd=d)  # fmt: skip
    return TlsFiles(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        expired_cert=d / "expired.pem",
        expired_key=d / "expired.key",
        other_ca=d / "other-ca.pem",
    )


# --------------------------------------------------------------------------- servers


class EtcdMember:
    """One etcd process; its data directory survives stop/kill so ``restart`` rejoins."""

    def __init__(
        self,
        name: str,
        directory: Path,
        client_port: int,
        peer_port: int,
        initial_cluster: str,
        tls: TlsFiles | None = None,
    ) -> None:
        self.name = name
        self.directory = directory
        self.client_port = client_port
        self.peer_port = peer_port
        self.initial_cluster = initial_cluster
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    @property
    def log_path(self) -> Path:
        return self.directory / "etcd.log"

    def start(self) -> None:
        if self.pid is not None:
            return
        binary = etcd_binary() or ETCD_BIN
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            binary,
            "--name", self.name,
            "--data-dir", str(self.directory / "data"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"tortie-test-{self.directory.parent.name}",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
        ]  # fmt: skip
        if self.tls:
            cmd += [
                "--cert-file", str(self.tls.server_cert),
                "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca),
                "--client-cert-auth",
            ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL if it does not exit in ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL by PID (a crash: no graceful leader transfer)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return ctx

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            status, body = request(self, "GET", "/health", None, timeout=timeout)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200 and body.get("health") == "true"

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited: {self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"etcd {self.name} not healthy after {timeout} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def request(
    member: EtcdMember,
    method: str,
    path: str,
    body: dict[str, object] | None,
    timeout: float = 5.0,
    token: str | None = None,
) -> tuple[int, dict[str, object]]:
    """A raw JSON request to one member (for setup, independent of the code under test)."""
    conn: http.client.HTTPConnection
    if member.tls:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", member.client_port, timeout=timeout, context=member.ssl_context()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", member.client_port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, (json.loads(payload) if payload else {})
    finally:
        conn.close()


class EtcdCluster:
    """``size`` members on free loopback ports under ``directory``; a context manager."""

    def __init__(self, directory: Path, size: int = 1, tls: TlsFiles | None = None) -> None:
        self.directory = Path(directory)
        ports = free_ports(2 * size)
        names = [f"m{i}" for i in range(size)]
        initial = ",".join(f"{n}=http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names))
        self.members = [
            EtcdMember(n, self.directory / n, ports[2 * i], ports[2 * i + 1], initial, tls)
            for i, n in enumerate(names)
        ]

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(m.url for m in self.members)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        try:
            for m in self.members:
                m.start()
            for m in self.members:
                m.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        for m in self.members:
            if m.proc is not None:
                m.wait_healthy(timeout)

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def wipe(self) -> None:
        """Delete every key (revisions keep growing, as they would in production)."""
        for m in self.members:
            if m.pid is not None:
                status, body = request(
                    m, "POST", "/v3/kv/deleterange", {"key": "AA==", "range_end": "AA=="}
                )
                if status != 200:
                    raise RuntimeError(f"wipe failed: {body}")
                return
        raise RuntimeError("no etcd member running")

    def enable_auth(self, user: str, password: str) -> None:
        """Create ``root`` with ``password`` and a user with read-write on every key."""
        m = next(m for m in self.members if m.pid is not None)
        env = dict(os.environ, ETCDCTL_API="3")
        args = [ETCDCTL_BIN, f"--endpoints={m.url}"]
        if m.tls:
            args += [
                f"--cacert={m.tls.ca}",
                f"--cert={m.tls.client_cert}",
                f"--key={m.tls.client_key}",
            ]
        for cmd in (
            ["user", "add", f"root:{password}"],
            ["role", "add", "rw"],
            ["role", "grant-permission", "rw", "readwrite", "--prefix=true", ""],
            ["user", "add", f"{user}:{password}"],
            ["user", "grant-role", user, "rw"],
            ["auth", "enable"],
        ):
            subprocess.run(args + cmd, env=env, check=True, capture_output=True, timeout=30)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


__all__ = [
    "EtcdCluster",
    "EtcdMember",
    "TlsFiles",
    "b64",
    "closed_port_url",
    "free_ports",
    "make_certs",
    "request",
    "require_etcd",
]
