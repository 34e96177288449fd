"""Run tortie.dataplane calls in this process's netns (tests run it inside a "host"
namespace with ``ip netns exec``).  Request JSON on stdin, answer JSON on stdout:
{"op": "setup"|"teardown"|"check", "impl": "ip"|"netlink", "net": {...PodNetwork fields...},
 "host_ifname": ..., "addresses": [...], "netns": ..., "ll_timeout": seconds}
-> {"ok": result} or {"error": "InvalidInput", "message": "..."}

``impl`` picks the dataplane: ``ip`` (tortie.dataplane.pod, the CNI plugin's) or
``netlink`` (tortie.dataplane.netlink_pod, the node service's); default ``ip``.
Operations of several calls in one process, for the netlink dataplane's own tests:
{"op": "parallel", "impl": ..., "nets": [...]} sets up every pod at once, one thread each
-> {"ok": [result or {"error": ..., "message": ...}, ...]};
{"op": "cycles", "impl": ..., "net": {...}, "count": N} sets up and tears down N times
-> {"ok": {"ms": [setup+teardown per cycle], "fds": [before, after],
           "threads": [before, after]}}.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tortie.core.record import as_dict
from tortie.dataplane import pod
from tortie.errors import TortieError

Setup = Callable[[pod.PodNetwork], pod.PodInterfaces]
Teardown = Callable[[str, Sequence[str], "str | None"], None]


def dataplane(impl: str) -> tuple[Setup, Teardown]:
    """The setup and teardown functions of ``impl`` (imported only when asked for, so
    the ``ip`` runs never load pyroute2)."""
    if impl == "netlink":
        from tortie.dataplane import netlink_pod

        return netlink_pod.setup_pod, netlink_pod.teardown_pod
    if impl != "ip":
        raise SystemExit(f"unknown impl {impl!r}: ip or netlink")
    return pod.setup_pod, pod.teardown_pod


def pod_network(spec: dict[str, Any]) -> pod.PodNetwork:
    return pod.PodNetwork(**{**spec, "addresses": tuple(spec["addresses"])})


def error(exc: TortieError) -> dict[str, Any]:
    return {"error": type(exc).__name__, "message": str(exc)}


def parallel(setup: Setup, specs: list[dict[str, Any]]) -> list[Any]:
    """Set up every pod at once, one thread each, all released together."""
    results: list[Any] = [None] * len(specs)
    barrier = threading.Barrier(len(specs))

    def one(i: int) -> None:
        net = pod_network(specs[i])
        barrier.wait()
        try:
            results[i] = as_dict(setup(net))
        except TortieError as exc:
            results[i] = error(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def cycles(setup: Setup, teardown: Teardown, spec: dict[str, Any], count: int) -> Any:
    """``count`` setups and teardowns of one pod: time of each, and descriptors and
    threads of this process before the first and after the last."""
    net = pod_network(spec)
    fds = [len(os.listdir("/proc/self/fd"))]
    threads = [threading.active_count()]
    ms = []
    for _ in range(count):
        start = time.perf_counter()
        setup(net)
        teardown(net.host_ifname, net.addresses, net.netns)
        ms.append((time.perf_counter() - start) * 1000)
    fds.append(len(os.listdir("/proc/self/fd")))
    threads.append(threading.active_count())
    return {"ms": ms, "fds": fds, "threads": threads}


def main() -> None:
    req = json.load(sys.stdin)
    if "ll_timeout" in req:
        pod.HOST_LINK_LOCAL_TIMEOUT = req["ll_timeout"]  # both dataplanes wait with it
    setup, teardown = dataplane(req.get("impl", "ip"))
    start = time.perf_counter()
    try:
        result: object = None
        if req["op"] == "setup":
            result = as_dict(setup(pod_network(req["net"])))
        elif req["op"] == "check":
            pod.check_pod(pod_network(req["net"]))
        elif req["op"] == "parallel":
            result = parallel(setup, req["nets"])
        elif req["op"] == "cycles":
            result = cycles(setup, teardown, req["net"], req["count"])
        else:
            teardown(req["host_ifname"], req["addresses"], req.get("netns"))
        answer = {"ok": result}
    except TortieError as exc:
        answer = error(exc)
    answer["ms"] = (time.perf_counter() - start) * 1000
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
