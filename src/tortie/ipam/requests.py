"""What callers ask the IPAM service for, and what it answers."""

from __future__ import annotations

from collections.abc import Mapping

from tortie.core.record import field, record

WORKLOAD = "Workload"
TUNNEL = "Tunnel"


@record
class AutoAssignArgs:
    """Ask for ``num4`` IPv4 and ``num6`` IPv6 addresses for ``handle_id`` on ``node``.

    ``ipv4_pools``/``ipv6_pools`` name pools (by name or CIDR) to use in order; when given,
    node selectors are ignored.  ``attrs`` are recorded with every address.
    """

    node: str
    handle_id: str | None
    num4: int = 0
    num6: int = 0
    attrs: Mapping[str, str] = field(default_factory=dict)
    ipv4_pools: tuple[str, ...] = ()
    ipv6_pools: tuple[str, ...] = ()
    intent: str = WORKLOAD


@record
class FamilyResult:
    """Addresses of one family in CIDR form with the *block* prefix, e.g. 10.0.0.5/26."""

    addresses: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


@record
class AutoAssignResult:
    ipv4: FamilyResult
    ipv6: FamilyResult


@record
class ReleaseOptions:
    """Release ``address``; when given, only if it belongs to ``handle_id`` / was made by
    the write with ``sequence_number``."""

    address: str
    handle_id: str | None = None
    sequence_number: int | None = None


@record
class ReleaseResult:
    released: list[str] = field(default_factory=list)
    not_allocated: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


@record
class AssignRequest:
    """One all-or-nothing request: the specific ``addresses`` (any family), then
    ``num4`` IPv4 and ``num6`` IPv6 automatic ones, all for ``handle_id`` on ``node``.
    Pools are named as in ``AutoAssignArgs``."""

    node: str
    handle_id: str | None
    addresses: tuple[str, ...] = ()
    num4: int = 0
    num6: int = 0
    attrs: Mapping[str, str] = field(default_factory=dict)
    ipv4_pools: tuple[str, ...] = ()
    ipv6_pools: tuple[str, ...] = ()
    intent: str = WORKLOAD
