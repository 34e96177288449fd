"""Which NAT settings are in force: FelixConfiguration default < node.<name> < FELIX_*
environment, as Felix; bad variables refused in one line; the default pools' NAT."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tortie.datastore.memory import MemoryDatastore
from tortie.errors import InvalidInput
from tortie.ipam.pools import load_pools
from tortie.model.felixconfig import PortRange, felixconfiguration_from_dict
from tortie.node.config import config_from_env
from tortie.node.defaultpools import ensure_default_pools
from tortie.node.natsettings import NatSettings, nat_settings


def felix(name: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "FelixConfiguration", "metadata": {"name": name}, "spec": spec}


def test_defaults_without_any_source() -> None:
    assert nat_settings(None, None, {}) == NatSettings()
    s = NatSettings()
    assert (s.exclusions, s.address_v4, s.address_v6, s.port_range, s.ipv6) == (
        "IPPoolsOnly",
        None,
        None,
        None,
        True,
    )


def test_node_overrides_default_and_environment_overrides_both() -> None:
    default = felix(
        "default",
        natOutgoingAddress="203.0.113.1",
        natOutgoingExclusions="IPPoolsAndHostIPs",
        natPortRange="1000:2000",
    )
    node = felix("node.n1", natOutgoingAddress="203.0.113.2", natOutgoingAddressV6="2001:db8::2")
    env = {"FELIX_NATOUTGOINGADDRESSV6": "2001:db8::3", "felix_natportrange": "3000:4000"}
    s = nat_settings(default, node, env)
    assert (s.address_v4, s.address_v6, s.exclusions, s.port_range) == (
        "203.0.113.2",
        "2001:db8::3",
        "IPPoolsAndHostIPs",
        PortRange(3000, 4000),
    )
    assert s.origins == {
        "natOutgoingAddress": "FelixConfiguration(node.n1)",
        "natOutgoingAddressV6": "FELIX_NATOUTGOINGADDRESSV6",
        "natOutgoingExclusions": "FelixConfiguration(default)",
        "natPortRange": "FELIX_NATPORTRANGE",
    }
    # Parsed records work as well as stored documents.
    parsed = nat_settings(felixconfiguration_from_dict(default), None, {})
    assert parsed.address_v4 == "203.0.113.1"


def test_none_and_empty_in_the_environment() -> None:
    default = felix("default", natOutgoingAddress="203.0.113.1", natPortRange=5000)
    s = nat_settings(default, None, {"FELIX_NATOUTGOINGADDRESS": "None", "FELIX_NATPORTRANGE": ""})
    assert s.address_v4 is None  # "none": back to masquerade, over the datastore's address
    assert s.port_range == PortRange(5000, 5000)  # empty: unset, the datastore's value holds
    assert s.origins["natOutgoingAddress"] == "FELIX_NATOUTGOINGADDRESS=none"


def test_environment_letter_case_and_ipv6_support() -> None:
    s = nat_settings(None, None, {"FELIX_NATOUTGOINGEXCLUSIONS": "ippoolsandhostips"})
    assert s.exclusions == "IPPoolsAndHostIPs"
    assert nat_settings(None, None, {"FELIX_IPV6SUPPORT": "false"}).ipv6 is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FELIX_NATOUTGOINGADDRESS": "fd00::1"},
            "FELIX_NATOUTGOINGADDRESS takes an IPv4 address only and 'fd00::1' is IPv6; "
            "put it in FELIX_NATOUTGOINGADDRESSV6, or unset FELIX_NATOUTGOINGADDRESS",
        ),
        (
            {"FELIX_NATOUTGOINGADDRESSV6": "10.0.0.1"},
            "FELIX_NATOUTGOINGADDRESSV6 takes an IPv6 address only and '10.0.0.1' is IPv4; "
            "put it in FELIX_NATOUTGOINGADDRESS, or unset FELIX_NATOUTGOINGADDRESSV6",
        ),
        (
            {"FELIX_NATPORTRANGE": "9:1"},
            "FELIX_NATPORTRANGE '9:1' starts above its end; write it as 1:9, "
            "or unset FELIX_NATPORTRANGE",
        ),
        (
            {"FELIX_NATOUTGOINGEXCLUSIONS": "All"},
            "FELIX_NATOUTGOINGEXCLUSIONS 'All' is not one of IPPoolsOnly, IPPoolsAndHostIPs",
        ),
        (
            {"FELIX_IPTABLESNATOUTGOINGINTERFACEFILTER": "a very long interface"},
            "FELIX_IPTABLESNATOUTGOINGINTERFACEFILTER 'a very long interface' is not an "
            "interface name",
        ),
    ],
)
def test_bad_environment_refused_in_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        nat_settings(None, None, env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unreadable_stored_configuration_is_left_out_and_named() -> None:
    bad = felix("node.n1", natOutgoingAddress="fd00::9")  # written by something else
    s = nat_settings(felix("default", natOutgoingAddress="203.0.113.1"), bad, {})
    assert s.address_v4 == "203.0.113.1"
    (problem,) = s.problems
    assert problem.startswith("FelixConfiguration(node.n1): spec.natOutgoingAddress takes")
    assert problem.endswith("(left out until fixed)")


def test_default_pools_nat_ipv4_on_ipv6_off(tmp_path: Path) -> None:
    log = logging.getLogger("test.nat")
    base = {"NODENAME": "n1", "CALICO_NODENAME_FILE": str(tmp_path / "nodename")}
    store = MemoryDatastore()
    ensure_default_pools(store, config_from_env(base), ["10.10.0.1"], log)
    nat = {p.version: p.nat_outgoing for p in load_pools(store)}
    assert nat == {4: True, 6: False}
    store = MemoryDatastore()
    env = {**base, "CALICO_IPV6POOL_NAT_OUTGOING": "true", "CALICO_IPV4POOL_NAT_OUTGOING": "no"}
    ensure_default_pools(store, config_from_env(env), ["10.10.0.1"], log)
    assert {p.version: p.nat_outgoing for p in load_pools(store)} == {4: False, 6: True}
