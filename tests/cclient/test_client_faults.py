"""The compiled thin client against faults (issue 18), each run with the plain and the
sanitizer build: no service (missing socket, stale socket, ``none``), a listener that
never accepts (backlog full), answers cut off, too large or garbled; the bytes it sends
are the Python thin client's; exit codes and stdout are the service's."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cclient_helpers import SANITIZER_ENV, FakeService, answering, cni_error, install, run

from tortie.cni import thin
from tortie.cni.cclient import CONNECT_TIMEOUT, MAX_ANSWER
from tortie.cni.errors import DECODE_FAILURE, TRY_AGAIN_LATER
from tortie.rundir import RunDir

STDIN = b'{"cniVersion": "0.4.0", "name": "net1", "type": "calico-ipam"}'


def env(sock: str | None = None, command: str = "ADD", **extra: str) -> dict[str, str]:
    out = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", **extra}
    if sock is not None:
        out["TORTIE_CNI_SOCKET"] = sock
    return out


def test_the_request_is_the_python_thin_clients_byte_for_byte(
    client: Path, tmp_path: Path, sock_dir: Path
) -> None:
    bin_dir = install(client, tmp_path / "bin")
    path = str(sock_dir / "s.sock")
    with FakeService(path, answering(thin.encode_answer(0, b"{}"))) as svc:
        for name, plugin in (("calico-ipam", b"ipam"), ("calico", b"main")):
            e = env(path, CNI_ARGS='K8S_POD_NAME=a;X="q\\', EMPTY="")
            proc = run(bin_dir / name, STDIN + b"\0\xff", e)
            assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"{}\n", b""), proc
            sent = {k.encode(): v.encode() for k, v in {**SANITIZER_ENV, **e}.items()}
            assert svc.requests[-1] == thin.encode_request(plugin, sent, STDIN + b"\0\xff")


def test_exit_code_and_stdout_are_the_services(
    client: Path, tmp_path: Path, sock_dir: Path
) -> None:
    bin_dir = install(client, tmp_path / "bin")
    path = str(sock_dir / "s.sock")
    for code, body in ((0, b""), (3, b"not\nflat"), (1, b'{"code": 7}'), (255, b"x")):
        with FakeService(path, answering(thin.encode_answer(code, body))):
            proc = run(bin_dir / "calico-ipam", STDIN, env(path))
        assert proc.returncode == code, proc
        assert proc.stdout == (body + b"\n" if body else b""), proc


def test_no_service_runs_the_python_plugin_here(
    client: Path, tmp_path: Path, sock_dir: Path
) -> None:
    stale = sock_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # a socket file nobody listens on: ECONNREFUSED
    run_dir = sock_dir / "run"
    run_dir.mkdir()
    bin_dir = install(client, tmp_path / "bin", socket_path=str(sock_dir / "absent.sock"))
    cases = {
        "missing socket": {"TORTIE_CNI_SOCKET": str(sock_dir / "missing.sock")},
        "stale socket": {"TORTIE_CNI_SOCKET": str(stale)},
        "none": {"TORTIE_CNI_SOCKET": "none"},
        "empty": {"TORTIE_CNI_SOCKET": ""},
        "run dir without socket": {"TORTIE_RUN_DIR": str(run_dir)},
        "baked-in socket absent": {},
        "path too long": {"TORTIE_CNI_SOCKET": "/tmp/" + "x" * 200},
    }
    for what, extra in cases.items():
        for name in ("calico-ipam", "calico"):
            proc = run(bin_dir / name, STDIN, env(command="VERSION", **extra))
            assert proc.returncode == 0, (what, proc)
            assert "supportedVersions" in json.loads(proc.stdout), (what, proc)
    # The fallback is the in-process plugin: a real decode error of the IPAM plugin.
    proc = run(bin_dir / "calico-ipam", b"{not json", env(command="ADD", TORTIE_CNI_SOCKET="none"))
    assert cni_error(proc)["code"] == DECODE_FAILURE


def test_the_run_dir_socket_is_used_when_no_socket_is_named(
    client: Path, tmp_path: Path, sock_dir: Path
) -> None:
    bin_dir = install(client, tmp_path / "bin")
    path = RunDir(str(sock_dir)).cni_socket
    with FakeService(path, answering(thin.encode_answer(0, b"via run dir"))):
        proc = run(bin_dir / "calico", STDIN, env(TORTIE_RUN_DIR=str(sock_dir)))
    assert (proc.returncode, proc.stdout) == (0, b"via run dir\n"), proc
    baked = install(client, tmp_path / "baked", socket_path=path)
    with FakeService(path, answering(thin.encode_answer(0, b"baked in"))):
        proc = run(baked / "calico", STDIN, env())
    assert (proc.returncode, proc.stdout) == (0, b"baked in\n"), proc


def test_a_listener_that_never_accepts_gets_error_11_within_seconds(
    client: Path, tmp_path: Path, sock_dir: Path
) -> None:
    bin_dir = install(client, tmp_path / "bin")
    path = str(sock_dir / "jam.sock")
    jam = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    jam.bind(path)
    jam.listen(0)
    fillers = []
    try:
        while True:  # fill the backlog: the next connect would wait
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            fillers.append(s)
            try:
                s.connect(path)
            except BlockingIOError:
                break
            assert len(fillers) < 100, "the backlog never filled"
        began = time.monotonic()
        proc = run(bin_dir / "calico-ipam", STDIN, env(path), timeout=CONNECT_TIMEOUT + 20)
        took = time.monotonic() - began
    finally:
        for s in fillers:
            s.close()
        jam.close()
    doc = cni_error(proc)
    assert doc["code"] == TRY_AGAIN_LATER and doc["cniVersion"] == "0.4.0", doc
    assert "did not accept" in doc["msg"] and path in doc["msg"], doc
    assert CONNECT_TIMEOUT - 1 < took < CONNECT_TIMEOUT + 5, took


def cut_off(conn: socket.socket) -> None:
    conn.sendall(b"0 100\n" + b"y" * 10)


def hang_up(conn: socket.socket) -> None:
    conn.shutdown(socket.SHUT_RDWR)


FAULTS = {
    "cut off mid-body": (cut_off, "stopped before answering"),
    "closed without a word": (hang_up, "stopped before answering"),
    "oversized": (answering(b"0 %d\n" % (MAX_ANSWER + 1) + b"z" * 4096), "larger than 1 MiB"),
    "huge length": (answering(b"0 99999999\n"), "larger than 1 MiB"),
    "overlong header": (answering(b"0 99999999999999999999999\n"), "malformed"),
    "garbage header": (answering(b"HTTP/1.0 200 OK\r\n\r\n"), "malformed"),
    "no newline": (answering(b"0" * 200), "malformed"),
    "negative code": (answering(b"-1 2\nab"), "malformed"),
    "code over 255": (answering(b"256 2\nab"), "malformed"),
    "three fields": (answering(b"0 2 3\nab"), "malformed"),
    "trailing bytes": (answering(b"0 2\nabc"), "malformed"),
    "far more than announced": (answering(b"0 1\n" + b"x" * 5000), "malformed"),
    "more in the first read": (answering(b"0 1\nxy"), "malformed"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_bad_answer_is_error_11_in_one_line(
    client: Path, tmp_path: Path, sock_dir: Path, fault: str
) -> None:
    handler, said = FAULTS[fault]
    bin_dir = install(client, tmp_path / "bin")
    path = str(sock_dir / "bad.sock")
    with FakeService(path, handler):
        proc = run(bin_dir / "calico-ipam", STDIN, env(path))
    doc = cni_error(proc)
    assert doc["code"] == TRY_AGAIN_LATER and doc["cniVersion"] == "0.4.0", (fault, doc)
    assert said in doc["msg"] and path in doc["msg"], (fault, doc)
    assert proc.stderr == b"", proc.stderr


def test_an_answer_of_exactly_1_mib_is_printed(
    client: Path, tmp_path: Path, sock_dir: Path
) -> None:
    bin_dir = install(client, tmp_path / "bin")
    path = str(sock_dir / "big.sock")
    body = b"b" * MAX_ANSWER
    with FakeService(path, answering(thin.encode_answer(0, body))):
        proc = run(bin_dir / "calico-ipam", STDIN, env(path))
    assert (proc.returncode, proc.stdout) == (0, body + b"\n")


def test_an_answer_before_the_request_is_read_still_counts(
    client: Path, tmp_path: Path, sock_dir: Path
) -> None:
    """A service that refuses a too-large request answers and closes before reading it
    all (the kernel then resets the connection): the answer is printed."""
    bin_dir = install(client, tmp_path / "bin")
    path = str(sock_dir / "refuse.sock")
    refusal = thin.encode_answer(1, b'{"code": 6, "msg": "request larger than 1048576 bytes"}')
    with FakeService(path, answering(refusal), read_request=False):
        proc = run(bin_dir / "calico-ipam", b"x" * (4 << 20), env(path))
    assert cni_error(proc)["code"] == DECODE_FAILURE


def test_a_strange_cni_version_falls_back_to_the_latest(
    client: Path, tmp_path: Path, sock_dir: Path
) -> None:
    bin_dir = install(client, tmp_path / "bin")
    path = str(sock_dir / "v.sock")
    with FakeService(path, hang_up):
        for stdin in (b'{"cniVersion": "1\\"x"}', b'{"cniVersion": 4}', b"", b"\0" * 64):
            proc = run(bin_dir / "calico-ipam", stdin, env(path))
            assert cni_error(proc)["cniVersion"] == "1.1.0", stdin


def test_a_fallback_that_cannot_start_is_one_clear_line(client: Path, tmp_path: Path) -> None:
    from tortie.cni.install import configured_client

    plugin = tmp_path / "calico-ipam"
    plugin.write_bytes(configured_client(client.read_bytes(), "none", "/nonexistent/py", "/x"))
    plugin.chmod(0o755)
    doc = cni_error(run(plugin, STDIN, env()))
    assert "/nonexistent/py" in doc["msg"] and "install-cni" in doc["details"], doc
    unconfigured = run(client, STDIN, env("none"))  # straight from the build
    assert "none configured" in cni_error(unconfigured)["msg"]


def test_the_wire_constants_match_the_python_side() -> None:
    from tortie.cni.cclient import source_path
    from tortie.cni.service import MAX_REQUEST

    SOCKET_NAME = thin.SOCKET_FILE

    text = Path(source_path()).read_text()
    assert f'#define MAGIC "{thin.MAGIC.decode()}"' in text
    assert f'#define SOCKET_NAME "{SOCKET_NAME}"' in text
    assert os.path.basename(RunDir("/r").cni_socket) == SOCKET_NAME
    assert f"#define IO_TIMEOUT_S {int(thin.TIMEOUT)} " in text
    assert f"#define CONNECT_TIMEOUT_S {int(CONNECT_TIMEOUT)} " in text
    assert MAX_ANSWER == MAX_REQUEST == 1 << 20 and "(1u << 20)" in text
