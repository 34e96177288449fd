"""Where ``tortie preflight`` reads the flags: a static-pod manifest directory (good, then
each control-plane component broken), a kubeadm v1beta4 config, the processes' command
lines (a fake /proc), both sources at once through the command, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from rollout_cli import run

from tortie.rollout import kubeflags, preflight_host

P6 = "fd00:10:244::/48"
API = "https://[fd10::1]:6443"
CONTROL_PLANE = {
    "kube-apiserver": [
        "--bind-address=::",
        "--advertise-address=fd10::1",
        "--service-cluster-ip-range=fd00:96::/112",
    ],
    "kube-controller-manager": [
        f"--master={API}",
        f"--cluster-cidr={P6}",
        "--node-cidr-mask-size-ipv6=64",
    ],
    "kube-scheduler": ["--master", API, "--leader-elect"],
}
NODE_CONFIG = f"""\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "::"
clusterDNS: ["fd00:96::a"]
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
nodeRegistration:
  kubeletExtraArgs:
  - {{name: node-ip, value: "fd10::11"}}
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: "::"
clusterCIDR: "{P6}"
"""


def _static_pods(directory: Path, args: dict[str, list[str]]) -> None:
    directory.mkdir(exist_ok=True)
    for name, argv in args.items():
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {
                "containers": [{"name": name, "command": [name], "args": argv}],
                "hostNetwork": True,
            },
        }
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(pod))


@pytest.fixture
def cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A store with the IPv6 pool, a good node config, and this host's rows made good (the
    host checks have their own test)."""
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "t.db"))
    monkeypatch.setattr(preflight_host, "read_host", lambda: ("1", ["fd10::11/64"], True))
    (tmp_path / "pool.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\n"
        f"spec: {{cidr: '{P6}'}}\n"
    )
    assert run("apply", "-f", str(tmp_path / "pool.yaml"), capsys=capsys)[0] == 0
    (tmp_path / "node.yaml").write_text(NODE_CONFIG)
    return tmp_path


def _report(cluster: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    rc, out, err = run(
        "preflight",
        "--manifests",
        str(cluster / "manifests"),
        "--kubeadm-config",
        str(cluster / "node.yaml"),
        "-o",
        "json",
        capsys=capsys,
    )
    assert err == ""
    return rc, json.loads(out)


def test_good_static_pods_and_node_config(
    cluster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _static_pods(cluster / "manifests", CONTROL_PLANE)
    rc, report = _report(cluster, capsys)
    assert report["families"] == [6]  # from the enabled pools
    assert rc == 0 and report["failures"] == 0, report
    checked = {(c["component"], c["item"]) for c in report["checks"]}
    for row in [
        ("kube-apiserver", "--bind-address"),
        ("kube-apiserver", "--advertise-address"),
        ("kube-apiserver", "--service-cluster-ip-range"),
        ("kube-controller-manager", "--master"),
        ("kube-controller-manager", "--cluster-cidr"),
        ("kube-controller-manager", "--node-cidr-mask-size-ipv6"),
        ("kube-scheduler", "--master"),
        ("kubelet", "--address"),
        ("kubelet", "--cluster-dns"),
        ("kubelet", "--node-ip"),
        ("kube-proxy", "--bind-address"),
        ("kube-proxy", "--cluster-cidr"),
        ("host", "net.ipv6.conf.all.forwarding"),
    ]:
        assert row in checked


@pytest.mark.parametrize(
    ("component", "flag", "bad"),
    [
        ("kube-apiserver", "--bind-address", "0.0.0.0"),
        ("kube-apiserver", "--advertise-address", "10.10.0.1"),
        ("kube-apiserver", "--service-cluster-ip-range", "10.96.0.0/12"),
        ("kube-controller-manager", "--master", "https://10.10.0.1:6443"),
        ("kube-controller-manager", "--cluster-cidr", "fd00:99::/48"),
        ("kube-controller-manager", "--node-cidr-mask-size-ipv6", "96"),
        ("kube-scheduler", "--master", "https://10.10.0.1:6443"),
    ],
)
def test_broken_static_pod(
    cluster: Path, capsys: pytest.CaptureFixture[str], component: str, flag: str, bad: str
) -> None:
    args = {k: list(v) for k, v in CONTROL_PLANE.items()}
    args[component] = [a for a in args[component] if not a.startswith(flag)]
    if component == "kube-scheduler":
        args[component] = ["--leader-elect"]
    args[component].append(f"{flag}={bad}")
    _static_pods(cluster / "manifests", args)
    rc, report = _report(cluster, capsys)
    failed = [c for c in report["checks"] if c["result"] == "fail"]
    assert rc == 1 and (component, flag) in {(c["component"], c["item"]) for c in failed}
    assert all(c["fix"] for c in failed)


def test_processes(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, argv in (
        ("101", ["/usr/bin/kube-apiserver", "--advertise-address=fd10::1"]),
        ("102", ["/usr/bin/kubelet", "--node-ip", "fd10::11", "--config=/var/lib/k.yaml"]),
        ("103", ["/usr/local/bin/kube-proxy", "--bind-address=::"]),
        ("104", ["/usr/bin/python3", "--bind-address=0.0.0.0"]),  # not a component
    ):
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (proc / "self").mkdir()
    (proc / "105").mkdir()  # a process that exited: no cmdline
    flags = kubeflags.from_processes(proc)
    assert flags["kube-apiserver"] == {"advertise-address": "fd10::1"}
    assert flags["kubelet"] == {"node-ip": "fd10::11", "config": "/var/lib/k.yaml"}
    assert flags["kube-proxy"] == {"bind-address": "::"}
    assert flags["kube-scheduler"] == {}


def test_processes_of_this_machine_read_only() -> None:
    # reads every /proc/N/cmdline; the test runner itself is not a Kubernetes component
    flags = kubeflags.from_processes()
    assert set(flags) == set(kubeflags.COMPONENTS)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("notyaml.yaml", "kind: [unclosed\n", "not valid YAML"),
        ("other.yaml", "apiVersion: v1\nkind: ConfigMap\n", "no kubeadm ClusterConfiguration"),
        ("missing.yaml", None, "cannot read it"),
    ],
)
def test_bad_kubeadm_config(
    cluster: Path, capsys: pytest.CaptureFixture[str], name: str, text: str | None, message: str
) -> None:
    path = cluster / name
    if text is not None:
        path.write_text(text)
    rc, out, err = run("preflight", "--kubeadm-config", str(path), capsys=capsys)
    assert rc == 2 and out == ""
    assert str(path) in err and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_manifest_directory(cluster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run("preflight", "--manifests", str(cluster / "nope"), capsys=capsys)
    assert rc == 2 and "not a directory" in err
    (cluster / "m").mkdir()
    (cluster / "m" / "kube-apiserver.yaml").write_text("spec: [\n")
    rc, _, err = run("preflight", "--manifests", str(cluster / "m"), capsys=capsys)
    assert rc == 2 and "kube-apiserver.yaml" in err and "not valid YAML" in err
    assert "Traceback" not in err


def test_no_source_and_no_pools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "t.db"))
    rc, _, err = run("preflight", capsys=capsys)
    assert rc == 2 and "--kubeadm-config FILE, --manifests DIR or --from-processes" in err
    (tmp_path / "k.yaml").write_text(NODE_CONFIG)
    rc, _, err = run("preflight", "--kubeadm-config", str(tmp_path / "k.yaml"), capsys=capsys)
    assert rc == 2 and "no enabled IP pools" in err and "--mode" in err


def test_running_process(cluster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real process whose command line is a kube-apiserver's (argv[0] set by the shell)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash to start a process named kube-apiserver")
    # one process (no child left behind): Python sleeping, its argv[0] set by bash's exec -a
    proc = subprocess.Popen(
        [
            bash,
            "-c",
            'exec -a kube-apiserver "$0" -c "import time; time.sleep(30)" '
            "--advertise-address=10.10.0.1 --service-cluster-ip-range=fd00:96::/112",
            sys.executable,
        ]
    )
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        for _ in range(100):  # until bash has exec'd
            if cmdline.read_bytes().startswith(b"kube-apiserver\0"):
                break
            time.sleep(0.02)
        rc, out, err = run(
            "preflight", "--from-processes", "--mode", "ipv6", "-o", "json", capsys=capsys
        )
    finally:
        proc.kill()
        proc.wait()
    assert err == "" and rc == 1
    rows = {(c["component"], c["item"]): c for c in json.loads(out)["checks"]}
    assert rows[("kube-apiserver", "--service-cluster-ip-range")]["result"] == "pass"
    bad = rows[("kube-apiserver", "--advertise-address")]
    assert bad["result"] == "fail" and "10.10.0.1 is not IPv6" in bad["detail"]
