"""Fuzz of the answer side: a fake service sends generated answers (valid, truncated,
oversized, malformed); the compiled client (plain and sanitized) never crashes and
prints either exactly the body with the service's exit code, or one CNI error 11."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cclient_helpers import FakeService, cni_error, install, run

from tortie.cni import thin
from tortie.cni.cclient import MAX_ANSWER
from tortie.cni.errors import TRY_AGAIN_LATER

STDIN = b'{"cniVersion": "1.0.0", "name": "net1"}'


def valid() -> st.SearchStrategy[bytes]:
    return st.builds(
        thin.encode_answer, st.integers(0, 255), st.binary(max_size=2048) | st.just(b"")
    )


def mangled() -> st.SearchStrategy[bytes]:
    """Valid answers cut short, with bytes added or flipped, or headers made up."""
    cut = st.tuples(valid(), st.integers(0, 2100)).map(lambda t: t[0][: t[1]])
    extended = st.tuples(valid(), st.binary(min_size=1, max_size=16)).map(lambda t: t[0] + t[1])
    flipped = st.tuples(valid(), st.integers(0, 40), st.integers(0, 255)).map(
        lambda t: t[0][: t[1]] + bytes([t[2]]) + t[0][t[1] + 1 :]
    )
    header = st.tuples(
        st.text("0123456789 -+x\t", max_size=30).map(str.encode),
        st.sampled_from([b"\n", b"\r\n", b""]),
        st.binary(max_size=64),
    ).map(b"".join)
    lengths = st.tuples(st.integers(0, 300), st.integers(MAX_ANSWER - 2, 10 * MAX_ANSWER)).map(
        lambda t: b"%d %d\n" % t + b"q" * 100
    )
    return cut | extended | flipped | header | lengths | st.binary(max_size=256)


def test_any_answer_gives_the_body_or_error_11(
    client: Path, tmp_path: Path, sock_dir: Path
) -> None:
    bin_dir = install(client, tmp_path / "bin")
    path = str(sock_dir / "fuzz.sock")
    pending: list[bytes] = []

    def reply(conn: socket.socket) -> None:
        conn.sendall(pending.pop())

    with FakeService(path, reply) as svc:

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(valid() | mangled())
        def check(answer: bytes) -> None:
            pending.append(answer)
            proc = run(bin_dir / "calico-ipam", STDIN, {"TORTIE_CNI_SOCKET": path})
            assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc}"
            assert proc.stderr == b"", proc.stderr
            decoded = thin.decode_answer(answer)
            if decoded is not None and decoded[0] <= 255 and len(decoded[1]) <= MAX_ANSWER:
                code, body = decoded
                assert proc.returncode == code, (answer, proc)
                assert proc.stdout == (body + b"\n" if body else b""), (answer, proc)
            else:
                doc = cni_error(proc)
                assert doc["code"] == TRY_AGAIN_LATER and doc["cniVersion"] == "1.0.0", doc
                json.dumps(doc)

        check()
        assert len(svc.requests) >= 150
