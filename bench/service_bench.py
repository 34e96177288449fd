"""Node service benchmark (issue 9): the thin plugins through ``tortie node serve-cni``
against the reference plugins, every goal row of the issue in one run.

1. IPAM ADD and DEL per call (a new process each) with 1,000 and 5,000 existing
   allocations on the node: ``calico-ipam`` through the service, ``calico-ipam``
   in-process (``TORTIE_CNI_SOCKET=none``, for reference) and ``host-local``, alternating
   call by call.  Then where the time goes: the interpreter floor (``python3 -I -S -c
   pass``), the launcher answered by a stub that replies at once, the service's own work
   (the same request sent over the socket from this process).
2. 100 concurrent IPAM ADDs (and DELs) on one node: wall time, alternating rounds.
3. Pod ADD and DEL (root): ``calico`` + ``calico-ipam`` through a service running in a
   test "host" namespace, IPv4-only and dual stack, against ``bridge`` + ``host-local``
   (and the in-process plugin for reference), one fresh pod namespace per call.
4. 10 nodes x 100 dual-stack pods on a 3-member etcd: one ``serve-cni`` per node, each
   node's 100 IPAM ADD processes started at once, all nodes together; wall time until all
   are done; no address twice, ``ipam check`` clean.  For reference the same with each
   node's ADDs one after another, through the services and in-process.
5. (root) RSS and open descriptors of ``serve-cni`` after 110 real dual-stack pod ADDs
   (veth, namespaces) on its node, and after one churn (those 110 deleted, 110 new added).

Calls for the service contenders are checked to have reached it: the service logs how
many calls it served when stopped, and a shortfall is reported (a plugin that cannot
connect falls back to running in its own process without saying so).

Everything runs in temporary directories, throw-away network namespaces (``svcb-*``) and
processes started here, stopped by PID.  Standard library and tortie only.

Run: PYTHONPATH=src .venv/bin/python bench/service_bench.py [--quick] [--client compiled]
(``--client compiled``: the services' plugins are the compiled thin client, issue 18;
bench/cclient_bench.py compares the two clients in one run.)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "cluster"), str(ROOT / "tests")]

from cluster_harness import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    add_pools,
    allocation_count,
    etcd_conf,
    rotated,
    run_nodes,
)

from etcd_cluster import EtcdCluster, etcd_binary  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from tortie.cni import thin  # noqa: E402
from tortie.cni.install import interpreter_path, package_root, write_executables  # noqa: E402
from tortie.dataplane.netns import entered, open_netns  # noqa: E402
from tortie.datastore import keys  # noqa: E402
from tortie.datastore.backends import open_datastore  # noqa: E402
from tortie.datastore.config import DatastoreSettings  # noqa: E402
from tortie.datastore.sqlite import SqliteDatastore  # noqa: E402
from tortie.ipam.check import check  # noqa: E402
from tortie.ipam.requests import AutoAssignArgs  # noqa: E402
from tortie.ipam.service import Ipam  # noqa: E402

HOST_LOCAL = "/usr/lib/cni/host-local"
REF_CNI = "/usr/lib/cni"
IP = shutil.which("ip") or "/usr/sbin/ip"
NODE = "bench-node"
PY_REAL = interpreter_path()  # what the launchers' "#!" line runs
PATH = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
CLIENT = {"kind": "python"}  # the services' plugins: "python" launchers or "compiled"

# --------------------------------------------------------------------------- numbers


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(0, min(len(ordered) - 1, -(-95 * len(ordered) // 100) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def mp(values: Sequence[float]) -> str:
    """``median (p95)`` in ms."""
    return f"{ms(med(values))} ({ms(p95(values))})"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


# --------------------------------------------------------------------------- processes


class Service:
    """One ``tortie node serve-cni`` with its socket, log and launchers (which ask this
    socket first); stopped by PID."""

    def __init__(self, tmp: Path, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.sock = str(tmp / f"{name}.sock")
        self.log = tmp / f"{name}.log"
        self.bin = str(tmp / f"bin-{name}")
        write_executables(self.bin, self.sock, CLIENT["kind"])
        full_env = {"PATH": PATH, "PYTHONPATH": package_root(), **env}
        argv = [sys.executable, "-m", "tortie.cli.main", "node", "serve-cni", "--socket", self.sock]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.served: int | None = None

    def launcher(self, name: str) -> str:
        return os.path.join(self.bin, name)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve-cni {self.name} exited: {self.log.read_text()[-800:]}")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.sock)
                return
            except OSError:
                time.sleep(0.02)
            finally:
                probe.close()
        raise SystemExit(f"serve-cni {self.name} not answering after {timeout} s")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def memory(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MiB, from /proc/PID/status."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields[name] = value.split()
        return int(fields["VmRSS"][0]) / 1024, int(fields["VmHWM"][0]) / 1024

    def cpu(self) -> float:
        """CPU seconds used so far by the service and its waited-for children (``ip``)."""
        return proc_cpu(self.proc.pid)

    def stop(self) -> int | None:
        """SIGTERM by PID (SIGKILL after 30 s); the number of calls it says it served."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        found = re.findall(r"served (\d+) calls", self.log.read_text(errors="replace"))
        self.served = int(found[-1]) if found else None
        return self.served


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process and its waited-for children, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (the plugin processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def services(items: Sequence[Service]) -> Iterator[Sequence[Service]]:
    try:
        for s in items:
            s.wait_ready()
        yield items
    finally:
        for s in items:
            s.stop()


def cni_env(command: str, cid: str, netns: str, extra: dict[str, str]) -> dict[str, str]:
    return {
        "PATH": PATH,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": REF_CNI,
        **extra,
    }


class Contender:
    """One plugin executable with its network configuration and extra environment."""

    def __init__(
        self,
        name: str,
        path: str,
        conf: dict[str, Any] | bytes,
        extra: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.argv = [path, *args]
        self.conf = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        self.extra = extra or {}

    def call(self, command: str, cid: str, netns: str = "/var/run/netns/bench") -> float:
        """One process, its wall time in seconds; exits the benchmark on failure."""
        env = cni_env(command, cid, netns, self.extra)
        t0 = time.perf_counter()
        proc = subprocess.run(self.argv, input=self.conf, env=env, capture_output=True)
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{self.name} {command} {cid}: {proc.stdout!r} {proc.stderr!r}")
        return took

    def spawn(self, command: str, cid: str) -> subprocess.Popen[bytes]:
        """Start one process and hand it its stdin at once (it fits in the pipe)."""
        proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cni_env(command, cid, "/var/run/netns/bench", self.extra),
        )
        assert proc.stdin is not None
        proc.stdin.write(self.conf)
        proc.stdin.close()
        return proc


def finish(
    procs: Sequence[subprocess.Popen[bytes]],
    what: str,
    failures: list[tuple[int, bytes]] | None = None,
) -> list[dict[str, Any]]:
    """Wait for every process; their decoded stdout (empty dict for none).  A failure
    ends the benchmark, or is appended to ``failures`` (index, stdout) when given."""
    outs = []
    for index, proc in enumerate(procs):
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        if proc.wait() != 0:
            if failures is None:
                raise SystemExit(f"{what} failed: {out!r} {err[-400:]!r}")
            failures.append((index, out))
            continue
        outs.append(json.loads(out) if out.strip() else {})
    return outs


def addresses(results: Sequence[dict[str, Any]]) -> list[str]:
    return [str(ip["address"]) for r in results for ip in r.get("ips") or []]


def rounds(contenders: Sequence[Contender], n: int) -> Iterator[tuple[int, Contender]]:
    """Call by call: round i runs every contender once, starting one further along."""
    for i in range(n):
        for k in range(len(contenders)):
            yield i, contenders[(i + k) % len(contenders)]


def direct(sock: str, plugin: bytes, conf: bytes, command: str, cid: str, netns: str) -> float:
    """The service's own time for a call: the request sent from this process (no plugin
    process), the answer read; seconds."""
    env = {k.encode(): v.encode() for k, v in cni_env(command, cid, netns, {}).items()}
    t0 = time.perf_counter()
    answer = thin.call(sock, plugin, env, conf)
    took = time.perf_counter() - t0
    if answer is None or answer[0] != 0:
        raise SystemExit(f"direct {command} {cid} to {sock}: {answer!r}")
    return took


class StubService:
    """A socket that answers every request at once with an empty success: the thin
    plugin's own floor (interpreter, launcher, connect, send, receive)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                while conn.recv(65536):
                    pass
                conn.sendall(thin.encode_answer(0, b""))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.listener.close()
        os.unlink(self.path)


# --------------------------------------------------------------------------- stores


def pool_json(name: str, cidr: str, block_size: int | None = None) -> str:
    spec: dict[str, Any] = {"cidr": cidr}
    if block_size is not None:
        spec["blockSize"] = block_size
    return json.dumps(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def sqlite_store(
    path: str, pools: Sequence[tuple[str, str, int | None]], existing: int = 0
) -> None:
    """A SQLite store with ``pools`` and ``existing`` IPv4 allocations on ``NODE``."""
    store = SqliteDatastore(path)
    try:
        for name, cidr, size in pools:
            store.create(keys.resource_key("ippools", name), pool_json(name, cidr, size))
        ipam = Ipam(store)
        for i in range(existing):
            ipam.auto_assign(AutoAssignArgs(node=NODE, handle_id=f"bench.pre{i}", num4=1))
    finally:
        store.close()


def ipam_conf(name: str, db: str | None, **top: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "calico-ipam",
        "nodename": NODE,
        "ipam": {"type": "calico-ipam"},
        **top,
    }
    if db is not None:
        conf.update(datastore_type="sqlite", sqlite_path=db)
    return conf


def host_local(tmp: Path, tag: str, existing: int, subnet: str = "10.128.0.0/9") -> Contender:
    """host-local with ``existing`` addresses taken (its one-file-per-address directory)."""
    data = tmp / f"hl-{tag}"
    net_dir = data / "bench"
    net_dir.mkdir(parents=True)
    base = ipaddress.ip_network(subnet)
    last = None
    for i in range(existing):
        last = base.network_address + 2 + i
        (net_dir / str(last)).write_text(f"pre{i}\neth0")
    if last is not None:
        (net_dir / "last_reserved_ip.0").write_text(str(last))
    conf = {
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "host-local",
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(data)},
    }
    return Contender("host-local", HOST_LOCAL, conf)


# --------------------------------------------------------------------------- 1. IPAM per call

IPAM_POOL = [("bench", "10.128.0.0/9", 24)]


def ipam_per_call(tmp: Path, existing: int, calls: int, out: dict[str, Any]) -> None:
    """ADD then DEL, ``calls`` rounds each, one process per call; then the profile."""
    template = str(tmp / f"template-{existing}.db")
    sqlite_store(template, IPAM_POOL, existing)
    svc_db, local_db = str(tmp / f"svc-{existing}.db"), str(tmp / f"inproc-{existing}.db")
    shutil.copy(template, svc_db)
    shutil.copy(template, local_db)
    svc = Service(tmp, f"ipam{existing}", {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": svc_db})
    with services([svc]):
        launcher = svc.launcher("calico-ipam")
        contenders = [
            Contender("service", launcher, ipam_conf("bench", svc_db)),
            Contender(
                "in-process", launcher, ipam_conf("bench", local_db), {"TORTIE_CNI_SOCKET": "none"}
            ),
            host_local(tmp, f"pc{existing}", existing),
        ]
        res: dict[str, dict[str, list[float]]] = {
            c.name: {"ADD": [], "DEL": []} for c in contenders
        }
        cpu: dict[str, float] = {}
        for command in ("ADD", "DEL"):
            before = svc.cpu()
            for i, c in rounds(contenders, calls):
                res[c.name][command].append(c.call(command, f"m{i}"))
            cpu[command] = (svc.cpu() - before) / calls
        # Where the time goes: the bare interpreter, the launcher against a stub that
        # answers at once, the service's own work (request sent from this process).
        stub = StubService(str(tmp / f"stub{existing}.sock"))
        conf = contenders[0].conf
        stub_c = Contender("stub", launcher, conf, {"TORTIE_CNI_SOCKET": stub.path})
        floor = Contender("floor", PY_REAL, b"", args=("-I", "-S", "-c", "pass"))
        prof: dict[str, list[float]] = {"floor": [], "stub": [], "svc ADD": [], "svc DEL": []}
        try:
            for i in range(calls):
                prof["floor"].append(floor.call("ADD", "floor"))
                prof["stub"].append(stub_c.call("ADD", f"stub{i}"))
                prof["svc ADD"].append(direct(svc.sock, b"ipam", conf, "ADD", f"d{i}", "/x"))
                prof["svc DEL"].append(direct(svc.sock, b"ipam", conf, "DEL", f"d{i}", "/x"))
        finally:
            stub.close()
    out[f"ipam{existing}"] = {
        "res": res,
        "prof": prof,
        "cpu": cpu,
        "served": (svc.served, 4 * calls),  # ADD + DEL processes, direct ADD + DEL
    }


# --------------------------------------------------------------------------- 2. concurrency


def ipam_concurrent(tmp: Path, n: int, reps: int, out: dict[str, Any]) -> None:
    """``n`` ADDs started at once, then their ``n`` DELs, per contender, in rounds.  Two
    stateless contenders show the floor: ``n`` bare interpreters and ``n`` launchers
    answered by the stub."""
    svc_db, local_db = str(tmp / "conc-svc.db"), str(tmp / "conc-inproc.db")
    sqlite_store(svc_db, IPAM_POOL)
    sqlite_store(local_db, IPAM_POOL)
    svc = Service(tmp, "conc", {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": svc_db})
    stub = StubService(str(tmp / "conc-stub.sock"))
    try:
        with services([svc]):
            contenders = [
                Contender("service", svc.launcher("calico-ipam"), ipam_conf("bench", svc_db)),
                Contender(
                    "in-process",
                    svc.launcher("calico-ipam"),
                    ipam_conf("bench", local_db),
                    {"TORTIE_CNI_SOCKET": "none"},
                ),
                host_local(tmp, "conc", 0),
                Contender("floor", PY_REAL, b"", args=("-I", "-S", "-c", "pass")),
                Contender(
                    "stub",
                    svc.launcher("calico-ipam"),
                    ipam_conf("bench", svc_db),
                    {"TORTIE_CNI_SOCKET": stub.path},
                ),
            ]
            walls: dict[str, dict[str, list[float]]] = {
                c.name: {"ADD": [], "DEL": []} for c in contenders
            }
            cpu: dict[str, list[float]] = {"ADD": [], "DEL": []}
            for r, c in rounds(contenders, reps):
                cids = [f"c{r}-{i}" for i in range(n)]
                for command in ("ADD", "DEL"):
                    before = svc.cpu()
                    t0 = time.perf_counter()
                    results = finish([c.spawn(command, cid) for cid in cids], f"{c.name} {command}")
                    walls[c.name][command].append(time.perf_counter() - t0)
                    if c.name == "service":
                        cpu[command].append((svc.cpu() - before) / n)
                    if c.name in ("floor", "stub"):
                        break  # no state: nothing to delete
                    if command == "ADD" and len(set(addresses(results))) != n:
                        raise SystemExit(f"{c.name}: {n} concurrent ADDs gave duplicate addresses")
    finally:
        stub.close()
    out["concurrent"] = {"walls": walls, "cpu": cpu, "served": (svc.served, 2 * n * reps)}


# --------------------------------------------------------------------------- 3./5. pods


class Namespaces:
    """Throw-away network namespaces ``svcb-<hex>``, all deleted on close."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new(self) -> str:
        name = "svcb-" + secrets.token_hex(5)
        subprocess.run([IP, "netns", "add", name], check=True, capture_output=True)
        self.names.append(name)
        return f"/run/netns/{name}"

    def close(self) -> None:
        for name in reversed(self.names):
            subprocess.run([IP, "netns", "delete", name], check=False, capture_output=True)
        self.names.clear()


@contextmanager
def host_namespace(spaces: Namespaces) -> Iterator[str]:
    """A test "host": a fresh namespace with forwarding on; this thread (and every process
    it starts) is inside it for the block."""
    path = spaces.new()
    fd = open_netns(path)
    try:
        with entered(fd, path):
            for key in ("ipv4/ip_forward", "ipv6/conf/all/forwarding"):
                with open(f"/proc/sys/net/{key}", "w") as f:
                    f.write("1")
            subprocess.run([IP, "link", "set", "lo", "up"], check=True)
            yield path
    finally:
        os.close(fd)


def container_id() -> str:
    """A runtime's container id: 64 random hex digits.  (The host veth is named after
    the id's first 11 characters, as Calico names it outside Kubernetes: ids sharing
    them would replace each other's veth.)"""
    return secrets.token_hex(32)


def pod_conf(name: str, db: str, v6: bool) -> dict[str, Any]:
    ipam: dict[str, str] = {"type": "calico-ipam"}
    if v6:
        ipam["assign_ipv6"] = "true"
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "calico",
        "nodename": NODE,
        "datastore_type": "sqlite",
        "sqlite_path": db,
        "ipam": ipam,
    }


def ref_conf(tmp: Path, name: str, bridge: str, ranges: list[str]) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipam": {
            "type": "host-local",
            "dataDir": str(tmp / f"hl-{name}"),
            "ranges": [[{"subnet": r}] for r in ranges],
        },
    }


POD_POOLS_SVC = [("svc-v4", "10.70.0.0/16", None), ("svc-v6", "fd00:70::/48", None)]
POD_POOLS_LOCAL = [("loc-v4", "10.71.0.0/16", None), ("loc-v6", "fd00:71::/48", None)]


def pods(tmp: Path, n: int, out: dict[str, Any]) -> None:
    spaces = Namespaces()
    try:
        with host_namespace(spaces):
            svc_db, local_db = str(tmp / "pods-svc.db"), str(tmp / "pods-inproc.db")
            sqlite_store(svc_db, POD_POOLS_SVC)
            sqlite_store(local_db, POD_POOLS_LOCAL)
            svc = Service(tmp, "pods", {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": svc_db})
            with services([svc]):
                calico = svc.launcher("calico")
                none = {"TORTIE_CNI_SOCKET": "none"}
                contenders = [
                    Contender("service dual", calico, pod_conf("svc-dual", svc_db, True)),
                    Contender("service IPv4", calico, pod_conf("svc-v4", svc_db, False)),
                    Contender(
                        "reference dual",
                        f"{REF_CNI}/bridge",
                        ref_conf(tmp, "ref-dual", "br-dual", ["10.73.0.0/16", "fd00:73::/64"]),
                    ),
                    Contender(
                        "reference IPv4",
                        f"{REF_CNI}/bridge",
                        ref_conf(tmp, "ref-v4", "br-v4", ["10.74.0.0/16"]),
                    ),
                    Contender(
                        "in-process dual", calico, pod_conf("loc-dual", local_db, True), none
                    ),
                    Contender("in-process IPv4", calico, pod_conf("loc-v4", local_db, False), none),
                ]
                netns = {(c.name, i): spaces.new() for c in contenders for i in range(n)}
                cids = {key: container_id() for key in netns}
                res: dict[str, dict[str, list[float]]] = {
                    c.name: {"ADD": [], "DEL": []} for c in contenders
                }
                cpu: dict[str, float] = {}
                for command in ("ADD", "DEL"):
                    before = svc.cpu()
                    for i, c in rounds(contenders, n):
                        key = (c.name, i)
                        res[c.name][command].append(c.call(command, cids[key], netns[key]))
                    cpu[command] = (svc.cpu() - before) / (2 * n)  # two service contenders
                # The service's own time for a dual-stack pod (request sent from here).
                conf = contenders[0].conf
                prof: dict[str, list[float]] = {"svc ADD": [], "svc DEL": []}
                direct_pods = [(container_id(), spaces.new()) for _ in range(n)]
                for command in ("ADD", "DEL"):
                    for cid, ns in direct_pods:
                        took = direct(svc.sock, b"main", conf, command, cid, ns)
                        prof[f"svc {command}"].append(took)
            out["pods"] = {"res": res, "prof": prof, "cpu": cpu, "served": (svc.served, 6 * n)}
    finally:
        spaces.close()


def agent_rss(tmp: Path, n: int, out: dict[str, Any]) -> None:
    """``n`` dual-stack pods through a fresh service; then twice a churn: all ``n``
    deleted and ``n`` new ones added (still ``n`` pods on the node).  Memory and open
    descriptors after each step."""
    spaces = Namespaces()
    try:
        with host_namespace(spaces):
            db = str(tmp / "rss.db")
            sqlite_store(db, POD_POOLS_SVC)
            svc = Service(tmp, "rss", {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": db})
            with services([svc]):
                c = Contender("rss", svc.launcher("calico"), pod_conf("rss", db, True))
                samples = [("idle, after start", *svc.memory(), svc.fds())]
                live = [(container_id(), spaces.new()) for _ in range(n)]
                adds = [c.call("ADD", cid, ns) for cid, ns in live]
                samples.append((f"{n} pods added", *svc.memory(), svc.fds()))
                time.sleep(1.0)
                samples.append(("1 s later", *svc.memory(), svc.fds()))
                calls = n
                for churn in (1, 2):
                    for cid, ns in live:
                        c.call("DEL", cid, ns)
                    live = [(container_id(), spaces.new()) for _ in range(n)]
                    for cid, ns in live:
                        c.call("ADD", cid, ns)
                    calls += 2 * n
                    label = f"{n} deleted, {n} new added ({churn}. churn, {calls} calls)"
                    samples.append((label, *svc.memory(), svc.fds()))
            out["rss"] = {
                "samples": samples,
                "adds": adds,
                "served": (svc.served, calls),
                "pods": n,
                "calls": calls,
            }
    finally:
        spaces.close()


# --------------------------------------------------------------------------- 4. ten nodes


def ten_nodes(tmp: Path, nodes: int, per_node: int, reference: bool, out: dict[str, Any]) -> None:
    names = [f"node-{i:02d}" for i in range(nodes)]
    total = nodes * per_node
    runs: dict[str, dict[str, Any]] = {}
    with EtcdCluster(tmp / "etcd", size=3) as cluster:
        eps = tuple(cluster.endpoints)
        endpoints = {n: rotated(eps, i) for i, n in enumerate(names)}
        confs = {n: etcd_conf(n, endpoints[n]) for n in names}
        store = open_datastore(DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=eps))
        try:
            variants = ["service, all at once"]
            if reference:
                variants += [
                    "service, one after another per node",
                    "in-process, one after another per node",
                ]
            for k, variant in enumerate(variants):
                cluster.wipe()
                add_pools(store)
                svcs = []
                if variant.startswith("service"):
                    svcs = [
                        Service(
                            tmp,
                            f"v{k}-{n}",
                            {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": ",".join(endpoints[n])},
                        )
                        for n in names
                    ]
                with services(svcs):
                    by_node = {s.name.split("-", 1)[1]: s for s in svcs}
                    if variant == "service, all at once":
                        row = all_at_once(names, per_node, confs, by_node, cluster)
                    else:
                        sockets = {n: s.sock for n, s in by_node.items()} or None
                        plugin = svcs[0].launcher("calico-ipam") if svcs else launcher(tmp)
                        adds = run_nodes(plugin, confs, per_node, "ADD", sockets=sockets)
                        got = [a for o in adds.all() for a in o.addresses]
                        dels = run_nodes(plugin, confs, per_node, "DEL", sockets=sockets)
                        row = {
                            "add_wall": adds.wall,
                            "add_failed": len(adds.failures()),
                            "add_errors": sorted({o.describe()[:300] for o in adds.failures()}),
                            "addresses": got,
                            "del_wall": dels.wall,
                            "del_failed": len(dels.failures()),
                            "retry_failed": len(dels.failures()),  # not retried
                            "del_errors": sorted({o.describe()[:300] for o in dels.failures()}),
                        }
                    rss = [s.memory()[0] for s in svcs]
                    row["rss_max"] = max(rss) if rss else 0.0
                # checks (the ADDs' addresses were recorded before their DELs)
                v4 = {a for a in row["addresses"] if ":" not in a}
                v6 = {a for a in row["addresses"] if ":" in a}
                row["distinct"] = (len(v4), len(v6))
                row["duplicates"] = len(row["addresses"]) - len(v4) - len(v6)
                row["left"] = allocation_count(store)
                checked = check(store)
                row["check"] = checked.problem_count
                row["problems"] = sorted({p.line()[:200] for p in checked.problems})
                row["problems"] += [
                    f"leaked {x.address} (handle {x.handle_id})" for x in checked.leaks
                ]
                row["served"] = (sum(s.served or 0 for s in svcs), 2 * total if svcs else 0)
                ok = total - row["add_failed"]
                if row["distinct"] != (ok, ok) or row["duplicates"]:
                    raise SystemExit(f"{variant}: wrong outcome {row['distinct']} {row}")
                del row["addresses"]
                runs[variant] = row
        finally:
            store.close()
    out["ten"] = {"runs": runs, "nodes": nodes, "pods": per_node}


def launcher(tmp: Path) -> str:
    bin_dir = tmp / "bin-plain"
    if not bin_dir.exists():
        write_executables(str(bin_dir), str(tmp / "nobody-listens.sock"))
    return str(bin_dir / "calico-ipam")


def etcd_counts(cluster: EtcdCluster) -> dict[str, float]:
    """Requests the members handled (Range, Txn: summed over members) and raft proposals
    committed (one member's count: every member commits each), from their /metrics."""
    counts = {"Range": 0.0, "Txn": 0.0, "proposals": 0.0}
    for i, member in enumerate(cluster.members):
        with urllib.request.urlopen(f"{member.url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith("grpc_server_handled_total{") and 'grpc_code="OK"' in line:
                for method in ("Range", "Txn"):
                    if f'grpc_method="{method}"' in line:
                        counts[method] += float(line.rsplit(" ", 1)[1])
            elif i == 0 and line.startswith("etcd_server_proposals_committed_total "):
                counts["proposals"] += float(line.rsplit(" ", 1)[1])
    return counts


def all_at_once(
    names: Sequence[str],
    per_node: int,
    confs: dict[str, bytes],
    svcs: dict[str, Service],
    cluster: EtcdCluster,
) -> dict[str, Any]:
    """Every node's ``per_node`` ADDs started together (interleaved across nodes), then
    the same for DEL; wall time from the first start to the last exit.  DELs that fail
    are retried once, one after another, as a runtime would."""
    plugins = {n: Contender(n, svcs[n].launcher("calico-ipam"), confs[n]) for n in names}
    work = [(n, f"{n}-pod{p:04d}") for p in range(per_node) for n in names]
    etcd: dict[str, dict[str, float]] = {}

    def cpu() -> dict[str, float]:
        members = [m.pid for m in cluster.members if m.pid is not None]
        return {
            "plugins": children_cpu(),
            "services": sum(s.cpu() for s in svcs.values()),
            "etcd": sum(proc_cpu(pid) for pid in members),
        }

    def burst(command: str, failures: list[tuple[int, bytes]]) -> tuple[float, list[Any]]:
        before, cpu0 = etcd_counts(cluster), cpu()
        t0 = time.perf_counter()
        procs = [plugins[n].spawn(command, cid) for n, cid in work]
        results = finish(procs, f"10 nodes {command}", failures)
        wall = time.perf_counter() - t0
        after, cpu1 = etcd_counts(cluster), cpu()
        etcd[command] = {k: (after[k] - before[k]) / len(work) for k in after}
        etcd[command].update({f"cpu {k}": cpu1[k] - cpu0[k] for k in cpu1})
        etcd[command]["wall"] = wall
        return wall, results

    add_failed: list[tuple[int, bytes]] = []
    add_wall, results = burst("ADD", add_failed)
    got = addresses(results)
    del_failed: list[tuple[int, bytes]] = []
    del_wall, _ = burst("DEL", del_failed)
    retry_failed = 0
    for index, _out in del_failed:
        node, cid = work[index]
        retry = plugins[node].spawn("DEL", cid)
        failed: list[tuple[int, bytes]] = []
        finish([retry], "DEL retry", failed)
        retry_failed += len(failed)
    return {
        "add_wall": add_wall,
        "add_failed": len(add_failed),
        "add_errors": sorted({e[:300] for _, e in add_failed}),
        "addresses": got,
        "del_wall": del_wall,
        "del_failed": len(del_failed),
        "retry_failed": retry_failed,
        "del_errors": sorted({e[:300] for _, e in del_failed}),
        "etcd": etcd,
    }


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    etcd = "-"
    binary = etcd_binary()
    if binary:
        first = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        etcd = first.split("\n")[0].replace("etcd Version: ", "")
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} vCPU {cpu}, {mem:.0f} GiB, "
        f"Linux {platform.release()}, CPython {platform.python_version()}, etcd {etcd}, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )


def served_note(name: str, served: tuple[int | None, int]) -> str:
    got, expected = served
    if got is None:
        return f"- {name}: the service did not report how many calls it served"
    if got < expected:
        return (
            f"- {name}: **the service served {got} of {expected} calls**; the rest ran in-process"
        )
    return ""


def table(head: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> None:
    """A markdown table; ``align`` one character per column: l or r."""
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


Goal = tuple[str, str, str, str, str, str]


def verdict(value: float, limit: float, strict: bool = False) -> str:
    return "met" if (value < limit if strict else value <= limit) else "**not met**"


def report_ipam(out: dict[str, Any], goals: list[Goal], notes: list[str]) -> None:
    found = [k for k in ("ipam1000", "ipam5000") if k in out]
    if not found:
        return
    print("### IPAM per call (a process each; median (p95), ms)\n")
    rows = []
    for k in found:
        res, existing = out[k]["res"], int(k[4:])
        for verb in ("ADD", "DEL"):
            s, i, h = res["service"][verb], res["in-process"][verb], res["host-local"][verb]
            rows.append(
                [f"{existing:,}", verb, mp(s), mp(i), mp(h), ratio(med(s), med(h)),
                 ratio(med(i), med(h)), ms(out[k]["cpu"][verb])]
            )  # fmt: skip
            if verb == "ADD":
                limit = 1.0 if existing == 1000 else 0.5
                r = med(s) / med(h)
                goals.append(
                    (f"IPAM ADD vs host-local, {existing:,} allocations", f"{ms(med(s))} ms",
                     f"{ms(med(h))} ms", f"{r:.2f}×", f"≤ {limit}×", verdict(r, limit))
                )  # fmt: skip
        notes.append(served_note(f"IPAM per call, {existing:,}", out[k]["served"]))
    table(
        ["existing", "verb", "service", "in-process", "host-local", "service / host-local",
         "in-process / host-local", "service CPU per call (ms)"],
        rows,
        "rlrrrrrr",
    )  # fmt: skip
    print("Where the time goes (median (p95), ms):\n")
    rows = []
    for k in found:
        p = out[k]["prof"]
        rows.append(
            [f"{int(k[4:]):,}", mp(p["floor"]), mp(p["stub"]), mp(p["svc ADD"]), mp(p["svc DEL"])]
        )
    table(
        ["existing", "`python3 -I -S -c pass`", "launcher, stub service (answers at once)",
         "service work, ADD (socket from the bench)", "service work, DEL"],
        rows,
        "rrrrr",
    )  # fmt: skip


def report_concurrent(out: dict[str, Any], goals: list[Goal], notes: list[str]) -> None:
    if "concurrent" not in out:
        return
    c, cpu = out["concurrent"]["walls"], out["concurrent"]["cpu"]
    n = len(c["service"]["ADD"])
    print(f"### 100 IPAM calls at once on one node (wall time, s; median of {n} rounds)\n")
    rows = []
    for verb in ("ADD", "DEL"):
        s, i, h = (med(c[name][verb]) for name in ("service", "in-process", "host-local"))
        rows.append(
            [verb, f"{s:.2f}", f"{i:.2f}", f"{h:.2f}", ratio(s, h), ratio(i, h),
             ms(med(cpu[verb]))]
        )  # fmt: skip
    table(
        ["verb", "service", "in-process", "host-local", "service / host-local",
         "in-process / host-local", "service CPU per call (ms)"],
        rows,
        "lrrrrrr",
    )  # fmt: skip
    print(
        f"Floor, same rounds: 100 bare `python3 -I -S -c pass` at once "
        f"{med(c['floor']['ADD']):.2f} s; 100 launchers answered by the stub "
        f"{med(c['stub']['ADD']):.2f} s.\n"
    )
    s, h = med(c["service"]["ADD"]), med(c["host-local"]["ADD"])
    goals.append(
        ("100 concurrent IPAM ADDs vs host-local", f"{s:.2f} s", f"{h:.2f} s", f"{s / h:.2f}×",
         "≤ 1.0×", verdict(s / h, 1.0))
    )  # fmt: skip
    notes.append(served_note("concurrent", out["concurrent"]["served"]))


def report_pods(out: dict[str, Any], goals: list[Goal], notes: list[str]) -> None:
    if "pods" not in out:
        return
    res, prof, cpu = out["pods"]["res"], out["pods"]["prof"], out["pods"]["cpu"]
    n = len(res["service dual"]["ADD"])
    print(f"### Pod ADD/DEL, a fresh pod namespace each ({n} per contender; median (p95), ms)\n")
    rows = [[name, mp(r["ADD"]), mp(r["DEL"])] for name, r in res.items()]
    rows.append(
        ["service work alone, dual (request sent from the bench)", mp(prof["svc ADD"]),
         mp(prof["svc DEL"])]
    )  # fmt: skip
    rows.append(["service CPU per call (incl. its `ip` children)", ms(cpu["ADD"]), ms(cpu["DEL"])])
    table(["", "ADD", "DEL"], rows, "lrr")
    for fam, label in (("IPv4", "IPv4 only"), ("dual", "dual stack")):
        s, r = res[f"service {fam}"], res[f"reference {fam}"]
        for verb, limit in (("ADD", 1.0), ("DEL", 1.2)):
            x = med(s[verb]) / med(r[verb])
            goals.append(
                (f"pod {verb} vs bridge + host-local, {label}", f"{ms(med(s[verb]))} ms",
                 f"{ms(med(r[verb]))} ms", f"{x:.2f}×", f"≤ {limit}×", verdict(x, limit))
            )  # fmt: skip
    notes.append(served_note("pods", out["pods"]["served"]))


def report_ten(out: dict[str, Any], goals: list[Goal], notes: list[str]) -> None:
    if "ten" not in out:
        return
    t = out["ten"]
    total = t["nodes"] * t["pods"]
    print(
        f"### {t['nodes']} nodes × {t['pods']} dual-stack pods, 3-member etcd "
        f"({total} IPAM ADD processes, then as many DELs)\n"
    )
    rows = []
    for name, row in t["runs"].items():
        rows.append(
            [name, f"{row['add_wall']:.2f}", str(row["add_failed"]), f"{row['del_wall']:.2f}",
             f"{row['distinct'][0]} / {row['distinct'][1]}", str(row["del_failed"]),
             str(row["left"]), f"{row['rss_max']:.1f}" if row["rss_max"] else "-",
             str(row["check"])]
        )  # fmt: skip
        for err in row["add_errors"][:2]:
            notes.append(f"- 10 nodes, {name}: an ADD failed: `{err!r}`")
        for err in row["del_errors"][:2]:
            notes.append(f"- 10 nodes, {name}: a DEL failed: `{err!r}`")
        if row["del_failed"] and "etcd" in row:
            notes.append(
                f"- 10 nodes, {name}: {row['del_failed']} DELs failed, "
                f"{row['retry_failed']} failed again when retried once"
            )
        for line in row["problems"][:5]:
            notes.append(f"- 10 nodes, {name}, `ipam check` after DEL: {line}")
        if row["served"][1]:
            notes.append(served_note(f"10 nodes, {name}", row["served"]))
    table(
        ["run", "ADD wall (s)", "ADDs failed", "DEL wall (s)", "distinct v4 / v6",
         "DELs failed", "addresses left", "max serve-cni RSS (MiB)", "`ipam check` problems"],
        rows,
        "lrrrrrrrr",
    )  # fmt: skip
    main_run = t["runs"]["service, all at once"]
    etcd = main_run.get("etcd")
    if etcd:
        print(
            "Where the all-at-once run's time goes: etcd requests per pod (handled by the "
            "members) and CPU seconds spent while it ran (2 vCPUs give 2 s per second of wall "
            "time; the plugin processes are the 1,000 interpreters):\n"
        )
        table(
            ["verb", "wall (s)", "Range per pod", "Txn per pod", "raft proposals per pod",
             "CPU: plugin processes", "CPU: 10 services", "CPU: 3 etcd members"],
            [[verb, f"{c['wall']:.2f}", f"{c['Range']:.1f}", f"{c['Txn']:.1f}",
              f"{c['proposals']:.1f}", f"{c['cpu plugins']:.1f} s", f"{c['cpu services']:.1f} s",
              f"{c['cpu etcd']:.1f} s"]
             for verb, c in etcd.items()],
            "lrrrrrrr",
        )  # fmt: skip
    ref = t["runs"].get("in-process, one after another per node")
    goals.append(
        (f"{t['nodes']} nodes × {t['pods']} pods dual stack, 3-member etcd, all ADDs done",
         f"{main_run['add_wall']:.2f} s"
         + (f", {main_run['add_failed']} failed" if main_run["add_failed"] else ""),
         f"{ref['add_wall']:.2f} s in-process" if ref else "-",
         f"{main_run['add_wall'] / ref['add_wall']:.2f}×" if ref else "-",
         "< 5 s, all succeed",
         verdict(main_run["add_wall"] + (1e9 if main_run["add_failed"] else 0), 5.0, True))
    )  # fmt: skip


def report_rss(out: dict[str, Any], goals: list[Goal], notes: list[str]) -> None:
    if "rss" not in out:
        return
    r = out["rss"]
    n = r["pods"]
    print(f"### serve-cni memory ({n} dual-stack pods, real namespaces, SQLite)\n")
    rows = [[label, f"{rss:.1f}", f"{hwm:.1f}", str(fds)] for label, rss, hwm, fds in r["samples"]]
    table(["", "VmRSS (MiB)", "VmHWM (MiB)", "open descriptors"], rows, "lrrr")
    print(f"Pod ADD through the service while filling: {mp(r['adds'])} ms.\n")
    fresh, churned = r["samples"][1], r["samples"][-1]
    goals.append(
        (f"serve-cni RSS, {n} pods on the node (fresh service)", f"{fresh[1]:.1f} MiB", "-",
         "-", "< 80 MiB", verdict(fresh[1], 80.0, strict=True))
    )  # fmt: skip
    goals.append(
        (f"serve-cni RSS, {n} pods on the node after two churns ({r['calls']} calls)",
         f"{churned[1]:.1f} MiB", "-", "-", "< 80 MiB", verdict(churned[1], 80.0, strict=True))
    )  # fmt: skip
    notes.append(served_note("RSS", r["served"]))


def report(out: dict[str, Any], quick: bool) -> None:
    print(f"\n## Node service benchmark{' (--quick)' if quick else ''}\n\n{out['machine']}\n")
    goals: list[Goal] = []
    notes: list[str] = []
    for part in (report_ipam, report_concurrent, report_pods, report_ten, report_rss):
        part(out, goals, notes)
    print("### Goals\n")
    table(["measurement", "tortie (service)", "reference", "ratio", "goal", ""], goals, "lrrrll")
    notes = [n for n in notes if n]
    if notes:
        print("\n".join(notes) + "\n")
    print(
        "1-minute load average as each part started: "
        + ", ".join(out.get("load", []))
        + f"; at the end {os.getloadavg()[0]:.1f}"
    )


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few calls, 10 x 20 pods, no references")
    ap.add_argument(
        "--only",
        default="ipam,concurrent,pods,ten,rss",
        help="comma-separated sections to run (default: all)",
    )
    ap.add_argument(
        "--client",
        choices=("python", "compiled"),
        default="python",
        help="the plugins the services' contenders run (default python)",
    )
    args = ap.parse_args()
    CLIENT["kind"] = args.client
    only = set(args.only.split(","))
    quick = args.quick
    root = os.geteuid() == 0
    out: dict[str, Any] = {"machine": machine()}
    tmp = Path(tempfile.mkdtemp(prefix="tortie-svc-bench-"))
    steps: list[tuple[str, Callable[[], None]]] = []
    calls = 15 if quick else 60
    if "ipam" in only:
        for existing in (1000, 5000):
            steps.append(
                (f"IPAM per call, {existing}", partial(ipam_per_call, tmp, existing, calls, out))
            )
    if "concurrent" in only:
        steps.append(("100 concurrent", lambda: ipam_concurrent(tmp, 100, 2 if quick else 5, out)))
    if "pods" in only:
        if root:
            steps.append(("pods", lambda: pods(tmp, 8 if quick else 30, out)))
        else:
            print("pods: skipped (needs root for network namespaces)", file=sys.stderr)
    if "ten" in only:
        if etcd_binary() is None:
            print("10 nodes: skipped (etcd is not installed)", file=sys.stderr)
        else:
            steps.append(
                ("10 nodes", lambda: ten_nodes(tmp, 10, 20 if quick else 100, not quick, out))
            )
    if "rss" in only:
        if root:
            steps.append(("RSS", lambda: agent_rss(tmp, 30 if quick else 110, out)))
        else:
            print("RSS: skipped (needs root for network namespaces)", file=sys.stderr)
    try:
        for name, step in steps:
            t0 = time.perf_counter()
            print(f"{name} ...", file=sys.stderr, flush=True)
            out.setdefault("load", []).append(f"{name} {os.getloadavg()[0]:.1f}")
            step()
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(out, quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
