"""The WorkloadEndpoint the main CNI plugin records for each pod interface
(calico-behaviour.md §4): naming, building, writing, deleting, checking, GC.

Standard library and tortie's stdlib-only modules: imported on every plugin call.
"""

from __future__ import annotations

import contextlib
import json
import time

from tortie.core.record import record
from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import NotFound, RevisionConflict
from tortie.ipam.retry import RetryPolicy, run_cas
from tortie.model.resources import (
    WorkloadEndpoint,
    workloadendpoint_from_dict,
    workloadendpoint_to_dict,
)

PLURAL = "workloadendpoints"
K8S = "k8s"
CNI = "cni"
# tortie's own annotation: which CNI network wrote the endpoint (GC removes only its own).
NETWORK_ANNOTATION = "tortie.dev/cni-network"
_POLICY = RetryPolicy(max_attempts=5, deadline_s=10.0)  # endpoints: few writers


@record
class EndpointId:
    """Who the endpoint belongs to: Kubernetes pod (``pod`` set) or a plain container."""

    node: str
    container_id: str
    ifname: str
    pod: str = ""
    namespace: str = ""

    @property
    def orchestrator(self) -> str:
        return K8S if self.pod else CNI

    @property
    def wep_namespace(self) -> str:
        return self.namespace or "default"

    @property
    def name(self) -> str:
        """``<node>-k8s-<pod>-<ifname>`` or ``<node>-cni-<containerID>-<ifname>``; dashes
        inside each segment doubled, as Calico does; lower case (a resource name is a
        DNS-1123 subdomain, while a container id or interface may have capitals)."""
        workload = self.pod if self.pod else self.container_id
        parts = (self.node, self.orchestrator, workload, self.ifname)
        return "-".join(p.lower().replace("-", "--") for p in parts)

    @property
    def key(self) -> str:
        return keys.resource_key(PLURAL, self.name, self.wep_namespace)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def build_endpoint(
    ident: EndpointId,
    network: str,
    ip_networks: tuple[str, ...],
    interface_name: str,
    mac: str,
) -> WorkloadEndpoint:
    if ident.pod:
        profiles: tuple[str, ...] = (f"kns.{ident.wep_namespace}",)
        labels = {
            "projectcalico.org/namespace": ident.wep_namespace,
            "projectcalico.org/orchestrator": K8S,
        }
    else:
        profiles = (network,)
        labels = {}
    return WorkloadEndpoint(
        name=ident.name,
        namespace=ident.wep_namespace,
        orchestrator=ident.orchestrator,
        workload=ident.container_id if not ident.pod else "",
        node=ident.node,
        pod=ident.pod,
        endpoint=ident.ifname,
        container_id=ident.container_id,
        ip_networks=ip_networks,
        profiles=profiles,
        interface_name=interface_name,
        mac=mac.lower(),
        labels=labels,
        annotations={NETWORK_ANNOTATION: network},
        creation_timestamp=_now(),
    )


def _encode(wep: WorkloadEndpoint) -> str:
    return json.dumps(workloadendpoint_to_dict(wep), separators=(",", ":"))


def write_endpoint(store: Datastore, wep: WorkloadEndpoint) -> None:
    """Create the endpoint, or overwrite an existing one of the same name (a re-ADD of the
    same pod, as Calico does)."""
    key = keys.resource_key(PLURAL, wep.name, wep.namespace)
    value = _encode(wep)

    def attempt() -> None:
        current = store.get(key)
        if current is None:
            store.create(key, value)
        else:
            store.update(key, value, current.revision)

    run_cas(attempt, f"WorkloadEndpoint {wep.namespace}/{wep.name} being written", _POLICY)


def read_endpoint(store: Datastore, ident: EndpointId) -> WorkloadEndpoint | None:
    kv = store.get(ident.key)
    if kv is None:
        return None
    return workloadendpoint_from_dict(json.loads(kv.value), strict=False)


def delete_endpoint(store: Datastore, ident: EndpointId) -> bool:
    """Delete the endpoint if it belongs to ``ident.container_id``.  True when deleted or
    already gone; False when it belongs to another container (a newer sandbox of the
    same pod), which is then left alone."""

    def attempt() -> bool:
        kv = store.get(ident.key)
        if kv is None:
            return True
        wep = workloadendpoint_from_dict(json.loads(kv.value), strict=False)
        if wep.container_id and wep.container_id != ident.container_id:
            return False
        with contextlib.suppress(NotFound):
            store.delete(ident.key, kv.revision)
        return True

    what = f"WorkloadEndpoint {ident.wep_namespace}/{ident.name} being deleted"
    return run_cas(attempt, what, _POLICY)


def check_endpoint(
    store: Datastore,
    ident: EndpointId,
    ip_networks: tuple[str, ...],
    interface_name: str,
    mac: str | None,
) -> list[str]:
    """Differences between the stored endpoint and what ADD returned."""
    wep = read_endpoint(store, ident)
    where = f"WorkloadEndpoint {ident.wep_namespace}/{ident.name}"
    if wep is None:
        return [f"{where} does not exist"]
    problems = []
    if wep.container_id != ident.container_id:
        problems.append(f"{where} belongs to container {wep.container_id}")
    if set(wep.ip_networks) != set(ip_networks):
        problems.append(
            f"{where} has ipNetworks {list(wep.ip_networks)}, prevResult has {list(ip_networks)}"
        )
    if wep.interface_name != interface_name:
        problems.append(f"{where} has interfaceName {wep.interface_name}, not {interface_name}")
    if mac is not None and wep.mac != mac.lower():
        problems.append(f"{where} has mac {wep.mac}, prevResult has {mac}")
    return problems


def gc_endpoints(store: Datastore, node: str, network: str, valid: set[str]) -> list[str]:
    """Delete the endpoints this network wrote on ``node`` whose container is not in
    ``valid``.  Returns their names."""
    removed = []
    for kv in store.list(keys.resource_prefix(PLURAL)):
        try:
            wep = workloadendpoint_from_dict(json.loads(kv.value), strict=False)
        except (ValueError, Exception):  # a broken record is not ours to judge
            continue
        if (
            wep.node != node
            or wep.annotations.get(NETWORK_ANNOTATION) != network
            or wep.container_id in valid
        ):
            continue
        try:
            store.delete(kv.key, kv.revision)
        except (NotFound, RevisionConflict):
            continue
        removed.append(f"{wep.namespace}/{wep.name}")
    return removed
