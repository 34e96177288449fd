"""All-or-nothing assignment: the one place that decides what a request may take.

Where the store can (SQLite), the whole request is one transaction, so a request that
fails — even for a full disk, or killed — leaves nothing; elsewhere (etcd, memory) the
rollback below releases what was taken.

``assign`` checks every specific address against the enabled pools before writing,
assigns them, then the automatic ones of both families (whose pools the allocator
resolves before it writes).  A family that comes back short raises ``FamilyShortfall``
(an ``Exhausted`` naming the family); any failure releases what the request took —
the whole handle when the request created it — so the caller never undoes anything.
"""

from __future__ import annotations

import contextlib
import time

from tortie.core.addr import Address, parse_address
from tortie.errors import Exhausted, InvalidInput, NotFound, TortieError
from tortie.ipam import pools as poolsel
from tortie.ipam.records import atomic
from tortie.ipam.requests import AssignRequest, AutoAssignArgs, ReleaseOptions

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from tortie.ipam.service import Ipam


class FamilyShortfall(Exhausted):
    """The pools of one family could not give every address asked for."""

    def __init__(self, version: int, got: int, wanted: int, reasons: list[str]) -> None:
        why = "; ".join(reasons) or "the allocator returned no address"
        super().__init__(f"IPAM allocated {got} of {wanted} ({why})")
        self.ip_version = version
        self.got = got
        self.wanted = wanted
        self.reasons = reasons


def timestamp(now: float | None = None) -> str:
    """Calico's attribute timestamp format (Go's ``time.Time.String`` in UTC)."""
    now = time.time() if now is None else now
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
        + f".{int(now % 1 * 1e9):09d} +0000 UTC"
    )


def not_in_pool(addr: str) -> InvalidInput:
    exc = InvalidInput(
        f"The provided IP address is not in a configured pool ({addr}); "
        "choose an address inside an enabled IPPool or create a pool that contains it"
    )
    exc.ip_version = 6 if ":" in addr else 4
    return exc


def assign(ipam: Ipam, req: AssignRequest) -> list[str]:
    """Every address asked for, or none: returns them (specific ones as /32 or /128,
    automatic ones with the block prefix); raises with nothing taken."""
    if req.num4 < 0 or req.num6 < 0:
        raise InvalidInput("the number of addresses to assign must not be negative")
    specific = [parse_address(a) for a in req.addresses]
    if specific:  # only enabled pools count, as in Calico
        enabled = [p for p in poolsel.load_pools(ipam.store) if not p.disabled]
        for addr in specific:
            if poolsel.pool_containing(addr, enabled) is None:
                raise not_in_pool(str(addr))
    with atomic(ipam.store):
        return _assign(ipam, req, specific)


def _assign(ipam: Ipam, req: AssignRequest, specific: list[Address]) -> list[str]:
    fresh = req.handle_id is None or ipam.get_handle(req.handle_id) is None
    got: list[str] = []
    try:
        for addr in specific:
            try:
                got.append(ipam.assign_ip(str(addr), req.handle_id, req.attrs, req.node))
            except TortieError as exc:
                exc.ip_version = exc.ip_version or addr.version
                raise
        if req.num4 or req.num6:
            result = ipam.auto_assign(
                AutoAssignArgs(
                    node=req.node,
                    handle_id=req.handle_id,
                    num4=req.num4,
                    num6=req.num6,
                    attrs=req.attrs,
                    ipv4_pools=req.ipv4_pools,
                    ipv6_pools=req.ipv6_pools,
                    intent=req.intent,
                )
            )
            got += result.ipv4.addresses + result.ipv6.addresses
            for version, wanted, fam in ((4, req.num4, result.ipv4), (6, req.num6, result.ipv6)):
                if len(fam.addresses) < wanted:
                    raise FamilyShortfall(version, len(fam.addresses), wanted, fam.messages)
    except BaseException as exc:
        left = rollback(ipam, req.handle_id, got, fresh)
        if left:
            exc.add_note(left)
        raise
    return got


def rollback(ipam: Ipam, handle_id: str | None, got: list[str], fresh: bool) -> str:
    """Release what a failed request took: the whole handle when the request created it
    (that also catches an allocator that failed half-way), else the addresses known.
    Returns '' or one line saying what could not be released."""
    try:
        if fresh and handle_id is not None:
            with contextlib.suppress(NotFound):
                ipam.release_by_handle(handle_id)
        elif got:
            ipam.release_ips(ReleaseOptions(a.split("/")[0], handle_id) for a in got)
    except TortieError as exc:
        what = ", ".join(got) or f"handle {handle_id}"
        return f"could not release {what} after the failure: {exc}"
    return ""
