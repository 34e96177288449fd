"""The natOutgoing settings in force on one node: FelixConfiguration ``default``, then
``node.<name>``, then the ``FELIX_*`` environment variables, each overriding the one
before (Felix's precedence: environment, then per-host, then global).  Pure.

Environment variables (Felix's names, any letter case; empty means unset; ``none`` sets
the field back to its zero value, overriding the datastore, as in Felix):

  FELIX_NATOUTGOINGADDRESS     IPv4 SNAT address (instead of masquerade)
  FELIX_NATOUTGOINGADDRESSV6   IPv6 SNAT address (tortie's; Calico has none, calico#3275)
  FELIX_NATOUTGOINGEXCLUSIONS  IPPoolsOnly (default) | IPPoolsAndHostIPs
  FELIX_NATPORTRANGE           PORT or FIRST:LAST, the source ports SNAT may use
  FELIX_IPTABLESNATOUTGOINGINTERFACEFILTER  only NAT out of these interfaces (eth+)
  FELIX_IPV6SUPPORT            false: no IPv6 NAT table (as the rest of the agent)

A bad environment variable raises ``InvalidInput`` naming it (the agent refuses to start,
as for every other variable).  A stored FelixConfiguration tortie cannot read (written by
something else) is left out and named in ``NatSettings.problems``, so the node keeps
NATing with the other sources instead of stopping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from tortie.core.record import field, record
from tortie.errors import InvalidInput
from tortie.model.felixconfig import (
    ADDRESS_V6,
    FelixConfiguration,
    PortRange,
    felixconfiguration_from_dict,
    parse_exclusions,
    parse_interface_filter,
    parse_nat_address,
    parse_port_range,
)
from tortie.node.config import parse_bool

__all__ = ["ENV", "NatSettings", "nat_settings"]

ENV = {
    "natOutgoingAddress": "FELIX_NATOUTGOINGADDRESS",
    ADDRESS_V6: "FELIX_NATOUTGOINGADDRESSV6",
    "natOutgoingExclusions": "FELIX_NATOUTGOINGEXCLUSIONS",
    "natPortRange": "FELIX_NATPORTRANGE",
    "iptablesNATOutgoingInterfaceFilter": "FELIX_IPTABLESNATOUTGOINGINTERFACEFILTER",
}


@record
class NatSettings:
    """What the NAT rules are rendered from.  ``origins`` names, for each field that is
    not at its default, where its value came from (``FELIX_NATPORTRANGE``,
    ``FelixConfiguration(node.n1)``)."""

    exclusions: str = "IPPoolsOnly"
    address_v4: str | None = None
    address_v6: str | None = None
    port_range: PortRange | None = None
    interface_filter: str | None = None
    ipv6: bool = True
    origins: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


Source = Mapping[str, Any] | FelixConfiguration | None


def _values(c: FelixConfiguration) -> dict[str, object]:
    """The fields ``c`` sets (None: unset)."""
    return {
        "natOutgoingAddress": c.nat_outgoing_address,
        ADDRESS_V6: c.nat_outgoing_address_v6,
        "natOutgoingExclusions": c.nat_outgoing_exclusions,
        "natPortRange": c.nat_port_range,
        "iptablesNATOutgoingInterfaceFilter": c.nat_interface_filter,
    }


_ZERO = object()  # "none": back to the zero value


def _from_env(env: Mapping[str, str]) -> dict[str, object]:
    felix = {k.upper(): v for k, v in env.items() if k.upper().startswith("FELIX_")}
    out: dict[str, object] = {}
    for key, variable in ENV.items():
        raw = felix.get(variable, "").strip()
        if not raw:
            continue
        if raw.lower() == "none":
            out[key] = _ZERO
            continue

        def bad(reason: str, fix: str, variable: str = variable) -> NoReturn:
            raise InvalidInput(f"{reason}; {fix}, or unset {variable}")

        value: object
        if key == "natOutgoingAddress":
            value = parse_nat_address(variable, raw, 4, ENV[ADDRESS_V6], bad)
        elif key == ADDRESS_V6:
            value = parse_nat_address(variable, raw, 6, ENV["natOutgoingAddress"], bad)
        elif key == "natOutgoingExclusions":
            value = parse_exclusions(variable, raw, bad, any_case=True)
        elif key == "natPortRange":
            value = parse_port_range(variable, raw, bad)
        else:
            value = parse_interface_filter(variable, raw, bad)
        out[key] = value
    return out


def nat_settings(felix_default: Source, felix_node: Source, env: Mapping[str, str]) -> NatSettings:
    """Merge the sources (documents as stored, parsed records, or None)."""
    layers: list[tuple[str, dict[str, object]]] = []
    problems: list[str] = []
    for source in (felix_default, felix_node):
        if source is None:
            continue
        if isinstance(source, FelixConfiguration):
            config = source
        else:
            try:
                config = felixconfiguration_from_dict(source, strict=False)
            except InvalidInput as exc:
                problems.append(f"{exc} (left out until fixed)")
                continue
        layers.append((f"FelixConfiguration({config.name})", _values(config)))
    env_values = _from_env(env)
    layers.append(("environment", env_values))
    chosen: dict[str, object] = {}
    origins: dict[str, str] = {}
    for where, values in layers:
        for key, value in values.items():
            if value is None:
                continue
            if value is _ZERO:
                chosen.pop(key, None)
                origins[key] = f"{ENV[key]}=none"
                continue
            chosen[key] = value
            origins[key] = ENV[key] if where == "environment" else where
    port_range = chosen.get("natPortRange")
    ipv6 = parse_bool(
        "FELIX_IPV6SUPPORT",
        next((v for k, v in env.items() if k.upper() == "FELIX_IPV6SUPPORT"), ""),
        True,
    )
    return NatSettings(
        exclusions=str(chosen.get("natOutgoingExclusions", "IPPoolsOnly")),
        address_v4=_optional(chosen.get("natOutgoingAddress")),
        address_v6=_optional(chosen.get(ADDRESS_V6)),
        port_range=port_range if isinstance(port_range, PortRange) else None,
        interface_filter=_optional(chosen.get("iptablesNATOutgoingInterfaceFilter")),
        ipv6=ipv6,
        origins=origins,
        problems=tuple(problems),
    )


def _optional(value: object) -> str | None:
    return None if value is None else str(value)
