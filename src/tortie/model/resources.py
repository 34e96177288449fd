"""The registry of every resource kind tortie handles.  Each kind lives in its own module
(``ippool``, ``ipamconfig``, ``node``, ``workloadendpoint``) and is re-exported here.

Standard library only: the CNI plugins import this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tortie.core.record import record
from tortie.errors import InvalidInput
from tortie.model.bgp import bgpconfiguration_from_dict, bgpconfiguration_to_dict
from tortie.model.bgppeer import bgppeer_from_dict, bgppeer_to_dict
from tortie.model.fields import (
    API_VERSION,
    CRD_API_VERSION,
)
from tortie.model.ipamconfig import (
    IPAMConfig,
    ipamconfig_from_dict,
    ipamconfig_from_v2,
    ipamconfig_to_dict,
    ipamconfig_to_v2,
)
from tortie.model.ippool import ippool_from_dict, ippool_to_dict
from tortie.model.node import Node, OrchRef, node_from_dict, node_to_dict
from tortie.model.workloadendpoint import (
    IPNAT,
    WorkloadEndpoint,
    WorkloadEndpointPort,
    workloadendpoint_from_dict,
    workloadendpoint_to_dict,
)

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object

__all__ = [
    "IPNAT",
    "KINDS",
    "IPAMConfig",
    "KindInfo",
    "Node",
    "OrchRef",
    "WorkloadEndpoint",
    "WorkloadEndpointPort",
    "ipamconfig_from_dict",
    "ipamconfig_from_v2",
    "ipamconfig_to_dict",
    "ipamconfig_to_v2",
    "kind_for_cli_name",
    "node_from_dict",
    "node_to_dict",
    "workloadendpoint_from_dict",
    "workloadendpoint_to_dict",
]

# --------------------------------------------------------------------------------------
# Registry of kinds
# --------------------------------------------------------------------------------------


class FromDict(Protocol):
    def __call__(self, d: Mapping[str, Any], *, strict: bool = True) -> Any: ...


@record
class KindInfo:
    """What the CLI and datastore need to know about one resource kind."""

    kind: str
    plural: str
    namespaced: bool
    from_dict: FromDict
    to_dict: Callable[[Any], dict[str, Any]]
    cli_names: tuple[str, ...]
    api_versions: tuple[str, ...] = (API_VERSION,)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


_IPPOOL = KindInfo(
    "IPPool",
    "ippools",
    False,
    ippool_from_dict,
    ippool_to_dict,
    ("ippool", "ippools", "pool", "pools", "ipp", "ipps"),
    (API_VERSION, CRD_API_VERSION),
)
_IPAMCONFIG = KindInfo(
    "IPAMConfiguration",
    "ipamconfigurations",
    False,
    ipamconfig_from_dict,
    ipamconfig_to_dict,
    ("ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"),
    (API_VERSION, CRD_API_VERSION),
)
_NODE = KindInfo("Node", "nodes", False, node_from_dict, node_to_dict, ("node", "nodes", "no"))
_WEP = KindInfo(
    "WorkloadEndpoint",
    "workloadendpoints",
    True,
    workloadendpoint_from_dict,
    workloadendpoint_to_dict,
    ("workloadendpoint", "workloadendpoints", "wep", "weps"),
)
_BGPCONFIG = KindInfo(
    "BGPConfiguration",
    "bgpconfigurations",
    False,
    bgpconfiguration_from_dict,
    bgpconfiguration_to_dict,
    ("bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"),
    (API_VERSION, CRD_API_VERSION),
)
_BGPPEER = KindInfo(
    "BGPPeer",
    "bgppeers",
    False,
    bgppeer_from_dict,
    bgppeer_to_dict,
    ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"),
    (API_VERSION, CRD_API_VERSION),
)


# FelixConfiguration is loaded on first use: this module is on the CNI plugins' import path.
def _felixconfiguration_from_dict(d: Mapping[str, Any], *, strict: bool = True) -> Any:
    from tortie.model.felixconfig import felixconfiguration_from_dict

    return felixconfiguration_from_dict(d, strict=strict)


def _felixconfiguration_to_dict(c: Any) -> dict[str, Any]:
    from tortie.model.felixconfig import felixconfiguration_to_dict

    return felixconfiguration_to_dict(c)


_FELIXCONFIG = KindInfo(
    "FelixConfiguration",
    "felixconfigurations",
    False,
    _felixconfiguration_from_dict,
    _felixconfiguration_to_dict,
    ("felixconfiguration", "felixconfigurations", "felixconfig", "felixconfigs"),
    (API_VERSION, CRD_API_VERSION),
)

KINDS: dict[str, KindInfo] = {
    "IPPool": _IPPOOL,
    "IPAMConfiguration": _IPAMCONFIG,
    "IPAMConfig": _IPAMCONFIG,
    "Node": _NODE,
    "WorkloadEndpoint": _WEP,
    "BGPConfiguration": _BGPCONFIG,
    "BGPPeer": _BGPPEER,
    "FelixConfiguration": _FELIXCONFIG,
}


def kind_for_cli_name(name: str) -> KindInfo:
    """The kind a CLI resource name stands for (case-insensitive; kind names work too)."""
    wanted = name.strip().lower()
    for info in dict.fromkeys(KINDS.values()):
        if wanted in info.cli_names or wanted == info.kind.lower():
            return info
    valid = "; ".join(", ".join(info.cli_names) for info in dict.fromkeys(KINDS.values()))
    raise InvalidInput(f"unknown resource type {name!r}; use one of: {valid}")
