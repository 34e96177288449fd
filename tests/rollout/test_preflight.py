"""``tortie preflight``: one test per row of the seed's tables (a good cluster, then that
one flag broken), kubeadm configs and static-pod manifests as sources, the host rows;
``tortie migrate ipv6-only``: plan, apply, re-run."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from rollout_cli import run

from tortie.rollout.kubeflags import COMPONENTS, Flags, from_kubeadm, from_manifests, parse_args
from tortie.rollout.preflight import FAIL, PASS, WARN, check_flags
from tortie.rollout.preflight_host import check_host
from tortie.rollout.preflight_kubedns import check_kube_dns

P4, P6 = "10.244.0.0/16", "fd00:10:244::/48"
POOLS: dict[int, list[Any]] = {4: [ipaddress.ip_network(P4)], 6: [ipaddress.ip_network(P6)]}

GOOD_V6: Flags = {
    "kube-apiserver": {
        "bind-address": "::",
        "advertise-address": "fd10::1",
        "service-cluster-ip-range": "fd00:96::/112",
    },
    "kube-controller-manager": {
        "master": "https://[fd10::1]:6443",
        "cluster-cidr": P6,
        "node-cidr-mask-size-ipv6": "64",
    },
    "kube-scheduler": {"master": "https://[fd10::1]:6443"},
    "kubelet": {"address": "::", "cluster-dns": "fd00:96::a", "node-ip": "fd10::11"},
    "kube-proxy": {"bind-address": "::", "master": "https://[fd10::1]:6443", "cluster-cidr": P6},
}
GOOD_DUAL: Flags = {
    "kube-apiserver": {
        "advertise-address": "10.10.0.1",
        "service-cluster-ip-range": "10.96.0.0/16,fd00:96::/112",
    },
    "kube-controller-manager": {"cluster-cidr": f"{P4},{P6}"},
    "kube-scheduler": {"leader-elect": "true"},
    "kubelet": {"cluster-dns": "10.96.0.10", "node-ip": "10.10.0.11,fd10::11"},
    "kube-proxy": {"cluster-cidr": f"{P4},{P6}"},
}


def fails(rows: list[Any]) -> list[tuple[str, str]]:
    return [(r.component, r.item) for r in rows if r.result == FAIL]


def test_good_clusters_pass() -> None:
    assert fails(check_flags(GOOD_V6, POOLS, {6})) == []
    assert fails(check_flags(GOOD_DUAL, POOLS, {4, 6})) == []


# one row of the seed's IPv6-only tables each: break it, and exactly that row fails
ROWS = [
    ("kube-apiserver", "bind-address", "0.0.0.0"),
    ("kube-apiserver", "advertise-address", "10.10.0.1"),
    ("kube-apiserver", "service-cluster-ip-range", "10.96.0.0/16"),
    ("kube-controller-manager", "master", "https://10.10.0.1:6443"),
    ("kube-controller-manager", "cluster-cidr", "fd00:99::/48"),
    ("kube-scheduler", "master", "https://10.10.0.1:6443"),
    ("kubelet", "address", "0.0.0.0"),
    ("kubelet", "cluster-dns", "fd00:97::a"),
    ("kubelet", "node-ip", "10.10.0.11"),
    ("kube-proxy", "bind-address", "0.0.0.0"),
    ("kube-proxy", "master", "https://10.10.0.1:6443"),
    ("kube-proxy", "cluster-cidr", "fd00:98::/48"),
    ("kube-controller-manager", "node-cidr-mask-size-ipv6", "120"),
]


@pytest.mark.parametrize(("component", "flag", "bad"), ROWS)
def test_each_seed_row(component: str, flag: str, bad: str) -> None:
    flags = copy.deepcopy(GOOD_V6)
    flags[component][flag] = bad
    rows = check_flags(flags, POOLS, {6})
    failed = fails(rows)
    assert (component, f"--{flag}") in failed, rows
    row = next(
        r for r in rows if (r.component, r.item) == (component, f"--{flag}") and r.result == FAIL
    )
    assert row.fix  # every failure says how to fix it
    follows = {("kube-proxy", "--cluster-cidr"), ("kubelet", "--cluster-dns")}
    assert all(c == component or (c, i) in follows for c, i in failed)


def test_dual_stack_rows() -> None:
    flags = copy.deepcopy(GOOD_DUAL)
    flags["kube-apiserver"]["service-cluster-ip-range"] = "10.96.0.0/16"  # one family only
    flags["kubelet"]["node-ip"] = "10.10.0.11"
    assert sorted(fails(check_flags(flags, POOLS, {4, 6}))) == [
        ("kube-apiserver", "--service-cluster-ip-range"),
        ("kubelet", "--node-ip"),
    ]
    flags["kube-apiserver"]["service-cluster-ip-range"] = "10.96.0.0/16,fd00:96::/112"
    flags["kubelet"]["cluster-dns"] = "10.97.0.10"
    assert ("kubelet", "--cluster-dns") in fails(check_flags(flags, POOLS, {4, 6}))


def test_host_rows() -> None:
    rows = check_host({6}, "0", [], False)
    assert [r.result for r in rows] == [FAIL, FAIL, WARN]
    assert [r.result for r in check_host({4, 6}, "1", ["fd10::11/64"], True)] == [PASS] * 3
    assert check_host({4}, "0", [], False) == []


def test_kube_dns_row() -> None:
    import yaml

    dns = next(
        d
        for d in yaml.safe_load_all(
            (Path(__file__).parent / "fixtures" / "kube-dns.yaml").read_text()
        )
        if d["kind"] == "Deployment"
    )
    assert [r.result for r in check_kube_dns([dns], {6})] == [FAIL]
    assert check_kube_dns([dns], {4}) == []


def test_parse_args() -> None:
    assert parse_args(["--a=1", "--b", "2", "--c", "--d=x=y"]) == {
        "a": "1",
        "b": "2",
        "c": "true",
        "d": "x=y",
    }


KUBEADM = """\
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: "fd10::1"}
nodeRegistration:
  kubeletExtraArgs: {node-ip: "fd10::11"}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
networking: {serviceSubnet: "fd00:96::/112", podSubnet: "fd00:10:244::/48"}
apiServer:
  extraArgs: {bind-address: "::"}
controllerManager:
  extraArgs: {node-cidr-mask-size-ipv6: "64"}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "::"
clusterDNS: ["fd00:96::a"]
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: "::"
clusterCIDR: "fd00:10:244::/48"
"""


def test_kubeadm_source(tmp_path: Path) -> None:
    f = tmp_path / "kubeadm.yaml"
    f.write_text(KUBEADM)
    flags = from_kubeadm(f)
    assert set(flags) == set(COMPONENTS)
    assert fails(check_flags(flags, POOLS, {6})) == []
    f.write_text(KUBEADM.replace('podSubnet: "fd00:10:244::/48"', 'podSubnet: "10.244.0.0/16"'))
    assert ("kube-controller-manager", "--cluster-cidr") in fails(
        check_flags(from_kubeadm(f), POOLS, {6})
    )


def test_static_pod_manifests(tmp_path: Path) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-apiserver"},
        "spec": {
            "containers": [
                {
                    "name": "kube-apiserver",
                    "command": [
                        "kube-apiserver",
                        "--advertise-address=10.10.0.1",
                        "--service-cluster-ip-range=10.96.0.0/16",
                    ],
                }
            ]
        },
    }
    (tmp_path / "kube-apiserver.yaml").write_text(json.dumps(pod))
    flags, _ = from_manifests(tmp_path)
    assert flags["kube-apiserver"]["service-cluster-ip-range"] == "10.96.0.0/16"
    assert ("kube-apiserver", "--service-cluster-ip-range") in fails(
        check_flags(flags, POOLS, {4, 6})
    )


def test_preflight_command(store_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = store_env / "kubeadm.yaml"
    f.write_text(KUBEADM)
    rc, _, err = run("preflight", "--kubeadm-config", str(f), capsys=capsys)
    assert rc == 2 and "no enabled IP pools" in err
    rc, out, _ = run(
        "preflight", "--kubeadm-config", str(f), "--mode", "ipv6", "-o", "json", capsys=capsys
    )
    report = json.loads(out)
    # no pools in the store: the cluster CIDR cannot match them
    assert rc == 1 and report["families"] == [6]
    failed = {(c["component"], c["item"]) for c in report["checks"] if c["result"] == "fail"}
    assert ("kube-controller-manager", "--cluster-cidr") in failed
    rc, _, err = run("preflight", capsys=capsys)
    assert rc == 2 and "--kubeadm-config" in err


@pytest.mark.parametrize(
    ("component", "flag", "bad"),
    [
        ("kube-apiserver", "service-cluster-ip-range", "fd00:96::zz/112"),
        ("kube-controller-manager", "cluster-cidr", "pods"),
        ("kube-proxy", "cluster-cidr", "fd00:10:244::/48,x"),
        ("kube-controller-manager", "node-cidr-mask-size-ipv6", "sixty-four"),
        ("kubelet", "cluster-dns", "kube-dns.local"),
    ],
)
def test_malformed_values_are_failed_rows(component: str, flag: str, bad: str) -> None:
    flags = copy.deepcopy(GOOD_V6)
    flags[component][flag] = bad
    rows = check_flags(flags, POOLS, {6})  # no exception: a row names the flag
    row = next(r for r in rows if (r.component, r.item) == (component, f"--{flag}"))
    assert row.result == FAIL and row.fix and repr(bad)[:20] in row.detail


def test_node_mask_sixteen_bits_rule() -> None:
    flags = copy.deepcopy(GOOD_V6)
    for size, ok in (("64", True), ("48", True), ("47", False), ("65", False)):
        flags["kube-controller-manager"]["node-cidr-mask-size-ipv6"] = size  # cluster is /48
        row = next(
            r for r in check_flags(flags, POOLS, {6}) if r.item == "--node-cidr-mask-size-ipv6"
        )
        assert (row.result == PASS) is ok, (size, row)
    dual = copy.deepcopy(GOOD_DUAL)
    dual["kube-controller-manager"]["node-cidr-mask-size-ipv4"] = "26"  # /16 + 10
    assert fails(check_flags(dual, POOLS, {4, 6})) == []
    dual["kube-controller-manager"]["node-cidr-mask-size-ipv4"] = "33"
    assert fails(check_flags(dual, POOLS, {4, 6})) == [
        ("kube-controller-manager", "--node-cidr-mask-size-ipv4")
    ]


def test_kube_dns_service_matches_cluster_dns() -> None:
    import yaml

    docs = list(
        yaml.safe_load_all((Path(__file__).parent / "fixtures" / "kube-dns.yaml").read_text())
    )
    rows = check_kube_dns(docs, {6}, "fd00:1234::a")
    assert ("kube-dns", "Service clusterIP", PASS) in [
        (r.component, r.item, r.result) for r in rows
    ]
    rows = check_kube_dns(docs, {6}, "fd00:96::a")
    bad = next(r for r in rows if r.item == "Service clusterIP")
    assert bad.result == FAIL and "fd00:1234::a" in bad.detail and bad.fix


def test_component_without_flags_is_one_warning() -> None:
    flags = copy.deepcopy(GOOD_DUAL)
    flags["kubelet"] = {}  # e.g. only the control plane's static pods were given
    rows = check_flags(flags, POOLS, {4, 6})
    assert [(r.item, r.result) for r in rows if r.component == "kubelet"] == [("flags", WARN)]
    assert fails(rows) == []
