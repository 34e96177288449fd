"""CNI protocol: versions, result shapes, environment and CNI_ARGS parsing."""

from __future__ import annotations

import json

import pytest

from tortie.cni.protocol import (
    SUPPORTED_VERSIONS,
    CniError,
    check_command_version,
    check_known_args,
    check_version,
    error_json,
    format_ipam_result,
    parse_cni_args,
    parse_env,
    result_addresses,
    version_json,
)

ADDRS = ["10.65.0.5/26", "fd00::5/122"]


def test_version_json() -> None:
    out = json.loads(version_json())
    assert out["cniVersion"] == "1.1.0"
    assert out["supportedVersions"] == list(SUPPORTED_VERSIONS)
    assert set(SUPPORTED_VERSIONS) == {
        "0.1.0",
        "0.2.0",
        "0.3.0",
        "0.3.1",
        "0.4.0",
        "1.0.0",
        "1.1.0",
    }


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_result_shape_legacy(version: str) -> None:
    out = format_ipam_result(version, ADDRS)
    assert out == {
        "cniVersion": version,
        "ip4": {"ip": "10.65.0.5/26"},
        "ip6": {"ip": "fd00::5/122"},
        "dns": {},
    }


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_result_shape_03(version: str) -> None:
    out = format_ipam_result(version, ADDRS)
    assert out["ips"] == [
        {"version": "4", "address": "10.65.0.5/26"},
        {"version": "6", "address": "fd00::5/122"},
    ]
    assert out["cniVersion"] == version


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_result_shape_1x(version: str) -> None:
    out = format_ipam_result(version, ADDRS)
    assert out["ips"] == [{"address": "10.65.0.5/26"}, {"address": "fd00::5/122"}]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_result_addresses_reads_every_shape(version: str) -> None:
    assert result_addresses(format_ipam_result(version, ADDRS)) == ADDRS


def test_error_json() -> None:
    out = json.loads(error_json("0.4.0", 7, "bad", "fix it"))
    assert out == {"cniVersion": "0.4.0", "code": 7, "msg": "bad", "details": "fix it"}


def test_check_version() -> None:
    assert check_version(None) == "0.1.0"
    assert check_version("0.3.1") == "0.3.1"
    with pytest.raises(CniError) as e:
        check_version("0.5.0")
    assert e.value.code == 1
    with pytest.raises(CniError) as e:
        check_version(1.0)
    assert e.value.code == 7


def test_command_versions() -> None:
    check_command_version("CHECK", "0.4.0")
    check_command_version("GC", "1.1.0")
    for cmd, ver in (("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "0.4.0")):
        with pytest.raises(CniError) as e:
            check_command_version(cmd, ver)
        assert e.value.code == 1


def test_parse_cni_args() -> None:
    assert parse_cni_args("") == {}
    assert parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=p;;IP=10.0.0.1") == {
        "IgnoreUnknown": "1",
        "K8S_POD_NAME": "p",
        "IP": "10.0.0.1",
    }
    assert parse_cni_args("A=b=c") == {"A": "b=c"}
    for bad in ("novalue", "=x", "A=1;junk"):
        with pytest.raises(CniError) as e:
            parse_cni_args(bad)
        assert e.value.code == 4 and "CNI_ARGS" in e.value.msg


def test_unknown_args() -> None:
    check_known_args({"IP": "1"}, ["IP"])
    check_known_args({"FOO": "1", "IgnoreUnknown": "1"}, ["IP"])
    check_known_args({"FOO": "1", "IgnoreUnknown": "true"}, ["IP"])
    with pytest.raises(CniError) as e:
        check_known_args({"FOO": "1"}, ["IP"])
    assert e.value.code == 4 and "FOO" in e.value.msg


BASE = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0",
}


@pytest.mark.parametrize("var", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])
def test_add_needs_every_variable(var: str) -> None:
    env = {k: v for k, v in BASE.items() if k != var}
    with pytest.raises(CniError) as e:
        parse_env(env, "ADD")
    assert e.value.code == 4 and var in e.value.msg


def test_del_does_not_need_netns() -> None:
    env = {k: v for k, v in BASE.items() if k != "CNI_NETNS"}
    parsed = parse_env(env, "DEL")
    assert parsed.container_id == "abc" and parsed.netns == ""


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CNI_CONTAINERID", "a/b"),
        ("CNI_CONTAINERID", "-abc"),
        ("CNI_IFNAME", "x" * 16),
        ("CNI_IFNAME", "a b"),
        ("CNI_IFNAME", "a:b"),
        ("CNI_IFNAME", ".."),
    ],
)
def test_invalid_variables_named(var: str, value: str) -> None:
    with pytest.raises(CniError) as e:
        parse_env({**BASE, var: value}, "ADD")
    assert e.value.code == 4 and var in e.value.msg


def test_cni_path() -> None:
    assert parse_env({**BASE, "CNI_PATH": "/a::/b"}, "ADD").path == ("/a", "/b")
