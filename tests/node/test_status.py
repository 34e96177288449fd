"""``parse_protocols`` / ``parse_routes`` on output captured from a real BIRD 2.0.12 in
network namespaces (tests/node/fixtures), the ``Mesh_`` name <-> address mapping, and
``health()`` on run directories without a running agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tortie.node.bird import protocol_name
from tortie.node.status import Route, health, parse_protocols, parse_routes
from tortie.rundir import RunDir

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_established_dual_stack_sessions() -> None:
    sessions = parse_protocols(fixture("protocols_dual_established.txt"))
    # device, direct, kernel and static protocols are not sessions
    assert [(s.peer, s.family, s.state, s.info) for s in sessions] == [
        ("10.99.0.2", 4, "up", "Established"),
        ("fd00:99::2", 6, "up", "Established"),
    ]
    assert all(s.established for s in sessions)
    assert sessions[0].since == "2026-11-29 01:31:44"
    assert sessions[0].peer_type == "node-to-node mesh"


def test_sessions_still_starting_are_not_established() -> None:
    sessions = parse_protocols(fixture("protocols_dual_starting.txt"))
    assert [(s.state, s.info) for s in sessions] == [("start", "Active"), ("start", "Active")]
    assert not any(s.established for s in sessions)


def test_session_info_keeps_every_word() -> None:
    sessions = parse_protocols(fixture("protocols_v4_reset.txt"))
    by_peer = {s.peer: s for s in sessions}
    assert by_peer["10.99.0.2"].established
    reset = by_peer["10.98.0.3"]
    assert reset.info == "Active Socket: Connection reset by peer"
    assert not reset.established


def test_no_sessions_in_empty_or_foreign_output() -> None:
    assert parse_protocols("") == []
    assert parse_protocols("BIRD 2.0.12 ready.\nName Proto Table State Since Info\n") == []
    # a BGP protocol not made by the agent is not a mesh session
    line = "peer_rr    BGP        ---        up     2026-11-29 01:31:44  Established"
    assert parse_protocols(line) == []


def test_routes_of_both_families() -> None:
    routes = parse_routes(fixture("routes_dual.txt"))
    assert routes == [
        Route("10.244.1.0/26", "10.99.0.1", "Mesh_10_99_0_1"),
        Route("10.244.2.7/32", "10.99.0.1", "Mesh_10_99_0_1"),
        Route("fd00:244:0:1::/122", "fd00:99::1", "Mesh_fd00_99__1"),
        Route("fd00:244:0:2::7/128", "fd00:99::1", "Mesh_fd00_99__1"),
    ]


def test_second_path_of_a_prefix_keeps_its_own_protocol() -> None:
    # add paths: BIRD prints the prefix once and leaves it out of further paths
    routes = parse_routes(fixture("routes_v4_two_paths.txt"))
    two = [r for r in routes if r.prefix == "10.244.9.9/32"]
    assert two == [
        Route("10.244.9.9/32", "10.98.0.3", "Mesh_10_98_0_3"),
        Route("10.244.9.9/32", "10.99.0.2", "Mesh_10_99_0_2"),
    ]
    assert len(routes) == 4


@pytest.mark.parametrize(
    ("address", "name", "family"),
    [
        ("10.0.0.2", "Mesh_10_0_0_2", 4),
        ("192.168.100.254", "Mesh_192_168_100_254", 4),
        ("fd00::2", "Mesh_fd00__2", 6),
        ("fd00:99::1", "Mesh_fd00_99__1", 6),
        ("::1", "Mesh___1", 6),
        ("fd00:1:2:3:4:5:6:7", "Mesh_fd00_1_2_3_4_5_6_7", 6),
        ("1:2:3::", "Mesh_1_2_3__", 6),
    ],
)
def test_mesh_name_round_trip(address: str, name: str, family: int) -> None:
    assert protocol_name(address) == name
    line = f"{name} BGP        ---        up     2026-11-29 01:31:44  Established"
    (session,) = parse_protocols(line)
    assert (session.peer, session.family) == (address, family)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_health_without_agent(tmp_path: Path) -> None:
    live, why = health(str(tmp_path), ready=False)
    assert not live
    assert "no node agent is running" in why and str(tmp_path) in why


def test_health_with_stale_agent_pid(tmp_path: Path) -> None:
    Path(RunDir(str(tmp_path)).agent_pid).write_text(str(dead_pid()))
    Path(RunDir(str(tmp_path)).agent_status).write_text(
        json.dumps({"node": "n1", "backend": "none"})
    )
    for ready in (False, True):
        ok, why = health(str(tmp_path), ready=ready)
        assert not ok and "no node agent is running" in why


def test_health_with_garbage_pid_file(tmp_path: Path) -> None:
    Path(RunDir(str(tmp_path)).agent_pid).write_text("not a pid\n")
    ok, _ = health(str(tmp_path), ready=False)
    assert not ok


def test_health_before_startup_finished(tmp_path: Path) -> None:
    Path(RunDir(str(tmp_path)).agent_pid).write_text(str(os.getpid()))
    ok, why = health(str(tmp_path), ready=False)
    assert not ok and "not finished startup" in why


def test_health_with_stale_bird_pid(tmp_path: Path) -> None:
    Path(RunDir(str(tmp_path)).agent_pid).write_text(str(os.getpid()))
    Path(RunDir(str(tmp_path)).agent_status).write_text(
        json.dumps({"node": "n1", "backend": "bird"})
    )
    (tmp_path / "bird.pid").write_text(str(dead_pid()))
    for ready in (False, True):
        ok, why = health(str(tmp_path), ready=ready)
        assert not ok and "BIRD of node n1 is not running" in why


def test_health_of_agent_without_routing(tmp_path: Path) -> None:
    Path(RunDir(str(tmp_path)).agent_pid).write_text(str(os.getpid()))
    Path(RunDir(str(tmp_path)).agent_status).write_text(
        json.dumps({"node": "n1", "backend": "none"})
    )
    assert health(str(tmp_path), ready=False) == (
        True,
        f"node agent of n1 is live (pid {os.getpid()})",
    )
    ok, why = health(str(tmp_path), ready=True)
    assert ok and "node n1 is ready" in why and "0 BGP sessions" in why
