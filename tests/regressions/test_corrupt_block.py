"""Issue 11 item 2: one policy for a corrupt block.  A block whose stored value does not
decode is skipped by listings and reported by ``ipam check``; it must not break ``tortie
apply`` of an unrelated pool, STATUS, usage or allocation."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cni"))
from cni_helpers import add_pool, call, netconf  # type: ignore[import-not-found, unused-ignore]

from tortie.cli.main import main
from tortie.datastore import keys
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore

POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: {name}
spec:
  cidr: {cidr}
"""


def _corrupt_every_block(store: SqliteDatastore | MemoryDatastore) -> int:
    n = 0
    for kv in store.list(keys.block_prefix(4)):
        store.update(kv.key, "{corrupt", kv.revision)
        n += 1
    return n


def test_apply_of_a_new_pool_is_not_broken_by_a_corrupt_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "tortie.db"
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(db))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    p1, p2 = tmp_path / "p1.yaml", tmp_path / "p2.yaml"
    p1.write_text(POOL.format(name="p1", cidr="10.93.0.0/16"))
    p2.write_text(POOL.format(name="p2", cidr="10.94.0.0/16"))
    assert main(["apply", "-f", str(p1)]) == 0
    assert main(["ipam", "assign", "--ipv4=1", "--handle=h1", "--node=n1"]) == 0
    store = SqliteDatastore(str(db))
    try:
        assert _corrupt_every_block(store) == 1
    finally:
        store.close()
    capsys.readouterr()
    assert main(["apply", "-f", str(p2)]) == 0, capsys.readouterr().err
    assert main(["get", "ippools", "-o", "json"]) == 0
    assert "10.94.0.0/16" in capsys.readouterr().out
    # the corrupt block stays as it is, for `ipam check` to report
    store = SqliteDatastore(str(db))
    try:
        assert [kv.value for kv in store.list(keys.block_prefix(4))] == ["{corrupt"]
    finally:
        store.close()


def test_status_and_add_skip_a_corrupt_block() -> None:
    store = MemoryDatastore()
    add_pool(store, "tiny", "10.95.0.0/26", blockSize=26)
    add_pool(store, "other", "10.96.0.0/24", blockSize=26)
    conf = netconf("1.1.0", ipam={"ipv4_pools": ["tiny"]})
    assert call(store, "ADD", conf, CNI_CONTAINERID="a")[0] == 0
    assert _corrupt_every_block(store) == 1
    # the only block of "tiny" is unreadable: STATUS says there is no room, plainly
    code, out = call(store, "STATUS", conf, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="")
    assert code == 1 and out is not None and out["code"] == 50
    assert "no free IPv4 address" in out["msg"]
    # another pool still works for both STATUS and ADD
    other = netconf("1.1.0", ipam={"ipv4_pools": ["other"]})
    st = call(store, "STATUS", other, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="")
    assert st == (0, None)
    assert call(store, "ADD", other, CNI_CONTAINERID="b")[0] == 0
