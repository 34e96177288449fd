"""IPAMConfiguration: Calico's v3 resource and its stored v2 form (/calico/ipam/v2/config).

Standard library only: the CNI plugins import this module.
"""

from __future__ import annotations

from collections.abc import Mapping

from tortie.core.record import field, record
from tortie.model.fields import (
    API_VERSION,
    CRD_API_VERSION,
    as_mapping,
    check_known,
    check_top,
    fail,
    get_bool,
    get_int,
    object_name,
    read_metadata,
    write_metadata,
)

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any

# --------------------------------------------------------------------------------------
# IPAMConfiguration
# --------------------------------------------------------------------------------------

MAX_INT32 = 2147483647


@record
class IPAMConfig:
    """Cluster-wide IPAM settings (the single ``default`` object).

    ``max_blocks_per_host`` 0 means Calico's default limit (20).
    """

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None

    @property
    def name(self) -> str:
        return "default"


def _check_ipamconfig(obj: str, strict_affinity: bool, auto: bool, max_blocks: int) -> None:
    if not strict_affinity and not auto:
        fail(
            obj,
            "strictAffinity false together with autoAllocateBlocks false leaves no way to "
            "get an address",
            "enable strictAffinity or autoAllocateBlocks",
        )
    if max_blocks > 0 and not strict_affinity:
        fail(
            obj,
            f"maxBlocksPerHost {max_blocks} needs strictAffinity",
            "set strictAffinity: true or maxBlocksPerHost: 0",
        )


def ipamconfig_from_dict(d: Mapping[str, Any], *, strict: bool = True) -> IPAMConfig:
    """Parse and validate a v3 IPAMConfiguration (alias ``IPAMConfig``)."""
    obj = object_name("IPAMConfiguration", d)
    top = check_top(
        obj, d, ("IPAMConfiguration", "IPAMConfig"), (API_VERSION, CRD_API_VERSION), strict
    )
    meta = read_metadata(obj, top, strict=strict)
    if meta.name != "default":
        fail(obj, f"metadata.name is {meta.name!r}; there is only one", "name it default")
    spec = as_mapping(obj, "spec", top.get("spec"))
    check_known(
        obj, "spec", spec, ("strictAffinity", "autoAllocateBlocks", "maxBlocksPerHost"), strict
    )
    strict_affinity = get_bool(obj, "spec", spec, "strictAffinity", False)
    auto = get_bool(obj, "spec", spec, "autoAllocateBlocks", True)
    max_blocks = get_int(obj, "spec", spec, "maxBlocksPerHost", 0, 0, MAX_INT32)
    _check_ipamconfig(obj, strict_affinity, auto, max_blocks)
    return IPAMConfig(
        strict_affinity=strict_affinity,
        auto_allocate_blocks=auto,
        max_blocks_per_host=max_blocks,
        labels=meta.labels,
        annotations=meta.annotations,
        uid=meta.uid,
        creation_timestamp=meta.creation_timestamp,
        resource_version=meta.resource_version,
    )


def ipamconfig_to_dict(c: IPAMConfig) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "IPAMConfiguration",
        "metadata": write_metadata(
            "default", c.labels, c.annotations, c.uid, c.creation_timestamp, c.resource_version
        ),
        "spec": {
            "strictAffinity": c.strict_affinity,
            "autoAllocateBlocks": c.auto_allocate_blocks,
            "maxBlocksPerHost": c.max_blocks_per_host,
        },
    }


# Calico's stored form (/calico/ipam/v2/config).  Its Go struct tags are
# strict_affinity, auto_allocate_blocks and -- unlike the other two -- maxBlocksPerHost,
# all omitempty: a missing key is false/0.  We read both spellings of the third.
_V2_MAX_BLOCKS = "maxBlocksPerHost"
_V2_MAX_BLOCKS_ALT = "max_blocks_per_host"


def ipamconfig_from_v2(d: Mapping[str, Any]) -> IPAMConfig:
    """Decode the stored v2 value (missing keys are false/0, as Go's omitempty wrote it)."""
    obj = "IPAMConfig(/calico/ipam/v2/config)"
    data = as_mapping(obj, "value", d)
    strict_affinity = get_bool(obj, "value", data, "strict_affinity", False)
    auto = get_bool(obj, "value", data, "auto_allocate_blocks", False)
    key = _V2_MAX_BLOCKS if _V2_MAX_BLOCKS in data else _V2_MAX_BLOCKS_ALT
    max_blocks = get_int(obj, "value", data, key, 0, 0, MAX_INT32)
    return IPAMConfig(
        strict_affinity=strict_affinity, auto_allocate_blocks=auto, max_blocks_per_host=max_blocks
    )


def ipamconfig_to_v2(c: IPAMConfig) -> dict[str, Any]:
    """The stored v2 value, every key written (Calico reads explicit zero values fine)."""
    return {
        "strict_affinity": c.strict_affinity,
        "auto_allocate_blocks": c.auto_allocate_blocks,
        _V2_MAX_BLOCKS: c.max_blocks_per_host,
    }
