"""One reader of datastore settings: environment, CalicoAPIConfig and CNI netconf agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tortie.cli.settings import settings_from_file
from tortie.cni.netconf import parse_netconf
from tortie.datastore.config import read_settings, settings_from_env
from tortie.errors import InvalidInput

ENDPOINTS = ("https://10.0.0.1:2379", "https://10.0.0.2:2379")


def test_the_three_sources_give_the_same_settings(tmp_path: Path) -> None:
    env = settings_from_env(
        {
            "DATASTORE_TYPE": "etcdv3",
            "ETCD_ENDPOINTS": " https://10.0.0.1:2379 ,https://10.0.0.2:2379,, ",
            "ETCD_CA_CERT_FILE": "/ca.pem",
        }
    )
    config = tmp_path / "calico.yaml"
    config.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n"
        "  datastoreType: etcdv3\n  etcdEndpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]\n"
        "  etcdCACertFile: /ca.pem\n",
        encoding="utf-8",
    )
    spec = settings_from_file(str(config))
    netconf = parse_netconf(
        {
            "name": "net",
            "datastore_type": "etcdv3",
            "etcd_endpoints": "https://10.0.0.1:2379,https://10.0.0.2:2379",
            "etcd_ca_cert_file": "/ca.pem",
        },
        {},
        "1.0.0",
    ).datastore
    assert env == spec == netconf
    assert env.etcd_endpoints == ENDPOINTS and env.etcd_ca_cert_file == "/ca.pem"


def test_given_values_win_and_empty_ones_fall_back_to_the_environment() -> None:
    env = {"SQLITE_PATH": "/env.db", "ETCD_ENDPOINTS": "http://e:2379"}
    got = read_settings({"sqlite_path": "/given.db", "etcd_endpoints": []}, env)
    assert got.sqlite_path == "/given.db" and got.etcd_endpoints == ("http://e:2379",)
    assert read_settings({"sqlite_path": ""}, env).sqlite_path == "/env.db"
    assert read_settings({}, None).sqlite_path == ""  # a config file: no environment


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"sqlite_path": 5}, "sqlite_path must be a string"),
        ({"etcd_endpoints": {"a": 1}}, "etcd_endpoints must be a comma-separated string"),
        ({"etcd_endpoints": ["http://a:1", 2]}, "etcd_endpoints must be"),
    ],
)
def test_wrong_types_are_named(given: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInput) as err:
        read_settings(given, {})
    assert named in str(err.value)


def test_config_imports_no_backend() -> None:
    code = (
        "import sys, json, tortie.datastore.config\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tortie.datastore'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == ["tortie.datastore", "tortie.datastore.config"]
