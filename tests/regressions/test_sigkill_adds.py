"""Issue 10's SIGKILL experiment as a test: real ``calico-ipam`` ADD processes, at most 16
at once, a quarter of them killed with SIGKILL somewhere in their run; then CNI GC with
the live list.  No address is given twice, nothing leaks, no live address is lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADDS = 320
PARALLEL = 16

POOLS = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p4}
spec: {cidr: 10.91.0.0/16, blockSize: 26}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p6}
spec: {cidr: "fd00:91::/112", blockSize: 122}
"""


def test_sigkilled_adds_leave_no_duplicates_and_gc_cleans_up(tmp_path: Path) -> None:
    if not (BIN / "calico-ipam").exists():
        pytest.skip(f"{BIN}/calico-ipam is not installed (pip install -e .)")
    env = {**os.environ, "DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp_path / "t.db")}
    subprocess.run(
        [str(BIN / "tortie"), "apply", "-f", "-"],
        input=POOLS,
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    conf = {
        "cniVersion": "1.1.0",
        "name": "net1",
        "type": "calico-ipam",
        "nodename": "n1",
        "ipam": {"type": "calico-ipam", "assign_ipv6": "true", "gc_grace_seconds": 0},
    }
    rng = random.Random(20261129)
    plan = [(f"c{i:03d}", rng.uniform(0.04, 0.35) if i % 4 == 0 else None) for i in range(ADDS)]

    def add(cid: str, kill_after: float | None) -> tuple[str, int, str]:
        e = {
            **env,
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": "/x",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(BIN),
        }
        proc = subprocess.Popen(
            [str(BIN / "calico-ipam")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=e,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        if kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=120)
        assert proc.stderr is not None
        proc.stderr.close()
        proc.stdout.close()
        return cid, proc.returncode, out.decode()

    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda p: add(*p), plan))

    killed = [cid for cid, rc, _ in results if rc == -signal.SIGKILL]
    live: dict[str, list[str]] = {}
    for cid, rc, out in results:
        if rc == 0:
            live[cid] = [ip["address"].split("/")[0] for ip in json.loads(out)["ips"]]
        else:
            assert rc == -signal.SIGKILL, (cid, rc, out)  # no ADD failed on its own
    assert len(killed) >= ADDS // 8, "the kills came too late to hit running ADDs"
    given = [a for addrs in live.values() for a in addrs]
    assert len(given) == len(set(given)) == 2 * len(live)  # no duplicates, both families

    gc = {
        **conf,
        "cni.dev/valid-attachments": [{"containerID": cid, "ifname": "eth0"} for cid in live],
    }
    e = {**env, "CNI_COMMAND": "GC", "CNI_PATH": str(BIN)}
    proc = subprocess.run(
        [str(BIN / "calico-ipam")],
        input=json.dumps(gc),
        text=True,
        env=e,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    (tmp_path / "live.txt").write_text("\n".join(live) + "\n")
    check = subprocess.run(
        [
            str(BIN / "tortie"),
            "ipam",
            "check",
            "--live",
            str(tmp_path / "live.txt"),
            "--node",
            "n1",
            "-o",
            str(tmp_path / "report.json"),
        ],
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["leakedIPs"] == [] and report["problems"] == [], check.stdout
    assert report["allocations"] == len(given)  # every live address is still allocated
    for cid, addrs in list(live.items())[:20]:
        for a in addrs:
            shown = subprocess.run(
                [str(BIN / "tortie"), "ipam", "show", f"--ip={a}"],
                env=env,
                text=True,
                capture_output=True,
                check=True,
            )
            assert f"net1.{cid}" in shown.stdout
