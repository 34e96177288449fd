"""The host rows of ``tortie preflight``: IPv6 forwarding, a global IPv6 address and a
default IPv6 route of the current network namespace.  Reads only: the fix for a failure
is printed, never applied."""

from __future__ import annotations

from tortie.errors import TortieError
from tortie.rollout.preflight import FAIL, PASS, WARN, Row


def check_host(
    fams: set[int], forwarding: str | None, global_v6: list[str], default_v6: bool
) -> list[Row]:
    if 6 not in fams:
        return []
    rows = [
        Row(
            "host",
            "net.ipv6.conf.all.forwarding",
            PASS if forwarding == "1" else FAIL,
            f"= {forwarding}",
            ""
            if forwarding == "1"
            else "sysctl -w net.ipv6.conf.all.forwarding=1 (tortie node run also does it)",
        ),
        Row(
            "host",
            "global IPv6 address",
            PASS if global_v6 else FAIL,
            ", ".join(global_v6[:3]) or "none",
            "" if global_v6 else "give the host a global (or ULA) IPv6 address",
        ),
        Row(
            "host",
            "default IPv6 route",
            PASS if default_v6 else WARN,
            "present" if default_v6 else "none",
            ""
            if default_v6
            else "add one for IPv6 traffic beyond the cluster "
            "(pod-to-pod traffic does not need it with tortie)",
        ),
    ]
    return rows


def read_host() -> tuple[str | None, list[str], bool]:
    """This namespace's IPv6 forwarding, global IPv6 addresses, default IPv6 route (reads
    only)."""
    from tortie.dataplane import sysctl
    from tortie.node.hostaddrs import has_default_route, host_addresses

    try:
        addrs = [
            a.interface
            for a in host_addresses()
            if a.version == 6 and a.scope == "global" and not a.unusable
        ]
        default = has_default_route(6)
    except (TortieError, ValueError):  # no iproute2 or unreadable output: report none
        addrs, default = [], False
    return sysctl.read("ipv6/conf/all/forwarding"), addrs, default
