"""Run one tortie.dataplane.pod call in this process's netns (tests run it inside a
"host" namespace with ``ip netns exec``).  Request JSON on stdin, answer JSON on stdout:
{"op": "setup"|"teardown"|"check", "impl": "ip"|"netlink", "net": {...PodNetwork fields...},
 "host_ifname": ..., "addresses": [...], "netns": ..., "ll_timeout": seconds}
-> {"ok": result} or {"error": "InvalidInput", "message": "..."}
"""

from __future__ import annotations

import json
import sys
import time

from tortie.core.record import as_dict
from tortie.dataplane import pod
from tortie.errors import TortieError


def main() -> None:
    req = json.load(sys.stdin)
    if "ll_timeout" in req:
        pod.HOST_LINK_LOCAL_TIMEOUT = req["ll_timeout"]
    impl = pod
    if req.get("impl") == "netlink":  # the node service's dataplane: same API, netlink
        from tortie.dataplane import netlink_pod as impl  # type: ignore[no-redef]
    start = time.perf_counter()
    try:
        result: object = None
        if req["op"] == "setup":
            net = pod.PodNetwork(**{**req["net"], "addresses": tuple(req["net"]["addresses"])})
            result = as_dict(impl.setup_pod(net))
        elif req["op"] == "check":
            net = pod.PodNetwork(**{**req["net"], "addresses": tuple(req["net"]["addresses"])})
            impl.check_pod(net)
        else:
            impl.teardown_pod(req["host_ifname"], req["addresses"], req.get("netns"))
        answer = {"ok": result}
    except TortieError as exc:
        answer = {"error": type(exc).__name__, "message": str(exc)}
    answer["ms"] = (time.perf_counter() - start) * 1000
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
