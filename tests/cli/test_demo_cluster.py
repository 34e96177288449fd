"""``tortie demo`` as root builds a three-node dual-stack cluster with BGP in namespaces,
shows every pod reaching every pod, and leaves nothing behind; elsewhere it says why it
shows the IPAM demo instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tortie.node import lab

TORTIE = Path(sys.executable).with_name("tortie")


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _processes(word: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if word in line]


def test_cluster_demo_as_root() -> None:
    why = lab.missing_prerequisites()
    if why is not None:
        pytest.skip(f"the cluster demo cannot run here: {why}")
    before = _namespaces()
    proc = subprocess.run(
        [str(TORTIE), "demo"], capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    out = proc.stdout
    assert "IPv4 ping matrix (30 of 30 pings answered)" in out
    assert "IPv6 ping matrix (30 of 30 pings answered)" in out
    assert "All pods reach each other over both families." in out
    assert "each CNI ADD handed to each node's agent over cni.sock" in out
    assert out.count(" proto bird") >= 4  # node-1 learned both peers' blocks per family
    assert not {n for n in _namespaces() - before if n.startswith("tortie-lab-")}
    assert not [p for p in _processes("tortie-demo-") if "bird" in p or "node run" in p]


def test_demo_says_why_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tortie.cli.main import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert lab.missing_prerequisites() == "it needs root (it creates network namespaces)"
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("(The full demo builds a three-node dual-stack cluster")
    assert "it needs root" in out and "| Block" in out
