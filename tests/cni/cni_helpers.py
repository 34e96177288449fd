"""Shared helpers for the CNI plugin tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tortie.cni.ipam_plugin import run
from tortie.datastore import keys
from tortie.datastore.base import KV, Datastore
from tortie.datastore.config import DatastoreSettings

NODE = "node-1"

# How ``call`` reaches the plugin: "in-process" (``run`` with the test's store),
# "service" (a CniService on a socket, the thin client's wire format, the same store) or
# "compiled" (that service, called by the compiled client as a process).
ROUTE = {"via": "in-process"}
_services: dict[int, Any] = {}


def _service(store: Datastore, tmp: str) -> Any:
    from tortie.cni.service import CniService, Stores

    svc = _services.get(id(store))
    if svc is None:
        svc = CniService(
            f"{tmp}/cni-{len(_services)}.sock", Stores(None), open_store=lambda _s: store
        )
        svc.start()
        _services[id(store)] = svc
    return svc


def install_compiled(tmp: str) -> None:
    """The compiled client as ``tmp/bin/calico-ipam`` (skips when it was not built)."""
    import pytest

    from tortie.cni.cclient import built_client
    from tortie.cni.install import write_executables

    if built_client() is None:
        pytest.skip("no compiled CNI client was built (no C compiler at pip install time)")
    write_executables(f"{tmp}/bin", client="compiled")


def stop_services() -> None:
    while _services:
        _, svc = _services.popitem()
        svc.stop()


def add_pool(store: Datastore, name: str, cidr: str, **spec: Any) -> None:
    body = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, **spec},
    }
    store.create(keys.resource_key("ippools", name), json.dumps(body))


def netconf(
    version: str = "1.0.0", name: str = "net1", ipam: Mapping[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": name,
        "type": "calico-ipam",
        "nodename": NODE,
        "ipam": {"type": "calico-ipam", **(ipam or {})},
    }
    conf.update(top)
    return conf


def cni_env(command: str, container: str = "c1", **extra: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": "/var/run/netns/none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def call(
    store: Datastore, command: str, conf: Mapping[str, Any] | bytes, **env: str
) -> tuple[int, dict[str, Any] | None]:
    """Run the plugin in-process against ``store``; returns (exit code, decoded stdout)."""
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    full = cni_env(command, **env)

    if ROUTE["via"] == "compiled":
        import subprocess

        svc = _service(store, ROUTE["tmp"])
        proc = subprocess.run(
            [f"{ROUTE['tmp']}/bin/calico-ipam"],
            input=stdin,
            env={**full, "TORTIE_CNI_SOCKET": svc.path},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode >= 0 and not proc.stderr, proc
        out = proc.stdout.decode()
        return proc.returncode, (json.loads(out) if out.strip() else None)

    if ROUTE["via"] == "service":
        from tortie.cni import thin

        svc = _service(store, ROUTE["tmp"])
        env_b = {k.encode(): v.encode() for k, v in full.items()}
        answer = thin.call(svc.path, b"ipam", env_b, stdin)
        assert answer is not None, "the service did not answer"
        code, raw = answer
        return code, (json.loads(raw) if raw else None)

    def opener(_settings: DatastoreSettings) -> Datastore:
        return store

    code, out = run(stdin, full, open_store=opener)
    return code, (json.loads(out) if out else None)


def snapshot(store: Datastore) -> list[KV]:
    return store.list("")


def ipam_keys(store: Datastore) -> list[str]:
    return [kv.key for kv in store.list("/calico/ipam/")]


def allocated(store: Datastore) -> dict[str, str | None]:
    """address → handle of every allocation in the store."""
    from tortie.model.ipam_records import decode_block

    out: dict[str, str | None] = {}
    for version in (4, 6):
        for kv in store.list(keys.block_prefix(version)):
            block = decode_block(kv.key, kv.value)
            for ordinal, attr in block.allocated():
                out[str(block.address(ordinal))] = attr.handle_id
    return out
