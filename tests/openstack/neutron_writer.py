"""What Calico's Neutron driver (the ``networking-calico`` package) writes for a VM port.

Fallback for running the package itself: its endpoint-writing module
(``networking_calico/plugins/ml2/drivers/calico/endpoints.py``) imports ``neutron.db``
at import time and, through ``networking_calico.compat``, ``neutron_lib`` and the
``oslo`` libraries; ``datamodel_v3`` needs ``pbr`` and ``etcd3gw``.  None of that is
installable here without the Neutron server.  This module reproduces, field for field,
what its ``endpoint_name``, ``endpoint_spec``, ``endpoint_labels`` and
``endpoint_annotations`` functions and ``datamodel_v3.put`` (release 3.12) produce, and
writes it straight to etcd's JSON gateway, independent of tortie's code.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from etcd_cluster import EtcdCluster, b64, request

SG_LABEL_PREFIX = "sg.projectcalico.org/openstack-"
SG_NAME_LABEL_PREFIX = "sg-name.projectcalico.org/openstack-"
PROJECT_ID_LABEL_NAME = "projectcalico.org/openstack-project-id"
ANN_KEY_NETWORK_ID = "openstack.projectcalico.org/network-id"
ANN_KEY_FQDN = "openstack.projectcalico.org/fqdn"


def endpoint_name(port: dict[str, Any]) -> str:
    def esc(s: str) -> str:
        return s.replace("-", "--")

    return f"{esc(port['binding:host_id'])}-openstack-{esc(port['device_id'])}-{esc(port['id'])}"


def endpoint_spec(port: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "orchestrator": "openstack",
        "workload": port["device_id"],
        "node": port["binding:host_id"],
        "endpoint": port["id"],
        "interfaceName": "tap" + port["id"][:11],
        "mac": port["mac_address"],
    }
    ip_nets = []
    for ip in port["fixed_ips"]:
        if ":" in ip["ip_address"]:
            ip_nets.append(ip["ip_address"] + "/128")
            if ip["gateway"] is not None:
                data["ipv6Gateway"] = ip["gateway"]
        else:
            ip_nets.append(ip["ip_address"] + "/32")
            if ip["gateway"] is not None:
                data["ipv4Gateway"] = ip["gateway"]
    allowed_ips = []
    for aap in port.get("allowed_address_pairs", []):
        addr = str(aap["ip_address"])
        suffix = "/128" if ":" in addr else "/32"
        ip_nets.append(addr + suffix)
        allowed_ips.append(addr + suffix)
    data["ipNetworks"] = ip_nets
    data["allowedIps"] = allowed_ips
    nats = [{"internalIP": f["int_ip"], "externalIP": f["ext_ip"]} for f in port["floating_ips"]]
    if nats:
        data["ipNATs"] = nats
    return data


def endpoint_labels(port: dict[str, Any], namespace: str) -> dict[str, str]:
    labels = {}
    for sg_id in port["security_groups"]:
        sg_name = port.get("calico-sg-names", {}).get(sg_id, "")
        labels[SG_LABEL_PREFIX + sg_id] = sg_name
        if sg_name:
            labels[SG_NAME_LABEL_PREFIX + sg_name] = sg_id
    labels["projectcalico.org/namespace"] = namespace
    labels["projectcalico.org/orchestrator"] = "openstack"
    labels[PROJECT_ID_LABEL_NAME] = port["project_id"]
    return labels


def endpoint_annotations(port: dict[str, Any]) -> dict[str, str]:
    annotations = {ANN_KEY_NETWORK_ID: port["network_id"]}
    if port.get("dns_assignment"):
        annotations[ANN_KEY_FQDN] = port["dns_assignment"][0]["fqdn"]
    return annotations


def put_endpoint(etcd: EtcdCluster, port: dict[str, Any], namespace: str = "openstack") -> str:
    """``datamodel_v3.put`` of a new WorkloadEndpoint; returns its etcd key."""
    name = endpoint_name(port)
    key = f"/calico/resources/v3/projectcalico.org/workloadendpoints/{namespace}/{name}"
    value = {
        "kind": "WorkloadEndpoint",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": "2026-11-29T01:02:03Z",
            "uid": str(uuid.uuid4()),
            "annotations": endpoint_annotations(port),
            "labels": endpoint_labels(port, namespace),
        },
        "spec": endpoint_spec(port),
    }
    status, body = request(
        etcd.members[0], "POST", "/v3/kv/put", {"key": b64(key), "value": b64(json.dumps(value))}
    )
    assert status == 200, body
    return key


def get_raw(etcd: EtcdCluster, key: str) -> dict[str, Any] | None:
    status, body = request(etcd.members[0], "POST", "/v3/kv/range", {"key": b64(key)})
    assert status == 200, body
    kvs = body.get("kvs")
    if not kvs:
        return None
    import base64

    raw: dict[str, Any] = json.loads(base64.b64decode(kvs[0]["value"]))  # type: ignore[index]
    return raw
