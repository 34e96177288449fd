"""The SIGKILL experiment (issue 10): many real ``calico-ipam`` ADD processes, a quarter
of them killed with SIGKILL at moments spread over the whole ADD.  Afterwards no address
is held twice, and one CNI GC given the containers whose ADD answered leaves exactly
their addresses: no leak, no live address lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cni_helpers import add_pool, netconf

from tortie.cni.install import write_executables
from tortie.datastore import keys
from tortie.datastore.sqlite import SqliteDatastore
from tortie.model.ipam_records import decode_block

ADDS = 320
AT_ONCE = 16
KILLED_SHARE = 0.25
KILL_WINDOW_S = (0.040, 0.350)


@dataclass
class _Add:
    container: str
    proc: subprocess.Popen[bytes]
    started: float
    kill_at: float | None
    killed_running: bool = False


def _env(container: str, command: str = "ADD") -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": "/var/run/netns/none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }


def _held(db: str) -> list[tuple[str, str | None]]:
    """(address, handle) of every allocation, duplicates kept."""
    store = SqliteDatastore(db)
    try:
        out = []
        for version in (4, 6):
            for kv in store.list(keys.block_prefix(version)):
                block = decode_block(kv.key, kv.value)
                out += [(str(block.address(o)), a.handle_id) for o, a in block.allocated()]
        return out
    finally:
        store.close()


def test_sigkilled_adds_leave_no_duplicate_and_gc_leaves_exactly_the_live(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "store.sqlite")
    store = SqliteDatastore(db)
    add_pool(store, "pool4", "10.88.0.0/16", blockSize=26)
    add_pool(store, "pool6", "fd00:88::/48", blockSize=122)
    store.close()
    bindir = tmp_path / "bin"
    write_executables(str(bindir))
    plugin = str(bindir / "calico-ipam")
    conf = netconf("1.1.0", ipam={"assign_ipv6": "true"}, sqlite_path=db)
    stdin = json.dumps(conf).encode()
    rng = random.Random(20261129)
    kills = set(rng.sample(range(ADDS), int(ADDS * KILLED_SHARE)))
    running: list[_Add] = []
    done: list[_Add] = []
    answered: dict[str, list[str]] = {}
    began = time.monotonic()
    next_index = 0
    while next_index < ADDS or running:
        while next_index < ADDS and len(running) < AT_ONCE:
            cid = f"pod{next_index:04d}"
            proc = subprocess.Popen(
                [plugin],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_env(cid),
            )
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
            now = time.monotonic()
            kill_at = now + rng.uniform(*KILL_WINDOW_S) if next_index in kills else None
            running.append(_Add(cid, proc, now, kill_at))
            next_index += 1
        time.sleep(0.002)
        now = time.monotonic()
        for add in list(running):
            if add.kill_at is not None and now >= add.kill_at and add.proc.poll() is None:
                add.proc.send_signal(signal.SIGKILL)
                add.killed_running = True
                add.kill_at = None
            if add.proc.poll() is not None:
                running.remove(add)
                done.append(add)
                assert add.proc.stdout is not None
                out = add.proc.stdout.read()
                add.proc.stdout.close()
                if add.proc.returncode == 0:
                    result = json.loads(out)
                    answered[add.container] = [ip["address"].split("/")[0] for ip in result["ips"]]
                elif not add.killed_running:
                    raise AssertionError(f"ADD {add.container} failed: {out[:300]!r}")
    elapsed = time.monotonic() - began
    landed = sum(a.killed_running for a in done)
    print(f"{ADDS} ADDs in {elapsed:.1f}s, {landed} killed while running, {len(answered)} answered")
    assert len(done) == ADDS
    assert landed >= ADDS * KILLED_SHARE / 3, "too few kills landed during an ADD"

    held = _held(db)
    addresses = [a for a, _ in held]
    assert len(addresses) == len(set(addresses)), "an address is held twice"
    live = {a for ips in answered.values() for a in ips}
    assert len(live) == 2 * len(answered)  # one IPv4 and one IPv6 address each, none shared

    gc = {
        **conf,
        "ipam": {**conf["ipam"], "leak_grace_period": "0s"},
        "cni.dev/valid-attachments": [{"containerID": c, "ifname": "eth0"} for c in answered],
    }
    gc_run = subprocess.run(
        [plugin], input=json.dumps(gc).encode(), env=_env("", "GC"), capture_output=True
    )
    assert gc_run.returncode == 0, gc_run.stdout
    after = dict(_held(db))
    leaks = set(after) - live
    lost = live - set(after)
    assert (len(leaks), len(lost)) == (0, 0), (sorted(leaks)[:5], sorted(lost)[:5])
    for cid, ips in answered.items():
        assert {after[a] for a in ips} == {f"net1.{cid}"}
    store = SqliteDatastore(db)
    try:
        handles = {kv.key.rsplit("/", 1)[1] for kv in store.list(keys.handle_prefix())}
    finally:
        store.close()
    assert handles == {f"net1.{c}" for c in answered}
