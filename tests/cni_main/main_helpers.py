"""Helpers for the main-plugin tests: launchers in a tmp bin dir, a SQLite store with
pools, a host namespace, and a tiny runtime that runs plugins (and conflists) in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: netns helper
from netns import Netns
from tortie.cni.install import write_executables
from tortie.datastore import keys
from tortie.datastore.sqlite import SqliteDatastore

NODE = "node-1"
REF_CNI = "/usr/lib/cni"
POOLS = {"v4": ("pool-v4", "10.70.0.0/16"), "v6": ("pool-v6", "fd00:70::/48")}
MODES = {"v4": (True, False), "v6": (False, True), "dual": (True, True)}
REPO = Path(__file__).resolve().parents[2]
TORTIE_CLI = str(REPO / ".venv" / "bin" / "tortie")


class Env:
    """One test's world: bin dir, store path, host namespace."""

    def __init__(self, tmp: Path, host: Netns | None) -> None:
        self.tmp = tmp
        self.bin = str(tmp / "bin")
        write_executables(self.bin)
        self.db = str(tmp / "store.sqlite")
        self.host = host
        self.cni_path = f"{self.bin}:{REF_CNI}"
        self.socket = "none"  # TORTIE_CNI_SOCKET: "none" runs the plugins in-process
        self.service: subprocess.Popen[bytes] | None = None

    def start_service(self) -> None:
        """``tortie node serve-cni`` in the host namespace; the plugins then call it."""
        self.socket = str(self.tmp / "cni.sock")
        argv = [TORTIE_CLI, "node", "serve-cni", "--socket", self.socket]
        if self.host is not None:
            argv = ["nsenter", f"--net={self.host.path}", *argv]
        env = {**os.environ, "SQLITE_PATH": self.db, "DATASTORE_TYPE": "sqlite"}
        with open(self.tmp / "service.log", "wb") as log:
            self.service = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            assert self.service.poll() is None, self.service_log()
            assert time.monotonic() < deadline, "serve-cni did not create its socket"
            time.sleep(0.02)

    def stop_service(self) -> str:
        """Stop the service (SIGTERM, by pid); its log."""
        if self.service is not None:
            self.service.terminate()
            self.service.wait(timeout=30)
            self.service = None
        return self.service_log()

    def service_log(self) -> str:
        path = self.tmp / "service.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def add_pools(self, *families: str) -> None:
        store = SqliteDatastore(self.db)
        try:
            for fam in families:
                name, cidr = POOLS[fam]
                body = {
                    "apiVersion": "projectcalico.org/v3",
                    "kind": "IPPool",
                    "metadata": {"name": name},
                    "spec": {"cidr": cidr},
                }
                store.create(keys.resource_key("ippools", name), json.dumps(body))
        finally:
            store.close()

    def conf(self, mode: str = "dual", name: str = "tortie-net", **extra: Any) -> dict[str, Any]:
        v4, v6 = MODES[mode]
        ipam: dict[str, str] = {"type": "calico-ipam"}
        if not v4:
            ipam["assign_ipv4"] = "false"
        if v6:
            ipam["assign_ipv6"] = "true"
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": name,
            "type": "calico",
            "nodename": NODE,
            "sqlite_path": self.db,
            "ipam": ipam,
        }
        conf.update(extra)
        return conf

    def env(
        self, command: str, container: str, netns: str, ifname: str = "eth0", args: str = ""
    ) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": self.cni_path,
            "TORTIE_CNI_SOCKET": self.socket,
        }
        if args:
            env["CNI_ARGS"] = args
        return env

    def plugin_argv(self, plugin: str) -> list[str]:
        path = os.path.join(self.bin, plugin)
        if not os.path.exists(path):
            path = os.path.join(REF_CNI, plugin)
        if self.host is None:
            return [path]
        return ["nsenter", f"--net={self.host.path}", path]

    def invoke(
        self, plugin: str, conf: Mapping[str, Any], env: Mapping[str, str]
    ) -> tuple[int, dict[str, Any] | None, str]:
        """Run one plugin (in the host namespace); (exit code, decoded stdout, stderr)."""
        proc = subprocess.run(
            self.plugin_argv(plugin),
            input=json.dumps(conf).encode(),
            env=dict(env),
            capture_output=True,
            timeout=120,
            check=False,
        )
        out = proc.stdout.decode()
        decoded = json.loads(out) if out.strip() else None
        return proc.returncode, decoded, proc.stderr.decode()

    def call(
        self,
        command: str,
        conf: Mapping[str, Any],
        container: str,
        netns: str,
        ifname: str = "eth0",
        args: str = "",
    ) -> tuple[int, dict[str, Any] | None]:
        code, out, _ = self.invoke(
            str(conf["type"]), conf, self.env(command, container, netns, ifname, args)
        )
        return code, out

    def add_ok(
        self, conf: Mapping[str, Any], container: str, netns: str, args: str = ""
    ) -> dict[str, Any]:
        code, out = self.call("ADD", conf, container, netns, args=args)
        assert code == 0 and out is not None, out
        return out

    def conflist(
        self,
        conflist: Mapping[str, Any],
        command: str,
        container: str,
        netns: str,
        prev: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """libcni's order: ADD/CHECK forwards, DEL backwards; prevResult chained."""
        plugins: Sequence[Mapping[str, Any]] = conflist["plugins"]
        order = list(reversed(plugins)) if command == "DEL" else list(plugins)
        result = prev
        for plugin in order:
            conf = {**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
            if result is not None:
                conf["prevResult"] = result
            code, out, err = self.invoke(
                str(plugin["type"]), conf, self.env(command, container, netns)
            )
            assert code == 0, (plugin["type"], out, err)
            if command == "ADD":
                result = out
        return result

    def cli(self, *args: str) -> Any:
        env = {**os.environ, "SQLITE_PATH": self.db, "DATASTORE_TYPE": "sqlite"}
        proc = subprocess.run(
            [TORTIE_CLI, *args], capture_output=True, text=True, env=env, timeout=60, check=True
        )
        return json.loads(proc.stdout)

    def allocations(self) -> dict[str, str | None]:
        """address → handle of every allocation in the store."""
        from tortie.model.ipam_records import decode_block

        store = SqliteDatastore(self.db)
        out: dict[str, str | None] = {}
        try:
            for version in (4, 6):
                for kv in store.list(keys.block_prefix(version)):
                    block = decode_block(kv.key, kv.value)
                    for ordinal, attr in block.allocated():
                        out[str(block.address(ordinal))] = attr.handle_id
        finally:
            store.close()
        return out

    def weps(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cli("get", "workloadendpoints", "-A", "-o", "json")[
            "items"
        ]
        return items
