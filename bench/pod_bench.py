"""Time a full pod ADD and DEL (fresh plugin process per call) for our ``calico`` plugin
(calico-ipam in-process, dual stack and IPv4-only) against the reference ``bridge`` +
``host-local`` in the same run.  Root only; everything happens in throw-away namespaces.

    sudo .venv/bin/python bench/pod_bench.py [N]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cni_main"))
sys.path.insert(0, str(ROOT / "tests"))
from main_helpers import Env  # noqa: E402

from netns import NetnsPool  # noqa: E402


def timed(
    world: Env, plugin: str, conf: dict[str, Any], command: str, cid: str, path: str
) -> float:
    data = json.dumps(conf).encode()
    argv = world.plugin_argv(plugin)
    env = world.env(command, cid, path)
    start = time.perf_counter()
    proc = subprocess.run(argv, input=data, env=env, capture_output=True, check=False)
    took = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{plugin} {command} failed: {proc.stdout!r} {proc.stderr!r}")
    return took


def bench(
    world: Env, pool: NetnsPool, label: str, plugin: str, conf: dict[str, Any], n: int
) -> None:
    pods = [(f"{label[:3]}{i:04d}benchcid", pool.new().path) for i in range(n)]
    adds = [timed(world, plugin, conf, "ADD", cid, path) for cid, path in pods]
    dels = [timed(world, plugin, conf, "DEL", cid, path) for cid, path in pods]
    print(
        f"{label:32s} ADD median {statistics.median(adds):6.1f} ms  "
        f"DEL median {statistics.median(dels):6.1f} ms  (n={n}, incl. nsenter)"
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with tempfile.TemporaryDirectory() as tmp, NetnsPool() as pool:
        host = pool.new()
        host.set_sysctl("net/ipv4/ip_forward", "1")
        host.set_sysctl("net/ipv6/conf/all/forwarding", "1")
        world = Env(Path(tmp), host)
        world.add_pools("v4", "v6")
        ns = pool.new()  # nsenter itself, for reference
        start = time.perf_counter()
        for _ in range(n):
            subprocess.run(["nsenter", f"--net={host.path}", "true"], check=True)
        print(f"{'nsenter + true':32s} {(time.perf_counter() - start) * 1000 / n:6.1f} ms mean")
        del ns
        bench(world, pool, "tortie calico dual-stack", "calico", world.conf("dual"), n)
        bench(world, pool, "tortie calico IPv4", "calico", world.conf("v4", name="n4"), n)
        ref = {
            "cniVersion": "1.0.0",
            "name": "refnet",
            "type": "bridge",
            "bridge": "br-bench",
            "isGateway": True,
            "ipam": {
                "type": "host-local",
                "dataDir": str(Path(tmp) / "hl"),
                "ranges": [[{"subnet": "10.73.0.0/16"}], [{"subnet": "fd00:73::/64"}]],
            },
        }
        bench(world, pool, "reference bridge+host-local dual", "bridge", ref, n)
        ref4 = {
            **ref,
            "name": "refnet4",
            "bridge": "br-bench4",
            "ipam": {**ref["ipam"], "ranges": [[{"subnet": "10.74.0.0/16"}]]},  # type: ignore[dict-item]
        }
        bench(world, pool, "reference bridge+host-local IPv4", "bridge", ref4, n)


if __name__ == "__main__":
    main()
