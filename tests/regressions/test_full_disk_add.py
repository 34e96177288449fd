"""Issue 10 defect 4: a dual-stack ADD that fails for a full disk after its IPv4 address
was written left that address and its handle behind (its own rollback could not write
either).  With the whole ADD one SQLite transaction, a failed ADD leaves nothing.

Runs in a private mount namespace (``unshare -m``) with a 200 KiB tmpfs: nothing is
mounted in the machine's own namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

HELPER = Path(__file__).resolve().parent / "full_disk_adds.py"


@pytest.mark.parametrize("room_kib", [56, 72])
def test_adds_failing_for_a_full_disk_leave_nothing(tmp_path: Path, room_kib: int) -> None:
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare (a tmpfs in a private mount namespace)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o size=200k tmpfs {mnt} && "
        f"{sys.executable} {HELPER} {mnt} {room_kib}; rc=$?; umount {mnt}; exit $rc"
    )
    proc = subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = json.loads(proc.stdout)
    ok, handles, owners = state["ok"], state["handles"], state["owners"]
    assert ok and state["failed"], state  # the disk did fill up mid-run
    # exactly the succeeded ADDs hold addresses: one IPv4 and one IPv6 each
    assert sorted(handles) == sorted(ok)
    held = Counter(owners.values())
    assert held == Counter({h: 2 for h in ok})
    assert all(handles[h] == 2 for h in ok)
