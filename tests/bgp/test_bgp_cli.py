"""``tortie apply|get|delete`` for BGPPeer and BGPConfiguration, in calicoctl's shapes,
against a SQLite store; a bad resource is refused in one line and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tortie.cli.main import main

PEERS = """\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor-v6
spec:
  peerIP: "[fd10::254]:1179"
  asNumber: 64600
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack-a
spec:
  nodeSelector: rack == 'a'
  peerIP: 10.10.0.254
  asNumber: 64600
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: one-node
spec:
  node: host-1
  peerIP: 10.10.0.253
  asNumber: 64601
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 63400
  serviceClusterIPs:
  - cidr: 10.96.0.0/12
  communities:
  - name: lab
    value: 63400:100
  prefixAdvertisements:
  - cidr: 10.244.0.0/16
    communities: [lab, "63400:7"]
"""


class Run:
    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp, self.capsys, self.n = tmp, capsys, 0

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        rc = main(list(argv))
        out = self.capsys.readouterr()
        return rc, out.out, out.err

    def apply(self, text: str) -> tuple[int, str, str]:
        self.n += 1
        path = self.tmp / f"f{self.n}.yaml"
        path.write_text(text)
        return self("apply", "-f", str(path))


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "tortie.db"))
    return Run(tmp_path, capsys)


def test_apply_get_delete_in_calicoctl_shapes(run: Run) -> None:
    rc, out, err = run.apply(PEERS)
    assert rc == 0 and err == "", err
    assert "Successfully applied 1 'BGPPeer' resource(s): BGPPeer(tor-v6)" in out
    rc, out, _ = run("get", "bgppeers")
    assert rc == 0
    assert out.splitlines() == [
        "NAME      PEERIP            NODE         ASN",
        "one-node  10.10.0.253       host-1       64601",
        "rack-a    10.10.0.254       rack == 'a'  64600",
        "tor-v6    [fd10::254]:1179  (global)     64600",
    ]
    rc, out, _ = run("get", "bgpconfig")
    assert out.splitlines() == [
        "NAME     LOGSEVERITY  MESHENABLED  ASNUMBER",
        "default  Info         false        63400",
    ]
    doc = yaml.safe_load(run("get", "bgppeer", "tor-v6", "-o", "yaml")[1])
    assert doc["kind"] == "BGPPeer" and doc["spec"] == {
        "peerIP": "[fd10::254]:1179",
        "asNumber": 64600,
    }
    listed = json.loads(run("get", "bgpconfigurations", "-o", "json")[1])
    assert listed["kind"] == "BGPConfigurationList"
    spec = listed["items"][0]["spec"]
    assert spec["prefixAdvertisements"] == [
        {"cidr": "10.244.0.0/16", "communities": ["lab", "63400:7"]}  # names kept
    ]
    assert spec["serviceClusterIPs"] == [{"cidr": "10.96.0.0/12"}]
    rc, out, _ = run("delete", "bgppeer", "tor-v6")
    assert rc == 0 and "BGPPeer(tor-v6)" in out
    assert [
        i["metadata"]["name"] for i in json.loads(run("get", "bgppeers", "-o", "json")[1])["items"]
    ] == [
        "one-node",
        "rack-a",
    ]


BAD = [
    ("node: host-1\n  nodeSelector: all()\n  peerIP: 10.0.0.9\n  asNumber: 1", "both set"),
    ("peerIP: 10.0.0.300\n  asNumber: 64600", "is not an IP address"),
    ("peerIP: 10.0.0.9\n  asNumber: 4294967296", "is not an AS number"),
    ("peerIP: '[fd00::9]:70000'\n  asNumber: 1", "out of range"),
    ("peerIP: 10.0.0.9", "spec.asNumber is missing"),
    ("peerSelector: all()\n  peerIP: 10.0.0.9\n  asNumber: 1", "peerSelector is set together"),
    ("peerIP: 10.0.0.9\n  asNumber: 1\n  nextHopMode: Sometimes", "nextHopMode"),
    ("peerIP: 10.0.0.9\n  asNumber: 1\n  password: {file: relative}", "password"),
    ("peerIP: 10.0.0.9\n  asNumber: 1\n  keepaliveTime: soon", "not a duration"),
    ("nodeSelector: has(", "nodeSelector is invalid"),
]


@pytest.mark.parametrize(("spec", "reason"), BAD)
def test_bad_bgppeer_is_refused_in_one_line_and_nothing_written(
    run: Run, spec: str, reason: str
) -> None:
    good = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: good\n"
    good += "spec:\n  peerIP: 10.0.0.8\n  asNumber: 64600\n---\n"
    bad = f"apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: bad\nspec:\n  {spec}\n"
    rc, out, err = run.apply(good + bad)
    assert rc != 0 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("tortie: BGPPeer(bad): "), err
    assert reason in err and "Traceback" not in err
    assert json.loads(run("get", "bgppeers", "-o", "json")[1])["items"] == []


@pytest.mark.parametrize(
    ("name", "spec", "reason"),
    [
        ("default", "listenPort: 0", "listenPort"),
        ("default", "bindMode: Everywhere", "bindMode"),
        ("default", "logSeverityScreen: Loud", "logSeverityScreen"),
        ("default", "serviceClusterIPs: [{cidr: 10.96.0.0/33}]", "is not a CIDR"),
        ("default", "communities: [{name: x, value: '65536:1'}]", "not a BGP community"),
        ("default", "communities: [{name: x, value: '1:1'}]", "not used"),
        ("default", "prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [nope]}]", "neither"),
        ("default", "nodeMeshMaxRestartTime: 2 minutes", "not a duration"),
        ("node.host-1", "asNumber: 65000", "only valid in BGPConfiguration default"),
        ("node.host-1", "nodeToNodeMeshEnabled: false", "only valid"),
        ("node.host-1", "serviceClusterIPs: [{cidr: 10.96.0.0/12}]", "only valid"),
        ("host-1", "listenPort: 1790", "neither default nor node.<node name>"),
    ],
)
def test_bad_bgpconfiguration_is_refused_in_one_line(
    run: Run, name: str, spec: str, reason: str
) -> None:
    text = f"apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: {name}\nspec:\n  {spec}\n"
    rc, out, err = run.apply(text)
    assert rc != 0 and out == ""
    assert len(err.splitlines()) == 1 and f"BGPConfiguration({name})" in err, err
    assert reason in err
    assert json.loads(run("get", "bgpconfigurations", "-o", "json")[1])["items"] == []


def test_node_specific_configuration_takes_its_three_fields(run: Run) -> None:
    text = (
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n"
        "  name: node.host-1\nspec:\n  listenPort: 1790\n  logSeverityScreen: Debug\n"
    )
    rc, _, err = run.apply(text)
    assert rc == 0, err
