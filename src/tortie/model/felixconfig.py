"""FelixConfiguration in Calico's ``projectcalico.org/v3`` format: the natOutgoing settings
tortie acts on, and every other Calico field kept as it was given.

Names: ``default`` (cluster-wide) and ``node.<node name>`` (one node's overrides, which
win over ``default``; environment variables win over both: ``tortie.node.natsettings``).

What tortie acts on (``ACTED_ON``): ``natOutgoingAddress`` (IPv4 only, as Calico's
schema says), ``natOutgoingAddressV6`` (tortie's own: Calico applies its IPv4-only
address to the IPv6 rules too and fails, calico#3275), ``natOutgoingExclusions``,
``natPortRange`` and ``iptablesNATOutgoingInterfaceFilter``.  Every other field of
Calico's FelixConfiguration (``felixfields.CALICO_FIELDS``) is stored and shown again
unchanged, and the apply message names it as not acted on; a name Calico does not know is
refused (a typo would otherwise be kept and silently never acted on).

The field parsers are shared with the ``FELIX_*`` environment variables; each takes a
``bad(reason, fix)`` callback so both get one-line errors in their own words.
Standard library only.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping

from tortie.core.record import field, record
from tortie.model.felixfields import CALICO_FIELDS
from tortie.model.fields import (
    API_VERSION,
    CRD_API_VERSION,
    as_mapping,
    check_top,
    fail,
    object_name,
    read_metadata,
    type_name,
    write_metadata,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    Bad = Callable[[str, str], NoReturn]

__all__ = [
    "ACTED_ON",
    "ADDRESS_V6",
    "EXCLUSIONS",
    "FelixConfiguration",
    "PortRange",
    "felixconfiguration_from_dict",
    "felixconfiguration_to_dict",
    "parse_exclusions",
    "parse_interface_filter",
    "parse_nat_address",
    "parse_port_range",
]

ADDRESS_V6 = "natOutgoingAddressV6"  # tortie's addition: the IPv6 SNAT address
ACTED_ON = (
    "natOutgoingAddress",
    ADDRESS_V6,
    "natOutgoingExclusions",
    "natPortRange",
    "iptablesNATOutgoingInterfaceFilter",
)
EXCLUSIONS = ("IPPoolsOnly", "IPPoolsAndHostIPs")
_IFACE_FILTER = re.compile(r"[a-zA-Z0-9:._+-]{1,15}")  # Calico's ifaceFilter rule
_PORT_RANGE = re.compile(r"(\d{1,5})(?::(\d{1,5}))?")


@record
class PortRange:
    """``natPortRange``: the source ports SNAT may choose (inclusive)."""

    first: int
    last: int

    def to_json(self) -> int | str:
        """Calico's form: a single port as a number, a range as ``"first:last"``."""
        return self.first if self.first == self.last else f"{self.first}:{self.last}"


@record
class FelixConfiguration:
    """``None`` fields are unset (a ``node.<name>`` object inherits them from ``default``).
    ``other`` holds every Calico field tortie does not act on, in the given order."""

    name: str
    nat_outgoing_address: str | None = None
    nat_outgoing_address_v6: str | None = None
    nat_outgoing_exclusions: str | None = None
    nat_port_range: PortRange | None = None
    nat_interface_filter: str | None = None
    other: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None


# ------------------------------------------------------------------- field parsers


def parse_nat_address(label: str, text: str, version: int, other_label: str, bad: Bad) -> str:
    """A SNAT address of family ``version`` (canonical text).  The other family is refused
    with the place it belongs (``other_label``)."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        example = "203.0.113.10" if version == 4 else "2001:db8::10"
        bad(
            f"{label} {text!r} is not an IP address",
            f"write an IPv{version} address like {example}",
        )
    if address.version != version:
        bad(
            f"{label} takes an IPv{version} address only and {text!r} is IPv{address.version}",
            f"put it in {other_label}",
        )
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        bad(f"{label} {text!r} cannot be a source address", "use a unicast address of this node")
    return str(address)


def parse_port_range(label: str, value: object, bad: Bad) -> PortRange:
    """``natPortRange``: a port (number or text) or ``"first:last"``, ports 1-65535."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        bad(f"{label} must be a port range, not {type_name(value)}", 'write it like "32768:65535"')
    m = _PORT_RANGE.fullmatch(value.strip())
    if m is None:
        bad(f"{label} {value!r} is not a port range", 'write it like "32768:65535" or one port')
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) is not None else first
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        bad(f"{label} {value!r} has a port out of range", "use ports 1-65535")
    if first > last:
        bad(f"{label} {value!r} starts above its end", f"write it as {last}:{first}")
    return PortRange(first, last)


def parse_exclusions(label: str, text: str, bad: Bad, any_case: bool = False) -> str:
    """``natOutgoingExclusions``: ``IPPoolsOnly`` or ``IPPoolsAndHostIPs`` (the
    environment, like Felix, takes any letter case)."""
    for choice in EXCLUSIONS:
        if text == choice or (any_case and text.lower() == choice.lower()):
            return choice
    same = [c for c in EXCLUSIONS if c.lower() == text.lower()]
    fix = f"use {same[0]}" if same else f"use one of {', '.join(EXCLUSIONS)}"
    bad(f"{label} {text!r} is not one of {', '.join(EXCLUSIONS)}", fix)


def parse_interface_filter(label: str, text: str, bad: Bad) -> str:
    """``iptablesNATOutgoingInterfaceFilter``: an interface name, ``+`` at the end
    matching any suffix (iptables' syntax, as Calico takes it)."""
    if not _IFACE_FILTER.fullmatch(text):
        bad(
            f"{label} {text!r} is not an interface name or pattern",
            "use at most 15 letters, digits, ':', '.', '_', '-', and '+' at the end for any "
            "suffix (e.g. eth+)",
        )
    return text


# ------------------------------------------------------------------------ codec


def felixconfiguration_from_dict(
    d: Mapping[str, Any], *, strict: bool = True
) -> FelixConfiguration:
    """Parse and validate one FelixConfiguration.  ``strict=False`` (objects read back
    from the store, possibly written by Calico) accepts any name and any other field."""
    obj = object_name("FelixConfiguration", d)
    top = check_top(obj, d, ("FelixConfiguration",), (API_VERSION, CRD_API_VERSION), strict)
    meta = read_metadata(obj, top, strict=strict)
    obj = f"FelixConfiguration({meta.name})"
    if strict and meta.name != "default" and not meta.name.startswith("node."):
        fail(obj, "the name is neither default nor node.<node name>", "rename it")
    spec = as_mapping(obj, "spec", top.get("spec"))

    def bad(reason: str, fix: str) -> NoReturn:
        fail(obj, reason, fix)

    other: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ACTED_ON:
            continue
        if strict and key not in CALICO_FIELDS:
            close = difflib.get_close_matches(key, (*ACTED_ON, *CALICO_FIELDS), n=1)
            hint = f"did you mean {close[0]}?" if close else "remove it"
            fail(obj, f'unknown field "spec.{key}" (not a FelixConfiguration field)', hint)
        other[key] = value

    def text(key: str) -> str | None:
        value = spec.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            bad(f"spec.{key} must be a string, not {type_name(value)}", "quote the value")
        return value

    address4 = text("natOutgoingAddress")
    address6 = text(ADDRESS_V6)
    exclusions = text("natOutgoingExclusions")
    iface = text("iptablesNATOutgoingInterfaceFilter")
    ports = spec.get("natPortRange")
    return FelixConfiguration(
        name=meta.name,
        nat_outgoing_address=None
        if address4 is None
        else parse_nat_address("spec.natOutgoingAddress", address4, 4, f"spec.{ADDRESS_V6}", bad),
        nat_outgoing_address_v6=None
        if address6 is None
        else parse_nat_address(f"spec.{ADDRESS_V6}", address6, 6, "spec.natOutgoingAddress", bad),
        nat_outgoing_exclusions=None
        if exclusions is None
        else parse_exclusions("spec.natOutgoingExclusions", exclusions, bad),
        nat_port_range=None
        if ports is None or ports == ""
        else parse_port_range("spec.natPortRange", ports, bad),
        nat_interface_filter=None
        if iface is None
        else parse_interface_filter("spec.iptablesNATOutgoingInterfaceFilter", iface, bad),
        other=other,
        labels=meta.labels,
        annotations=meta.annotations,
        uid=meta.uid,
        creation_timestamp=meta.creation_timestamp,
        resource_version=meta.resource_version,
    )


def felixconfiguration_to_dict(c: FelixConfiguration) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for key, value in (
        ("natOutgoingAddress", c.nat_outgoing_address),
        (ADDRESS_V6, c.nat_outgoing_address_v6),
        ("natOutgoingExclusions", c.nat_outgoing_exclusions),
        ("natPortRange", None if c.nat_port_range is None else c.nat_port_range.to_json()),
        ("iptablesNATOutgoingInterfaceFilter", c.nat_interface_filter),
    ):
        if value is not None:
            spec[key] = value
    spec.update(c.other)
    return {
        "apiVersion": API_VERSION,
        "kind": "FelixConfiguration",
        "metadata": write_metadata(
            c.name, c.labels, c.annotations, c.uid, c.creation_timestamp, c.resource_version
        ),
        "spec": spec,
    }


def not_acted_on(c: FelixConfiguration) -> tuple[str, ...]:
    """The fields of ``c`` tortie stores but does not act on."""
    return tuple(c.other)
