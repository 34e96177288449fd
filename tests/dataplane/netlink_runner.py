"""Inside a "host" namespace: set up pods from many threads at once with the netlink
dataplane (as the node service does), then tear them down; report what each thread got
and the process's open file descriptors before and after.  Request JSON on stdin:
{"pods": [[netns path, address], ...], "rounds": N}."""

from __future__ import annotations

import json
import os
import sys
import threading

from tortie.dataplane import netlink_pod


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> None:
    req = json.load(sys.stdin)
    pods: list[list[str]] = req["pods"]
    errors: list[str] = []
    macs: dict[str, str] = {}

    def one(i: int, netns: str, address: str) -> None:
        try:
            net = netlink_pod.PodNetwork(f"calint{i}", "eth0", netns, (address,))
            macs[netns] = netlink_pod.setup_pod(net).pod_mac
        except Exception as exc:
            errors.append(f"{netns}: {exc}")

    netlink_pod.link_kind("lo")  # pyroute2's first use opens what it keeps
    before = fds()
    for _round in range(req.get("rounds", 1)):
        threads = [threading.Thread(target=one, args=(i, ns, a)) for i, (ns, a) in enumerate(pods)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if _round + 1 < req.get("rounds", 1):
            for i, (ns, a) in enumerate(pods):
                netlink_pod.teardown_pod(f"calint{i}", [a], ns)
    json.dump(
        {"errors": errors, "macs": macs, "fds_before": before, "fds_after": fds()}, sys.stdout
    )


if __name__ == "__main__":
    main()
