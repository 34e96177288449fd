"""IPPool in Calico's ``projectcalico.org/v3`` format (field readers: ``fields``).

Standard library only: the CNI plugins import this module.  Every rule of Calico's
pool validation lives in :func:`ippool_from_dict`; a pool that exists is valid.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from tortie.core.record import field, record
from tortie.errors import InvalidInput
from tortie.model.fields import (
    API_VERSION,
    CRD_API_VERSION,
    as_mapping,
    check_known,
    check_top,
    fail,
    get_bool,
    get_enum,
    get_str,
    get_str_list,
    object_name,
    read_metadata,
    type_name,
    write_metadata,
)

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "API_VERSION",
    "CRD_API_VERSION",
    "IPPool",
    "PoolIndex",
    "check_overlap",
    "check_pool_change",
    "ippool_from_dict",
    "ippool_to_dict",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# --------------------------------------------------------------------------------------
# IPPool
# --------------------------------------------------------------------------------------

ENCAP_MODES = ("Always", "CrossSubnet", "Never")
ALLOWED_USES = ("Workload", "Tunnel", "LoadBalancer")
ASSIGNMENT_MODES = ("Automatic", "Manual")
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
BLOCK_SIZE_RANGE = {4: (20, 32), 6: (116, 128)}
LINK_LOCAL = {
    4: ipaddress.IPv4Network("169.254.0.0/16"),
    6: ipaddress.IPv6Network("fe80::/10"),
}
IPPOOL_SPEC_FIELDS = (
    "cidr",
    "blockSize",
    "ipipMode",
    "vxlanMode",
    "natOutgoing",
    "disabled",
    "disableBGPExport",
    "nodeSelector",
    "namespaceSelector",
    "allowedUses",
    "assignmentMode",
)

ALL_NODES = "all()"  # the default nodeSelector: every node


@record
class IPPool:
    """A validated pool; ``cidr`` is the canonical compressed network text."""

    name: str
    cidr: str
    block_size: int
    ipip_mode: str = "Never"
    vxlan_mode: str = "Never"
    nat_outgoing: bool = False
    disabled: bool = False
    disable_bgp_export: bool = False
    node_selector: str = ALL_NODES
    allowed_uses: tuple[str, ...] = ("Workload", "Tunnel")
    assignment_mode: str = "Automatic"
    namespace_selector: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.cidr)

    @property
    def version(self) -> int:
        return self.network.version


def ippool_from_dict(d: Mapping[str, Any], *, strict: bool = True) -> IPPool:
    """Parse and validate a v3 IPPool object; defaults are filled in.

    ``strict=False`` ignores unknown fields (for objects a newer Calico wrote).
    """
    obj = object_name("IPPool", d)
    top = check_top(obj, d, ("IPPool",), (API_VERSION, CRD_API_VERSION), strict)
    meta = read_metadata(obj, top, strict=strict)
    obj = f"IPPool({meta.name})"
    spec = as_mapping(obj, "spec", top.get("spec"))
    check_known(obj, "spec", spec, IPPOOL_SPEC_FIELDS, strict)

    network = _read_cidr(obj, spec)
    version = network.version
    lo, hi = BLOCK_SIZE_RANGE[version]
    block_size = spec.get("blockSize")
    if block_size is None or block_size == 0:  # 0 is Go's "unset"
        block_size = DEFAULT_BLOCK_SIZE[version]
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        fail(obj, f"spec.blockSize must be an integer, not {block_size!r}", f"use {lo}-{hi}")
    if not lo <= block_size <= hi:
        fail(
            obj,
            f"spec.blockSize {block_size} is out of range for IPv{version} (must be {lo}-{hi})",
            f"choose a block size between {lo} and {hi}",
        )
    if network.prefixlen > block_size:
        fail(
            obj,
            f"spec.cidr {network} is smaller than one block of /{block_size}",
            f"use a CIDR of /{block_size} or larger, or a blockSize of at least "
            f"{network.prefixlen}",
        )

    ipip = get_enum(obj, "spec", spec, "ipipMode", ENCAP_MODES, "Never")
    vxlan = get_enum(obj, "spec", spec, "vxlanMode", ENCAP_MODES, "Never")
    if version == 6 and ipip != "Never":
        fail(
            obj,
            f"spec.ipipMode {ipip} is not supported for IPv6 pools",
            "set ipipMode: Never (use vxlanMode for IPv6 encapsulation)",
        )
    if ipip != "Never" and vxlan != "Never":
        fail(
            obj,
            f"spec.ipipMode {ipip} and spec.vxlanMode {vxlan} cannot both be enabled",
            "set one of them to Never",
        )

    uses = get_str_list(obj, "spec", spec, "allowedUses") or ("Workload", "Tunnel")
    for use in uses:
        if use not in ALLOWED_USES:
            fail(
                obj,
                f"spec.allowedUses value {use!r} is not one of {', '.join(ALLOWED_USES)}",
                "remove it or fix its spelling",
            )
    if len(set(uses)) != len(uses):
        fail(obj, f"spec.allowedUses {list(uses)} lists a value twice", "list each use once")
    if "LoadBalancer" in uses:
        if len(uses) > 1:
            fail(
                obj,
                "spec.allowedUses LoadBalancer cannot be combined with Workload or Tunnel",
                "use a separate pool for load balancer addresses",
            )
        if ipip != "Never" or vxlan != "Never":
            fail(
                obj,
                "a LoadBalancer pool cannot have IPIP or VXLAN enabled",
                "set ipipMode and vxlanMode to Never",
            )

    return IPPool(
        name=meta.name,
        cidr=str(network),
        block_size=block_size,
        ipip_mode=ipip,
        vxlan_mode=vxlan,
        nat_outgoing=get_bool(obj, "spec", spec, "natOutgoing", False),
        disabled=get_bool(obj, "spec", spec, "disabled", False),
        disable_bgp_export=get_bool(obj, "spec", spec, "disableBGPExport", False),
        node_selector=_read_selector(obj, spec, "nodeSelector", "all()"),
        allowed_uses=uses,
        assignment_mode=get_enum(
            obj, "spec", spec, "assignmentMode", ASSIGNMENT_MODES, "Automatic"
        ),
        namespace_selector=_read_selector(obj, spec, "namespaceSelector", ""),
        labels=meta.labels,
        annotations=meta.annotations,
        uid=meta.uid,
        creation_timestamp=meta.creation_timestamp,
        resource_version=meta.resource_version,
    )


def _read_cidr(obj: str, spec: Mapping[str, Any]) -> IPNetwork:
    text = spec.get("cidr")
    if text is None or text == "":
        fail(obj, "spec.cidr is missing", "set spec.cidr, e.g. 192.168.0.0/16")
    if not isinstance(text, str):
        fail(obj, f"spec.cidr must be a string, not {type_name(text)}", "quote the CIDR")
    addr, slash, prefix = text.partition("/")
    if not slash or not prefix.isdigit():
        fail(obj, f"spec.cidr {text!r} is not a CIDR", "write it as address/prefix-length")
    try:
        network = ipaddress.ip_network(text, strict=False)
        base = ipaddress.ip_address(addr)
    except ValueError as exc:
        fail(obj, f"spec.cidr {text!r} is not a valid CIDR ({exc})", "write it as address/prefix")
    if base != network.network_address:
        fail(obj, f"spec.cidr {text} is not strictly masked", f"use {network}")
    reserved = LINK_LOCAL[network.version]
    if network.overlaps(reserved):  # type: ignore[arg-type]
        fail(
            obj,
            f"spec.cidr {network} overlaps the link-local range {reserved}",
            f"choose a CIDR outside {reserved}",
        )
    return network


def _read_selector(obj: str, spec: Mapping[str, Any], key: str, default: str) -> str:
    text = get_str(obj, "spec", spec, key, default) or default
    if text and text.strip() != ALL_NODES:  # all(): no parser to load (plugin start-up)
        from tortie.core.selector import parse_selector

        try:
            parse_selector(text)
        except InvalidInput as exc:
            fail(
                obj,
                f"spec.{key} is invalid: {exc}",
                "fix the selector (e.g. all(), has(k), k == 'v', k in {'a', 'b'})",
            )
    return text


def ippool_to_dict(p: IPPool) -> dict[str, Any]:
    """The full v3 object, every default written out."""
    spec: dict[str, Any] = {
        "cidr": p.cidr,
        "blockSize": p.block_size,
        "ipipMode": p.ipip_mode,
        "vxlanMode": p.vxlan_mode,
        "natOutgoing": p.nat_outgoing,
        "disabled": p.disabled,
        "disableBGPExport": p.disable_bgp_export,
        "nodeSelector": p.node_selector,
    }
    if p.namespace_selector:
        spec["namespaceSelector"] = p.namespace_selector
    spec["allowedUses"] = list(p.allowed_uses)
    spec["assignmentMode"] = p.assignment_mode
    return {
        "apiVersion": API_VERSION,
        "kind": "IPPool",
        "metadata": write_metadata(
            p.name, p.labels, p.annotations, p.uid, p.creation_timestamp, p.resource_version
        ),
        "spec": spec,
    }


def check_pool_change(old: IPPool, new: IPPool) -> None:
    """Refuse an update that changes what may not change (cidr, blockSize)."""
    obj = f"IPPool({new.name})"
    if old.name != new.name:
        fail(obj, f"is not an update of IPPool({old.name})", "update a pool under its own name")
    if old.cidr != new.cidr:
        fail(
            obj,
            f"spec.cidr cannot be changed (from {old.cidr} to {new.cidr})",
            "create a new pool with the new CIDR, disable this one and migrate workloads",
        )
    if old.block_size != new.block_size:
        fail(
            obj,
            f"spec.blockSize cannot be changed (from {old.block_size} to {new.block_size})",
            "create a new pool with the new block size, disable this one and migrate workloads",
        )


def check_overlap(new: IPPool, existing: Iterable[IPPool]) -> None:
    """Refuse a pool whose CIDR overlaps another pool (itself, by name, excepted)."""
    network = new.network
    for pool in existing:
        if pool.name == new.name or pool.version != new.version:
            continue
        if network.overlaps(pool.network):
            raise InvalidInput(
                f"IPPool({new.name}) CIDR overlaps with IPPool({pool.name}) CIDR {pool.cidr}"
            )


class PoolIndex:
    """Pools of both families as sorted, non-overlapping address intervals: the overlap
    check of one pool is two binary searches, so validating n pools is O(n log n) (a
    multi-document apply of 20,000 pools takes seconds, not hours)."""

    def __init__(self, pools: Iterable[IPPool] = ()) -> None:
        self._starts: dict[int, list[int]] = {4: [], 6: []}
        self._entries: dict[int, list[tuple[int, int, str, str]]] = {4: [], 6: []}
        self._by_name: dict[str, tuple[int, int]] = {}
        for pool in pools:
            self.put(pool)

    def _remove(self, name: str) -> None:
        import bisect

        old = self._by_name.pop(name, None)
        if old is None:
            return
        version, start = old
        i = bisect.bisect_left(self._starts[version], start)
        while self._entries[version][i][2] != name:
            i += 1
        del self._starts[version][i]
        del self._entries[version][i]

    def check(self, new: IPPool) -> None:
        """Refuse ``new`` when its CIDR overlaps another pool of the index (itself, by
        name, excepted)."""
        import bisect

        net = ipaddress.ip_network(new.cidr)
        start, end = int(net.network_address), int(net.broadcast_address)
        starts, entries = self._starts[net.version], self._entries[net.version]
        i = bisect.bisect_right(starts, end)  # entries before i start at or before our end
        for j in (i - 1, i - 2):
            if j < 0:
                break
            s, e, name, cidr = entries[j]
            if name == new.name:
                continue
            if s <= end and e >= start:
                raise InvalidInput(
                    f"IPPool({new.name}) CIDR overlaps with IPPool({name}) CIDR {cidr}"
                )
            if name != new.name:
                break  # the others end before this one starts (no overlaps inside)

    def put(self, pool: IPPool) -> None:
        """Add or replace (by name) a pool already checked."""
        import bisect

        self._remove(pool.name)
        net = ipaddress.ip_network(pool.cidr)
        start = int(net.network_address)
        i = bisect.bisect_left(self._starts[net.version], start)
        self._starts[net.version].insert(i, start)
        entry = (start, int(net.broadcast_address), pool.name, pool.cidr)
        self._entries[net.version].insert(i, entry)
        self._by_name[pool.name] = (net.version, start)
