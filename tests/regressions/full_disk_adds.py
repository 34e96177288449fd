"""Helper run by test_full_disk_add.py inside a private mount namespace, with a 200 KiB
tmpfs at argv[1]: leave argv[2] KiB free, run in-process calico-ipam ADDs (dual stack)
until 25 have failed, free the space and print the store's IPAM state as JSON."""

from __future__ import annotations

import json
import os
import sys

from tortie.cni.ipam_plugin import run
from tortie.datastore import keys
from tortie.datastore.sqlite import SqliteDatastore
from tortie.model.ipam_records import decode_block, decode_handle


def main(directory: str, room_kib: int) -> None:
    db = os.path.join(directory, "store.sqlite")
    store = SqliteDatastore(db)
    for name, cidr, size in (("p4", "10.90.0.0/16", 28), ("p6", "fd00:90::/48", 124)):
        body = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": size},
        }
        store.create(keys.resource_key("ippools", name), json.dumps(body))
    store.close()
    conf = {
        "cniVersion": "1.0.0",
        "name": "net1",
        "type": "calico-ipam",
        "nodename": "n1",
        "sqlite_path": db,
        "ipam": {"type": "calico-ipam", "assign_ipv6": "true"},
    }
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    os.close(fd)
    os.truncate(filler, max(0, os.path.getsize(filler) - room_kib * 1024))
    ok: list[str] = []
    failed = 0
    for i in range(400):
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": f"c{i}",
            "CNI_NETNS": "/x",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/usr/lib/cni",
        }
        code, _out = run(json.dumps(conf).encode(), env)
        if code == 0:
            ok.append(f"net1.c{i}")
        else:
            failed += 1
            if failed >= 25:
                break
    os.unlink(filler)
    store = SqliteDatastore(db)
    handles: dict[str, int] = {}
    for kv in store.list(keys.handle_prefix()):
        handle = decode_handle(kv.key, kv.value)
        handles[handle.handle_id] = handle.total
    owners: dict[str, str | None] = {}
    for version in (4, 6):
        for kv in store.list(keys.block_prefix(version)):
            block = decode_block(kv.key, kv.value)
            for ordinal, attr in block.allocated():
                owners[str(block.address(ordinal))] = attr.handle_id
    store.close()
    print(json.dumps({"ok": ok, "failed": failed, "handles": handles, "owners": owners}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
