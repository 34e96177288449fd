"""FelixConfiguration: the natOutgoing fields, Calico's other fields kept, one-line
refusals, and the resource verbs (``tortie get|apply|delete felixconfigurations``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cli.clihelp import Cli
from tortie.errors import InvalidInput
from tortie.model.felixconfig import (
    FelixConfiguration,
    PortRange,
    felixconfiguration_from_dict,
    felixconfiguration_to_dict,
)
from tortie.model.resources import KINDS, kind_for_cli_name


def doc(name: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "FelixConfiguration",
        "metadata": {"name": name},
        "spec": spec,
    }


def refused(d: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(InvalidInput) as info:
        felixconfiguration_from_dict(d)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_nat_fields_parsed_and_round_tripped() -> None:
    d = doc(
        natOutgoingAddress="203.0.113.7",
        natOutgoingAddressV6="2001:db8:0:0::7",
        natOutgoingExclusions="IPPoolsAndHostIPs",
        natPortRange="32768:60999",
        iptablesNATOutgoingInterfaceFilter="eth+",
    )
    c = felixconfiguration_from_dict(d)
    assert c == FelixConfiguration(
        name="default",
        nat_outgoing_address="203.0.113.7",
        nat_outgoing_address_v6="2001:db8::7",
        nat_outgoing_exclusions="IPPoolsAndHostIPs",
        nat_port_range=PortRange(32768, 60999),
        nat_interface_filter="eth+",
    )
    out = felixconfiguration_to_dict(c)
    assert out["spec"] == {**d["spec"], "natOutgoingAddressV6": "2001:db8::7"}
    assert felixconfiguration_from_dict(out) == c


def test_calico_fields_tortie_does_not_act_on_are_kept_in_order() -> None:
    spec = {"logSeverityScreen": "Info", "bpfEnabled": False, "healthPort": 9099}
    c = felixconfiguration_from_dict(doc("node.n1", natPortRange=1024, **spec))
    assert c.other == spec and c.nat_port_range == PortRange(1024, 1024)
    out = felixconfiguration_to_dict(c)["spec"]
    assert out == {"natPortRange": 1024, **spec}
    assert list(out) == ["natPortRange", *spec]


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        (
            {"natOutgoingAddress": "fd00::1"},
            [
                "FelixConfiguration(default): spec.natOutgoingAddress takes an IPv4 address "
                "only and 'fd00::1' is IPv6; put it in spec.natOutgoingAddressV6"
            ],
        ),
        (
            {"natOutgoingAddressV6": "10.0.0.1"},
            [
                "spec.natOutgoingAddressV6 takes an IPv6 address only and '10.0.0.1' is IPv4",
                "put it in spec.natOutgoingAddress",
            ],
        ),
        ({"natOutgoingAddress": "10.0.0"}, ["'10.0.0' is not an IP address"]),
        ({"natOutgoingAddress": "0.0.0.0"}, ["cannot be a source address"]),
        ({"natOutgoingAddress": 7}, ["must be a string, not an integer"]),
        ({"natOutgoingExclusions": "ippoolsonly"}, ["use IPPoolsOnly"]),
        ({"natOutgoingExclusions": "Hosts"}, ["use one of IPPoolsOnly, IPPoolsAndHostIPs"]),
        ({"natPortRange": "2000:1000"}, ["starts above its end", "write it as 1000:2000"]),
        ({"natPortRange": "1-2"}, ["is not a port range"]),
        ({"natPortRange": "0:70000"}, ["port out of range"]),
        ({"natPortRange": True}, ["must be a port range, not a boolean"]),
        ({"iptablesNATOutgoingInterfaceFilter": "eth*"}, ["not an interface name or pattern"]),
        ({"natOutgoingAdress": "10.0.0.1"}, ["unknown field", "did you mean natOutgoingAddress"]),
        ({"fooBar": 1}, ['unknown field "spec.fooBar"', "remove it"]),
    ],
)
def test_bad_fields_refused_in_one_line(spec: dict[str, Any], fragments: list[str]) -> None:
    refused(doc(**spec), *fragments)


def test_names() -> None:
    refused(doc("cluster"), "neither default nor node.<node name>")
    # Read back from a store Calico shares: any name and field is accepted and kept.
    c = felixconfiguration_from_dict(doc("cluster", someFutureField=1), strict=False)
    assert c.other == {"someFutureField": 1}


def test_registered_kind_and_cli_names() -> None:
    info = KINDS["FelixConfiguration"]
    assert (info.plural, info.namespaced, info.list_kind) == (
        "felixconfigurations",
        False,
        "FelixConfigurationList",
    )
    for name in ("felixconfiguration", "felixconfigurations", "felixconfig", "FelixConfigs"):
        assert kind_for_cli_name(name) is info


def test_not_on_the_cni_plugin_import_path() -> None:
    import subprocess
    import sys

    code = "import sys, tortie.model.resources; print('tortie.model.felixconfig' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------ CLI

YAML = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  natOutgoingAddress: 203.0.113.7
  natOutgoingAddressV6: 2001:db8::7
  natPortRange: "32768:60999"
  logSeverityScreen: Info
"""


def test_cli_apply_get_delete(cli: Cli) -> None:
    out = cli.apply(YAML).ok().out
    assert out == (
        "Successfully applied 1 'FelixConfiguration' resource(s): FelixConfiguration(default) "
        "(stored, not acted on by tortie: logSeverityScreen)\n"
    )
    cli.apply(YAML.replace("default", "node.n1").replace("  logSeverityScreen: Info\n", ""))
    got = cli("get", "felixconfiguration", "default", "-o", "json").ok().json()
    assert got["kind"] == "FelixConfiguration"
    assert got["spec"] == {
        "natOutgoingAddress": "203.0.113.7",
        "natOutgoingAddressV6": "2001:db8::7",
        "natPortRange": "32768:60999",
        "logSeverityScreen": "Info",
    }
    assert got["metadata"]["uid"] and got["metadata"]["resourceVersion"]
    listed = cli("get", "felixconfigs", "-o", "yaml").ok().out
    assert "kind: FelixConfigurationList" in listed and "name: node.n1" in listed
    assert cli("get", "felixconfigurations").ok().out.split() == ["NAME", "default", "node.n1"]
    cli("delete", "felixconfiguration", "node.n1").ok()
    names = [
        i["metadata"]["name"]
        for i in cli("get", "felixconfigurations", "-o", "json").json()["items"]
    ]
    assert names == ["default"]


def test_cli_refuses_bad_resources_and_writes_nothing(cli: Cli) -> None:
    good = YAML.replace("default", "node.n2")
    bad = YAML.replace("203.0.113.7", "fd00::7")
    cli.apply(good + "---\n" + bad).fails(
        2, "FelixConfiguration(default): spec.natOutgoingAddress takes an IPv4 address only"
    )
    assert cli("get", "felixconfigurations", "-o", "json").ok().json()["items"] == []
    cli.apply(YAML.replace("logSeverityScreen", "logSeverityScren")).fails(
        2, "did you mean logSeverityScreen?"
    )
    assert json.loads(cli("get", "felixconfigurations", "-o", "json").out)["items"] == []
