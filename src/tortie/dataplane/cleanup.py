"""``tortie node cleanup``: remove what tortie programmed on a host, piece by piece.

``PIECES`` is the list: when tortie starts programming a new kind of host state, add its
removal here (each piece removes only what tortie owns and says what it removed).
Left in place on purpose: pods' veths (their CNI DEL removes them), IP forwarding (other
software may rely on it), the run directory's files, and the datastore.
"""

from __future__ import annotations

from collections.abc import Callable

from tortie.errors import TortieError

__all__ = ["PIECES", "cleanup_host"]


def _nat(netns: str | None) -> str:
    from tortie.dataplane.nat import NatTables

    removed = NatTables(netns).cleanup()
    return f"removed {', '.join(f'table {t}' for t in removed)}" if removed else "none found"


def _vxlan(netns: str | None) -> str:
    from tortie.dataplane.vxlan import VxlanDataplane
    from tortie.node.vxlan import DEVICE_V4, DEVICE_V6, ROUTE_PROTOCOL

    writes = VxlanDataplane(netns).cleanup()
    if not writes:
        return "none found"
    return f"{writes} removals ({DEVICE_V4}, {DEVICE_V6} and routes of protocol {ROUTE_PROTOCOL})"


def _bird_routes(netns: str | None) -> str:
    """BIRD's kernel protocol keeps its routes (``persist``) after BIRD stops."""
    import subprocess

    from tortie.dataplane.iproute import ip_binary

    removed = 0
    for family in ("-4", "-6"):
        base = [ip_binary()] + (["-n", netns] if netns else []) + [family, "route"]
        listed = subprocess.run(
            [*base, "show", "proto", "bird", "table", "main"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        count = len([ln for ln in listed.stdout.splitlines() if ln.strip()])
        if not count:
            continue
        done = subprocess.run(
            [*base, "flush", "proto", "bird", "table", "main"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise TortieError(f"ip {family} route flush proto bird failed: {done.stderr.strip()}")
        removed += count
    return f"removed {removed} routes" if removed else "none found"


PIECES: tuple[tuple[str, Callable[[str | None], str]], ...] = (
    ("NAT tables (natOutgoing)", _nat),
    ("VXLAN devices and routes", _vxlan),
    ("routes BIRD left in the kernel (proto bird)", _bird_routes),
)


def cleanup_host(netns: str | None = None) -> list[tuple[str, str, bool]]:
    """Run every piece: (piece, what it did, succeeded).  A failing piece does not stop
    the others."""
    results: list[tuple[str, str, bool]] = []
    for name, piece in PIECES:
        try:
            results.append((name, piece(netns), True))
        except TortieError as exc:
            results.append((name, str(exc), False))
    return results
