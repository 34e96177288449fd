"""Record a VM's Neutron-chosen addresses as a WorkloadEndpoint and keep IPAM in step.

Addresses inside an enabled tortie IPPool are reserved in IPAM (a specific-address
assign under a handle derived from the endpoint) so no pod gets them; addresses outside
every pool are recorded as given.  An address another endpoint holds is refused.  The
endpoint is written only after every reservation succeeded; a failure releases what this
call reserved, so nothing is left half-written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tortie.core.addr import parse_address
from tortie.core.record import replace
from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    RevisionConflict,
)
from tortie.ipam import pools as poolsel
from tortie.ipam.requests import ReleaseOptions
from tortie.ipam.service import Ipam
from tortie.model.workloadendpoint import (
    WorkloadEndpoint,
    workloadendpoint_from_dict,
    workloadendpoint_to_dict,
)
from tortie.openstack.naming import handle_id

PLURAL = "workloadendpoints"


@dataclass
class Recorded:
    """What ``create`` did: the endpoint's name and where each address went."""

    namespace: str
    name: str
    reserved: list[str] = field(default_factory=list)
    outside_pools: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


def _address(net: str) -> str:
    return net.split("/", 1)[0]


def _keep_identity(new: WorkloadEndpoint, before: WorkloadEndpoint) -> WorkloadEndpoint:
    """An update keeps the stored uid and creation time, and labels and annotations
    another writer (Calico's Neutron driver: security groups, project, network id) put
    there unless the update sets them too."""
    return replace(
        new,
        uid=new.uid or before.uid,
        creation_timestamp=new.creation_timestamp or before.creation_timestamp,
        labels={**before.labels, **new.labels},
        annotations={**before.annotations, **new.annotations},
    )


class EndpointRecorder:
    def __init__(self, store: Datastore) -> None:
        self.store = store
        self.ipam = Ipam(store)

    def _holders(self, wep: WorkloadEndpoint) -> dict[str, str]:
        """Address -> ``namespace/name`` of every *other* endpoint holding it."""
        wanted = set(wep.ip_networks)
        held: dict[str, str] = {}
        for kv in self.store.list(keys.resource_prefix(PLURAL)):
            try:
                other = workloadendpoint_from_dict(json.loads(kv.value), strict=False)
            except (ValueError, InvalidInput):
                continue  # 'ipam check' reports corrupt endpoints
            if (other.namespace, other.name) == (wep.namespace, wep.name):
                continue
            for net in wanted.intersection(other.ip_networks):
                held[net] = f"{other.namespace}/{other.name}"
        return held

    def create(self, wep: WorkloadEndpoint) -> Recorded:
        """Create the endpoint, or update it when it exists (Neutron changed the port)."""
        where = f"WorkloadEndpoint {wep.namespace}/{wep.name}"
        if not wep.ip_networks:
            raise InvalidInput(f"{where} has no address; give at least one --ip")
        held = self._holders(wep)
        if held:
            net, owner = sorted(held.items())[0]
            raise Conflict(
                f"{where}: address {_address(net)} is held by WorkloadEndpoint {owner}; "
                "delete that endpoint first or give another address"
            )
        key = keys.resource_key(PLURAL, wep.name, wep.namespace)
        current = self.store.get(key)
        old: tuple[str, ...] = ()
        if current is not None:
            before = workloadendpoint_from_dict(json.loads(current.value), strict=False)
            old = before.ip_networks
            wep = _keep_identity(wep, before)
        handle = handle_id(wep.namespace, wep.name)
        pools = [p for p in poolsel.load_pools(self.store) if not p.disabled]
        done = Recorded(wep.namespace, wep.name)
        attrs = {"namespace": wep.namespace, "endpoint": wep.name, "workload": wep.workload}
        try:
            for net in wep.ip_networks:
                addr = parse_address(_address(net))
                if poolsel.pool_containing(addr, pools) is None:
                    done.outside_pools.append(net)
                elif net not in old:
                    self._reserve(where, net, handle, attrs, wep.node)
                    done.reserved.append(net)
            value = json.dumps(workloadendpoint_to_dict(wep), separators=(",", ":"))
            if current is None:
                self.store.create(key, value)
            else:
                self.store.update(key, value, current.revision)
        except BaseException:
            self._release(done.reserved, handle)
            raise
        gone = [net for net in old if net not in wep.ip_networks]
        done.released = self._release(gone, handle)
        return done

    def _reserve(self, where: str, net: str, handle: str, attrs: dict[str, str], node: str) -> None:
        try:
            self.ipam.assign_ip(_address(net), handle, attrs, node)
        except InvalidInput as exc:
            if "already assigned" not in str(exc):
                raise
            raise Conflict(
                f"{where}: address {_address(net)} is already allocated in IPAM (to a pod or "
                "a node); release it with 'tortie ipam release' or give another address"
            ) from None

    def _release(self, nets: list[str], handle: str) -> list[str]:
        if not nets:
            return []
        result = self.ipam.release_ips(
            ReleaseOptions(_address(net), handle_id=handle) for net in nets
        )
        return list(result.released)

    def delete(self, namespace: str, name: str) -> list[str]:
        """Delete the endpoint and release its reserved addresses; returns those."""
        key = keys.resource_key(PLURAL, name, namespace)
        for _ in range(5):
            kv = self.store.get(key)
            if kv is None:
                raise NotFound(
                    f"WorkloadEndpoint {namespace}/{name} does not exist; "
                    "list them with 'tortie get workloadendpoints -n " + namespace + "'"
                )
            try:
                self.store.delete(key, kv.revision)
                break
            except NotFound:
                continue
            except RevisionConflict:
                continue
        else:
            raise RevisionConflict(
                f"WorkloadEndpoint {namespace}/{name} kept changing while being deleted; retry"
            )
        try:
            return self.ipam.release_by_handle(handle_id(namespace, name))
        except NotFound:  # every address was outside the pools
            return []


__all__ = ["EndpointRecorder", "Recorded"]
