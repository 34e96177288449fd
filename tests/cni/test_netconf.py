"""Network configuration parsing: Calico's keys, string flags, datastore fallbacks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tortie.cni.netconf import (
    IpamNetConf,
    determine_nodename,
    load_json,
    parse_netconf,
    valid_attachments,
)
from tortie.cni.protocol import CniError


def parse(conf: dict[str, Any], env: dict[str, str] | None = None) -> IpamNetConf:
    return parse_netconf(conf, env or {}, "1.0.0")


def code_of(conf: dict[str, Any], env: dict[str, str] | None = None) -> CniError:
    with pytest.raises(CniError) as e:
        parse(conf, env)
    return e.value


@pytest.mark.parametrize(
    ("ipam", "v4", "v6"),
    [
        ({}, True, False),
        ({"assign_ipv4": "false"}, False, False),
        ({"assign_ipv4": "False"}, True, False),  # only the exact string "false" turns it off
        ({"assign_ipv4": "no"}, True, False),
        ({"assign_ipv4": ""}, True, False),
        ({"assign_ipv6": "true"}, True, True),
        ({"assign_ipv6": "True"}, True, False),  # only the exact string "true" turns it on
        ({"assign_ipv6": "yes"}, True, False),
        ({"assign_ipv4": "false", "assign_ipv6": "true"}, False, True),
    ],
)
def test_assign_flags(ipam: dict[str, str], v4: bool, v6: bool) -> None:
    conf = parse({"name": "n", "ipam": ipam})
    assert (conf.assign_ipv4, conf.assign_ipv6) == (v4, v6)


@pytest.mark.parametrize("value", [False, True, 0, 1.5, ["true"]])
def test_assign_flag_must_be_a_string(value: object) -> None:
    err = code_of({"name": "n", "ipam": {"assign_ipv6": value}})
    assert err.code == 7 and "assign_ipv6" in err.msg and "string" in err.msg


def test_pools() -> None:
    conf = parse({"name": "n", "ipam": {"ipv4_pools": ["a", "10.0.0.0/24"], "ipv6_pools": ["b"]}})
    assert conf.ipv4_pools == ("a", "10.0.0.0/24")
    assert conf.ipv6_pools == ("b",)
    err = code_of({"name": "n", "ipam": {"ipv4_pools": "a"}})
    assert err.code == 7 and "ipv4_pools" in err.msg


@pytest.mark.parametrize("name", ["", "a b", "a/b", "ä", "x:y"])
def test_network_name(name: str) -> None:
    err = code_of({"name": name})
    assert err.code == 7 and "name" in err.msg


def test_good_names() -> None:
    for name in ("k8s-pod-network", "a.b_c-D9"):
        assert parse({"name": name}).name == name


def test_kubernetes_datastore_is_refused_clearly() -> None:
    err = code_of({"name": "n", "datastore_type": "kubernetes"})
    assert err.code == 7 and "kubernetes is not supported" in err.msg and "etcdv3" in err.msg
    err = code_of({"name": "n"}, {"DATASTORE_TYPE": "kubernetes"})
    assert "DATASTORE_TYPE" in err.msg
    err = code_of({"name": "n", "datastore_type": "mongo"})
    assert err.code == 7 and "sqlite" in err.msg


def test_datastore_keys_and_env_fallback() -> None:
    conf = parse(
        {
            "name": "n",
            "datastore_type": "etcdv3",
            "etcd_endpoints": "http://a:2379, http://b:2379",
            "etcd_ca_cert_file": "/ca",
            "etcd_cert_file": "/cert",
            "etcd_key_file": "/key",
        }
    )
    ds = conf.datastore
    assert ds.datastore_type == "etcdv3"
    assert ds.etcd_endpoints == ("http://a:2379", "http://b:2379")
    assert (ds.etcd_ca_cert_file, ds.etcd_cert_file, ds.etcd_key_file) == ("/ca", "/cert", "/key")
    env = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://e:1", "ETCD_KEY_FILE": "/k"}
    ds = parse({"name": "n"}, env).datastore
    assert ds.datastore_type == "etcdv3" and ds.etcd_endpoints == ("http://e:1",)
    assert ds.etcd_key_file == "/k"
    # the netconf wins over the environment
    ds = parse({"name": "n", "etcd_endpoints": ["http://c:1"]}, env).datastore
    assert ds.etcd_endpoints == ("http://c:1",)
    ds = parse({"name": "n", "sqlite_path": "/x.db"}, {"SQLITE_PATH": "/y.db"}).datastore
    assert ds.datastore_type == "sqlite" and ds.sqlite_path == "/x.db"
    assert parse({"name": "n"}, {"SQLITE_PATH": "/y.db"}).datastore.sqlite_path == "/y.db"


def test_wrong_types() -> None:
    for conf in (
        {"name": "n", "ipam": []},
        {"name": "n", "nodename": 5},
        {"name": "n", "log_level": "loud"},
        {"name": "n", "nodename_file_optional": "yes"},
        {"name": "n", "etcd_endpoints": 5},
    ):
        assert code_of(conf).code == 7


def test_load_json() -> None:
    with pytest.raises(CniError) as e:
        load_json(b"{")
    assert e.value.code == 6
    with pytest.raises(CniError) as e:
        load_json(b"[]")
    assert e.value.code == 7
    with pytest.raises(CniError) as e:
        load_json(b"[" * 100000)
    assert e.value.code == 6
    assert load_json(json.dumps({"a": 1}).encode()) == {"a": 1}


def test_nodename_order(tmp_path: Any) -> None:
    f = tmp_path / "nodename"
    f.write_text("from-file\n")
    assert determine_nodename(parse({"name": "n", "nodename": "k", "nodename_file": str(f)})) == "k"
    assert determine_nodename(parse({"name": "n", "nodename_file": str(f)})) == "from-file"
    missing = str(tmp_path / "none")
    import os

    host = os.uname().nodename.lower()
    assert determine_nodename(parse({"name": "n", "nodename_file": missing})) == host
    with pytest.raises(CniError):
        determine_nodename(parse({"name": "n", "nodename_file": missing}), require_file=True)


def test_valid_attachments() -> None:
    conf = parse(
        {"name": "n", "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}
    )
    assert valid_attachments(conf) == [("a", "eth0")]
    for bad in (None, [{"ifname": "x"}], "x"):
        with pytest.raises(CniError):
            valid_attachments(parse({"name": "n", "cni.dev/valid-attachments": bad}))
