"""The Kubernetes components' flags, read from where a cluster keeps them: a kubeadm
configuration file, a static-pod manifest directory, or the running processes.

Everything becomes one shape: component -> flag (without dashes) -> value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from tortie.errors import InvalidInput

COMPONENTS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)
Flags = dict[str, dict[str, str]]


def parse_args(argv: list[str]) -> dict[str, str]:
    """``--flag=value`` / ``--flag value`` / ``--bool`` into a dict (last one wins)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            if not sep and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                value = argv[i + 1]
                i += 1
            out[name] = value if sep or value else "true"
        i += 1
    return out


def _load_all(path: Path) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read it ({exc.strerror}); check the path") from None
    except yaml.YAMLError:
        raise InvalidInput(
            f"{path}: not valid YAML; give a kubeadm config or a pod manifest"
        ) from None


def _extra(args: Any) -> dict[str, str]:
    """kubeadm extraArgs: a mapping (v1beta3) or a list of {name, value} (v1beta4)."""
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items()}
    if isinstance(args, list):
        return {str(a.get("name")): str(a.get("value")) for a in args if isinstance(a, dict)}
    return {}


def from_kubeadm(path: Path) -> Flags:
    flags: Flags = {c: {} for c in COMPONENTS}
    found = False
    for doc in _load_all(path):
        if not isinstance(doc, dict):
            continue
        kind = doc.get("kind")
        if kind == "ClusterConfiguration":
            found = True
            flags["kube-apiserver"].update(_extra((doc.get("apiServer") or {}).get("extraArgs")))
            flags["kube-controller-manager"].update(
                _extra((doc.get("controllerManager") or {}).get("extraArgs"))
            )
            flags["kube-scheduler"].update(_extra((doc.get("scheduler") or {}).get("extraArgs")))
            net = doc.get("networking") or {}
            if net.get("serviceSubnet"):
                flags["kube-apiserver"].setdefault(
                    "service-cluster-ip-range", str(net["serviceSubnet"])
                )
            if net.get("podSubnet"):
                flags["kube-controller-manager"].setdefault("cluster-cidr", str(net["podSubnet"]))
        elif kind in ("InitConfiguration", "JoinConfiguration"):
            found = True
            endpoint = doc.get("localAPIEndpoint") or {}
            if endpoint.get("advertiseAddress"):
                flags["kube-apiserver"].setdefault(
                    "advertise-address", str(endpoint["advertiseAddress"])
                )
            reg = doc.get("nodeRegistration") or {}
            flags["kubelet"].update(_extra(reg.get("kubeletExtraArgs")))
        elif kind == "KubeletConfiguration":
            found = True
            if doc.get("address"):
                flags["kubelet"]["address"] = str(doc["address"])
            if doc.get("clusterDNS"):
                flags["kubelet"]["cluster-dns"] = ",".join(str(x) for x in doc["clusterDNS"])
        elif kind == "KubeProxyConfiguration":
            found = True
            if doc.get("bindAddress"):
                flags["kube-proxy"]["bind-address"] = str(doc["bindAddress"])
            if doc.get("clusterCIDR"):
                flags["kube-proxy"]["cluster-cidr"] = str(doc["clusterCIDR"])
    if not found:
        raise InvalidInput(
            f"{path}: no kubeadm ClusterConfiguration, InitConfiguration, JoinConfiguration, "
            "KubeletConfiguration or KubeProxyConfiguration; give the file passed to "
            "'kubeadm init --config'"
        )
    return flags


def from_manifests(directory: Path) -> tuple[Flags, list[Any]]:
    """Static pods (``/etc/kubernetes/manifests``): each container's command line.  Also
    returns the other documents found (e.g. a kube-dns Deployment)."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: not a directory; give the static-pod manifest directory")
    flags: Flags = {c: {} for c in COMPONENTS}
    others: list[Any] = []
    for path in sorted(directory.glob("*.y*ml")):
        for doc in _load_all(path):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") != "Pod":
                others.append(doc)
                continue
            for c in (doc.get("spec") or {}).get("containers") or []:
                argv = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
                name = os.path.basename(argv[0]) if argv else str(c.get("name"))
                if name in flags:
                    flags[name].update(parse_args(argv[1:]))
    return flags, others


def from_processes(proc: Path = Path("/proc")) -> Flags:
    flags: Flags = {c: {} for c in COMPONENTS}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if words and os.path.basename(words[0]) in flags:
            flags[os.path.basename(words[0])].update(parse_args(words[1:]))
    return flags
