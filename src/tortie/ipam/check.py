"""``tortie ipam check``: compare what IPAM has allocated with what is in use.

Loads blocks, affinities, handles, pools, nodes and workload endpoints, and reports:
corrupt stored values (with their key), leaked allocations, in-use addresses with no
allocation or outside every enabled pool, handles whose counts do not match the blocks,
handles named in blocks but missing, and affinities that disagree with their blocks.

With the runtime's live container list of a node (``--live``, the same input as CNI GC),
every allocation the CNI plugin made on that node for a container not in the list is a
leak — nodes that use only the IPAM plugin are checked too.  Otherwise, leaks are judged
only where tortie can know the owner: allocations made for a workload
(the CNI plugins record ``timestamp``, and ``pod`` for Kubernetes) or for a node's tunnel
(Calico's ``ipip-tunnel-addr-<node>``-style handles) on nodes that have
workload endpoints recorded (the main plugin writes them).  Everything else — nodes that
use only the IPAM plugin, addresses an orchestrator took with ``ipam assign`` — is counted
as "not verifiable", never as a leak: freeing a live address is worse than keeping a dead
one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from tortie.core.addr import network_in, parse_address, parse_network
from tortie.core.block import Block
from tortie.core.record import field, record
from tortie.datastore import keys
from tortie.datastore.base import Datastore, read_only
from tortie.errors import AlreadyExists, DatastoreError, InvalidInput
from tortie.ipam.pools import load_pools
from tortie.model.ipam_records import CONFIRMED, decode_affinity, decode_block, decode_handle


@record
class Problem:
    kind: str
    subject: str
    detail: str

    def line(self) -> str:
        return f"{self.kind}: {self.subject}: {self.detail}"


@record
class Leak:
    address: str
    handle_id: str | None
    sequence_number: int | None
    node: str | None
    attrs: dict[str, str]


@record(frozen=False)
class CheckReport:
    cluster_guid: str
    allocations: int = 0
    in_use: int = 0
    unverifiable: int = 0
    leaks: list[Leak] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def corrupt(self, key: str, exc: DatastoreError) -> None:
        """Record a stored value that could not be decoded (the message without its key)."""
        self.problems.append(Problem("corrupt-value", key, str(exc).split(": ", 1)[-1]))

    @property
    def problem_count(self) -> int:
        return len(self.problems) + len(self.leaks)

    def to_json(self) -> dict[str, Any]:
        return {
            "clusterGUID": self.cluster_guid,
            "allocations": self.allocations,
            "inUse": self.in_use,
            "notVerifiable": self.unverifiable,
            "leakedIPs": [
                {
                    "ip": leak.address,
                    "handle": leak.handle_id,
                    "sequenceNumber": leak.sequence_number,
                    "node": leak.node,
                    "attributes": leak.attrs,
                }
                for leak in self.leaks
            ],
            "problems": [
                {"kind": p.kind, "subject": p.subject, "detail": p.detail} for p in self.problems
            ],
            "problemCount": self.problem_count,
        }


def cluster_guid(store: Datastore) -> str:
    """The cluster's identity, created on first use (reports name it)."""
    import uuid

    key = keys.resource_key("clusterinformations", "default")
    kv = store.get(key)
    if kv is None and not read_only(store):  # a reader of a read-only store writes nothing
        doc = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "ClusterInformation",
            "metadata": {"name": "default"},
            "spec": {"clusterGUID": uuid.uuid4().hex},
        }
        with contextlib.suppress(AlreadyExists):  # a concurrent first user created it
            store.create(key, json.dumps(doc))
        kv = store.get(key)
    if kv is None:
        if read_only(store):
            return ""
        raise DatastoreError(f"{key}: the cluster identity could not be created; try again")
    try:
        doc = json.loads(kv.value)
        return str(doc["spec"]["clusterGUID"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DatastoreError(
            f"{key}: stored ClusterInformation is not valid ({exc!r}); fix or delete the key"
        ) from None


def _in_use_addresses(store: Datastore, report: CheckReport) -> tuple[dict[str, str], set[str]]:
    """Addresses held by workload endpoints and node tunnels -> owner; nodes with WEPs."""
    owners: dict[str, str] = {}
    wep_nodes: set[str] = set()
    for kv in store.list(keys.resource_prefix("workloadendpoints")):
        try:
            doc = json.loads(kv.value)
            spec = doc.get("spec", {})
            for net in spec.get("ipNetworks") or []:
                owners[str(parse_address(net))] = f"WorkloadEndpoint {doc['metadata']['name']}"
            if spec.get("node"):
                wep_nodes.add(str(spec["node"]))
        except (ValueError, KeyError, AttributeError, TypeError, InvalidInput) as exc:
            report.problems.append(
                Problem("corrupt-value", kv.key, f"not a valid WorkloadEndpoint ({exc})")
            )
    for kv in store.list(keys.resource_prefix("nodes")):
        try:
            doc = json.loads(kv.value)
        except ValueError:
            report.problems.append(Problem("corrupt-value", kv.key, "not valid JSON"))
            continue
        spec = doc.get("spec") if isinstance(doc, dict) else None
        if not isinstance(spec, dict):
            report.problems.append(Problem("corrupt-value", kv.key, "not a valid Node object"))
            continue
        # Calico keeps the IPIP tunnel address under spec.bgp, the VXLAN ones under spec.
        bgp_value = spec.get("bgp")
        bgp: dict[str, Any] = bgp_value if isinstance(bgp_value, dict) else {}
        tunnels = [bgp.get("ipv4IPIPTunnelAddr")]
        tunnels += [spec.get("ipv4VXLANTunnelAddr"), spec.get("ipv6VXLANTunnelAddr")]
        for value in tunnels:
            if value:
                try:
                    address = str(parse_address(str(value)))
                except InvalidInput as exc:
                    report.problems.append(Problem("corrupt-value", kv.key, str(exc)))
                    continue
                owners[address] = f"Node {kv.key.rsplit('/', 1)[1]} tunnel"
    return owners, wep_nodes


@record
class LiveContainers:
    """The runtime's live containers on one node (the input CNI GC gets): allocations the
    CNI plugin made there for a container not in this set are leaks."""

    node: str
    container_ids: frozenset[str]


def _cni_container(attrs: Mapping[str, str], handle_id: str | None) -> str | None:
    """The container id of an allocation the CNI plugin made (handle ``<network>.<id>``
    with the ``network`` attribute ADD records), else None."""
    network = attrs.get("network")
    if not network or not handle_id or not handle_id.startswith(network + "."):
        return None
    return handle_id[len(network) + 1 :]


def check(store: Datastore, live: LiveContainers | None = None) -> CheckReport:
    report = CheckReport(cluster_guid=cluster_guid(store))
    pools = load_pools(store)
    active = [p.network for p in pools if not p.disabled]
    owners, wep_nodes = _in_use_addresses(store, report)
    report.in_use = len(owners)

    blocks: dict[str, Block] = {}
    for version in (4, 6):
        for kv in store.list(keys.block_prefix(version)):
            try:
                blocks[kv.key] = decode_block(kv.key, kv.value)
            except DatastoreError as exc:
                report.corrupt(kv.key, exc)

    handle_counts: dict[str, dict[str, int]] = {}
    allocated: set[str] = set()
    for block in blocks.values():
        for ordinal, attr in block.allocated():
            report.allocations += 1
            address = str(block.address(ordinal))
            allocated.add(address)
            if attr.handle_id is not None:
                per_block = handle_counts.setdefault(attr.handle_id, {})
                per_block[block.cidr] = per_block.get(block.cidr, 0) + 1
            if address in owners:
                continue
            node = attr.secondary.get("node") or block.host()
            container = _cni_container(attr.secondary, attr.handle_id)
            if live is not None and node == live.node and container is not None:
                if container in live.container_ids:
                    continue  # in use by a live container
                leaked = True
            else:
                leaked = node in wep_nodes and _owner_is_recorded(attr.secondary, attr.handle_id)
            if leaked:
                report.leaks.append(
                    Leak(
                        address,
                        attr.handle_id,
                        block.sequence_number_for_allocation.get(str(ordinal)),
                        node,
                        dict(attr.secondary),
                    )
                )
            else:
                report.unverifiable += 1

    for address, owner in sorted(owners.items()):
        if address not in allocated:
            report.problems.append(
                Problem(
                    "in-use-not-allocated", address, f"used by {owner} but not allocated in IPAM"
                )
            )
        addr = parse_address(address)
        if not any(addr in net for net in active):
            report.problems.append(
                Problem(
                    "in-use-outside-pools",
                    address,
                    f"used by {owner} but outside every enabled IPPool",
                )
            )

    stored_handles: set[str] = set()
    for kv in store.list(keys.handle_prefix()):
        try:
            handle = decode_handle(kv.key, kv.value)
        except DatastoreError as exc:
            report.corrupt(kv.key, exc)
            continue
        stored_handles.add(handle.handle_id)
        actual = handle_counts.get(handle.handle_id, {})
        if not actual:
            report.problems.append(
                Problem(
                    "handle-without-ips",
                    handle.handle_id,
                    "handle exists but no block holds an address for it",
                )
            )
        elif actual != handle.block:
            report.problems.append(
                Problem(
                    "handle-count-mismatch",
                    handle.handle_id,
                    f"handle records {handle.block}, blocks hold {actual}",
                )
            )
    for handle_id in sorted(set(handle_counts) - stored_handles):
        report.problems.append(
            Problem(
                "missing-handle",
                handle_id,
                "named by allocations in blocks but the handle does not exist",
            )
        )

    _check_affinities(store, blocks, report)
    _check_outside_pools(blocks, [p.network for p in pools], report)
    return report


def _check_affinities(store: Datastore, blocks: dict[str, Block], report: CheckReport) -> None:
    claimed: set[tuple[str, str]] = set()
    for kv in store.list(keys.all_affinities_prefix()):
        try:
            aff = decode_affinity(kv.key, kv.value)
        except DatastoreError as exc:
            report.corrupt(kv.key, exc)
            continue
        node = keys.node_of_affinity_key(kv.key)
        cidr = keys.cidr_from_key(kv.key)
        net = parse_network(cidr)
        block = blocks.get(keys.block_key(str(net), net.version))
        if aff.state == CONFIRMED:
            claimed.add((node, cidr))
            if block is None:
                report.problems.append(
                    Problem(
                        "affinity-without-block",
                        kv.key,
                        "confirmed affinity but the block does not exist",
                    )
                )
            elif block.host() != node:
                report.problems.append(
                    Problem("affinity-mismatch", kv.key, f"block is affine to {block.affinity}")
                )
    for key, block in blocks.items():
        host = block.host()
        if host is not None and (host, block.cidr) not in claimed:
            report.problems.append(
                Problem(
                    "block-without-affinity",
                    key,
                    f"block says {block.affinity} but there is no confirmed affinity",
                )
            )


def _check_outside_pools(blocks: dict[str, Block], pools: list[Any], report: CheckReport) -> None:
    for key, block in blocks.items():
        if block.in_use and not any(network_in(parse_network(block.cidr), p) for p in pools):
            report.problems.append(
                Problem(
                    "block-outside-pools",
                    key,
                    f"{block.in_use} addresses allocated in a block outside every IPPool",
                )
            )


TUNNEL_HANDLE_PREFIXES = ("ipip-tunnel-addr-", "vxlan-tunnel-addr-", "vxlan-v6-tunnel-addr-")


def _owner_is_recorded(attrs: Mapping[str, str], handle_id: str | None) -> bool:
    """Whether the owner of an allocation is something tortie records (an endpoint or a
    node tunnel), so that its absence means a leak."""
    return (
        "timestamp" in attrs
        or "pod" in attrs
        or (handle_id or "").startswith(TUNNEL_HANDLE_PREFIXES)
    )
