"""Run many real ``calico-ipam`` processes for simulated nodes, and inspect the result.

Shared by the cluster tests (``tests/cluster``) and ``bench/etcd_bench.py``: one harness, so
the benchmark measures exactly what the tests check.  Standard library and tortie only.

    plugin = make_plugin(tmp / "bin")                       # the -IS launcher
    conf = etcd_conf(node, endpoints)                       # or sqlite_conf(node, path)
    run = run_nodes(plugin, {node: conf for node in nodes}, pods=100)
    run.wall, run.outcomes[node][i].addresses, run.latencies()
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tortie.cni.install import write_executables
from tortie.core.addr import parse_address, parse_network
from tortie.core.block import Block
from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.model.ipam_records import decode_block

NETWORK = "k8s-pod-network"
POOL4 = "10.70.0.0/16"
POOL6 = "fd00:70::/112"
PROCESS_TIMEOUT = 60.0  # one CNI process; far above anything expected, stops a hang


def make_plugin(bin_dir: Path) -> str:
    """Write the launchers into ``bin_dir``; the path of ``calico-ipam``."""
    write_executables(str(bin_dir))
    return str(bin_dir / "calico-ipam")


def pool_doc(name: str, cidr: str, block_size: int, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {
                "cidr": cidr,
                "blockSize": block_size,
                "ipipMode": "Never",
                "vxlanMode": "Never",
                "natOutgoing": False,
                "nodeSelector": "all()",
                **spec,
            },
        }
    )


def add_pools(store: Datastore, v4: str = POOL4, v6: str = POOL6) -> None:
    """The dual-stack pools of the scale run: /26 blocks (v4), /122 blocks (v6)."""
    store.create(keys.resource_key("ippools", "pool-v4"), pool_doc("pool-v4", v4, 26))
    store.create(keys.resource_key("ippools", "pool-v6"), pool_doc("pool-v6", v6, 122))


def rotated(endpoints: Sequence[str], index: int) -> list[str]:
    """The endpoints in a different order per node (rotation, reversed for odd nodes)."""
    eps = list(endpoints)
    k = index % len(eps) if eps else 0
    out = eps[k:] + eps[:k]
    return out[::-1] if index % 2 else out


def _netconf(node: str, v6: bool, **top: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "calico-ipam",
        "nodename": node,
        **top,
        "ipam": {
            "type": "calico-ipam",
            "assign_ipv4": "true",
            "assign_ipv6": "true" if v6 else "false",
        },
    }


def etcd_conf(node: str, endpoints: Sequence[str], v6: bool = True) -> bytes:
    conf = _netconf(node, v6, datastore_type="etcdv3", etcd_endpoints=",".join(endpoints))
    return json.dumps(conf).encode()


def sqlite_conf(node: str, path: str, v6: bool = True) -> bytes:
    return json.dumps(_netconf(node, v6, datastore_type="sqlite", sqlite_path=path)).encode()


def container_id(node: str, pod: int) -> str:
    return f"{node}-pod{pod:04d}"


def handle_id(node: str, pod: int) -> str:
    return f"{NETWORK}.{container_id(node, pod)}"


@dataclass
class Outcome:
    """One CNI process: exit code, decoded stdout, stderr and wall time (s)."""

    node: str
    pod: int
    command: str
    code: int
    result: dict[str, Any] | None
    stderr: bytes
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def addresses(self) -> list[str]:
        """The result's addresses (with prefix), IPv4 first."""
        if not self.result:
            return []
        return [str(ip["address"]) for ip in self.result.get("ips") or []]

    def describe(self) -> str:
        return (
            f"{self.command} {container_id(self.node, self.pod)}: exit {self.code} after "
            f"{self.seconds:.2f} s, stdout {self.result}, stderr {self.stderr[-400:]!r}"
        )


def cni_env(command: str, container: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/var/run/netns/{container}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }


def run_cni(
    plugin: str, command: str, node: str, pod: int, conf: bytes, socket: str = "none"
) -> Outcome:
    """One real plugin process (stdin: ``conf``; ``socket``: the node service it asks,
    "none" = in-process); never raises for a plugin failure."""
    container = container_id(node, pod)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [plugin],
        input=conf,
        env={**cni_env(command, container), "TORTIE_CNI_SOCKET": socket},
        capture_output=True,
        timeout=PROCESS_TIMEOUT,
    )
    seconds = time.perf_counter() - t0
    result: dict[str, Any] | None = None
    if proc.stdout:
        try:
            decoded = json.loads(proc.stdout)
        except ValueError:
            decoded = {"unparsable stdout": proc.stdout.decode(errors="replace")}
        result = decoded if isinstance(decoded, dict) else {"stdout": decoded}
    return Outcome(node, pod, command, proc.returncode, result, proc.stderr, seconds)


@dataclass
class NodesRun:
    """All processes of one run: per node, in the order each node ran them."""

    command: str
    wall: float
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)

    def all(self) -> list[Outcome]:
        return [o for outs in self.outcomes.values() for o in outs]

    def failures(self) -> list[Outcome]:
        return [o for o in self.all() if not o.ok]

    def latencies(self) -> list[float]:
        return [o.seconds for o in self.all()]

    def summary(self) -> str:
        lat = sorted(self.latencies())
        return (
            f"{len(lat)} {self.command} in {self.wall:.1f} s "
            f"({len(lat) / self.wall:.0f}/s); per call median {statistics.median(lat) * 1000:.0f} "
            f"ms, p95 {percentile(lat, 95) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_nodes(
    plugin: str,
    confs: Mapping[str, bytes],
    pods: int | Mapping[str, Sequence[int]],
    command: str = "ADD",
    after_each: Callable[[Outcome], None] | None = None,
    sockets: Mapping[str, str] | None = None,
) -> NodesRun:
    """Every node (one thread each, all at once) runs its pods' processes one after another.

    ``pods`` is a count (pods 0..n-1 on every node) or the pod numbers per node.
    ``after_each`` is called (under a lock) after every process, e.g. to inject a fault.
    ``sockets``: each node's CNI service (default: none, the plugins run in-process).
    """
    lock = threading.Lock()

    def node_work(node: str) -> list[Outcome]:
        numbers = range(pods) if isinstance(pods, int) else pods[node]
        outs = []
        for pod in numbers:
            socket = (sockets or {}).get(node, "none")
            out = run_cni(plugin, command, node, pod, confs[node], socket)
            outs.append(out)
            if after_each is not None:
                with lock:
                    after_each(out)
        return outs

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(confs)) as pool:
        futures = {node: pool.submit(node_work, node) for node in confs}
        outcomes = {node: fut.result() for node, fut in futures.items()}
    return NodesRun(command, time.perf_counter() - t0, outcomes)


class NodeServices:
    """One ``tortie node serve-cni`` per node on an etcd cluster (as each node's agent
    would run), stopped by pid."""

    def __init__(self, tmp: Path, endpoints: Mapping[str, Sequence[str]]) -> None:
        tortie = str(Path(sys.executable).with_name("tortie"))
        self.sockets: dict[str, str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        for node, eps in endpoints.items():
            sock = str(tmp / f"{node}.sock")
            env = {**os.environ, "DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": ",".join(eps)}
            with open(tmp / f"{node}.log", "wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [tortie, "node", "serve-cni", "--socket", sock],
                        env=env,
                        stdout=log,
                        stderr=log,
                    )
                )
            self.sockets[node] = sock
        deadline = time.monotonic() + 30
        while not all(os.path.exists(s) for s in self.sockets.values()):
            assert all(p.poll() is None for p in self.procs), "a serve-cni exited"
            assert time.monotonic() < deadline, "serve-cni did not start"
            time.sleep(0.05)

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)


# ------------------------------------------------------------------------- inspection


def load_blocks(store: Datastore) -> dict[str, Block]:
    """Every block (both families) by key; raises on a corrupt one."""
    out = {}
    for version in (4, 6):
        for kv in store.list(keys.block_prefix(version)):
            out[kv.key] = decode_block(kv.key, kv.value)
    return out


def block_of(blocks: Iterable[Block], address: str) -> Block | None:
    addr = parse_address(address.split("/")[0])
    for block in blocks:
        if addr in parse_network(block.cidr):
            return block
    return None


def blocks_per_node(blocks: Iterable[Block]) -> dict[tuple[str | None, int], list[str]]:
    """(affine node, IP version) → block CIDRs."""
    out: dict[tuple[str | None, int], list[str]] = {}
    for block in blocks:
        out.setdefault((block.host(), block.network.version), []).append(block.cidr)
    return out


def allocation_count(store: Datastore) -> int:
    return sum(b.in_use for b in load_blocks(store).values())


def handle_keys(store: Datastore) -> list[str]:
    return [kv.key for kv in store.list(keys.handle_prefix())]
