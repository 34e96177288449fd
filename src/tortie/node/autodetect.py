"""Host address autodetection, Calico's methods with better choices (§10, §12).

Every method narrows the host's addresses to candidates; the choice among candidates then
prefers, in this order: not deprecated, not a single-address prefix (/32 or /128,
keepalived-style VIPs that move between hosts), not temporary (privacy) — and otherwise keeps the kernel's interface
order, as Calico's ``first-found`` does.  Link-local, loopback, tentative and
DAD-failed addresses are never chosen.  The result says which address, from which
interface, and why, so the agent can log it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from tortie.errors import InvalidInput, NotFound
from tortie.node.config import Method
from tortie.node.hostaddrs import HostAddress

DEFAULT_EXCLUDES = (
    r"^docker.*",
    r"^cbr.*",
    r"^dummy.*",
    r"^podman.*",
    r"^virbr.*",
    r"^lxcbr.*",
    r"^veth.*",
    r"^lo",
    r"^br-.*",
    r"^cali.*",
    r"^tunl.*",
    r"^flannel.*",
    r"^kube-ipvs.*",
    r"^cni.*",
    r"^vxlan.calico.*",
    r"^vxlan-v6.calico.*",
    r"^wireguard.cali.*",
    r"^wg-v6.cali.*",
    r"^nodelocaldns.*",
)


@dataclass(frozen=True)
class Detection:
    address: HostAddress
    reason: str

    def describe(self) -> str:
        fam = "IPv4" if self.address.version == 4 else "IPv6"
        return (
            f"{fam} address {self.address.interface} on {self.address.ifname} chosen: {self.reason}"
        )


def _usable(a: HostAddress, version: int) -> bool:
    if a.version != version or a.unusable or a.scope != "global":
        return False
    ip = ipaddress.ip_address(a.address)
    return not (ip.is_link_local or ip.is_loopback or ip.is_multicast or ip.is_unspecified)


def _flaws(a: HostAddress) -> list[str]:
    flaws = []
    if a.deprecated:
        flaws.append("deprecated")
    if a.temporary:
        flaws.append("temporary (privacy)")
    if a.vip_like:
        flaws.append(f"a /{a.prefixlen} (VIP-style)")
    return flaws


def choose(candidates: Sequence[HostAddress], method: str) -> Detection | None:
    """The best candidate; the reason names the method and what was passed over and why."""
    if not candidates:
        return None
    ranked = sorted(
        enumerate(candidates),
        key=lambda ia: (ia[1].deprecated, ia[1].vip_like, ia[1].temporary, ia[0]),
    )
    best = ranked[0][1]
    skipped = [
        f"{a.interface} on {a.ifname} ({', '.join(_flaws(a))})"
        for _, a in ranked[1:]
        if _flaws(a) and candidates.index(a) < candidates.index(best)
    ]
    reason = f"{method}"
    if _flaws(best):
        reason += f"; the best candidate left is {', '.join(_flaws(best))}"
    if skipped:
        reason += f"; passed over {'; '.join(skipped)}"
    return Detection(best, reason)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(re.search(p, name) for p in patterns)


def detect(
    method: Method,
    version: int,
    addresses: Sequence[HostAddress],
    k8s_node_file: str = "",
) -> Detection:
    """Run one method; ``NotFound`` (naming the method and the variable) when nothing fits."""
    usable = [a for a in addresses if _usable(a, version)]
    variable = "IP_AUTODETECTION_METHOD" if version == 4 else "IP6_AUTODETECTION_METHOD"
    found: Detection | None
    if method.kind == "first-found":
        found = choose(
            [a for a in usable if not _matches(a.ifname, DEFAULT_EXCLUDES)],
            "first-found (first global address on an interface not excluded by default)",
        )
    elif method.kind == "interface":
        found = choose(
            [a for a in usable if _matches(a.ifname, method.args)],
            f"interface={','.join(method.args)}",
        )
    elif method.kind == "skip-interface":
        skip = (*DEFAULT_EXCLUDES, *method.args)
        found = choose(
            [a for a in usable if not _matches(a.ifname, skip)],
            f"skip-interface={','.join(method.args)} (plus the default exclusions)",
        )
    elif method.kind == "cidr":
        nets = []
        for text in method.args:
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise InvalidInput(
                    f"{variable}=cidr={text[:60]}: not a CIDR; use e.g. cidr=10.0.0.0/8"
                ) from None
        found = choose(
            [
                a
                for a in usable
                if any(n.version == version and ipaddress.ip_address(a.address) in n for n in nets)
            ],
            f"cidr={','.join(method.args)}",
        )
    elif method.kind == "can-reach":
        found = _can_reach(method.args[0], version, usable, variable)
    else:
        found = _kubernetes(k8s_node_file, version, addresses, variable)
    if found is None:
        fam = "IPv4" if version == 4 else "IPv6"
        raise NotFound(
            f"no {fam} address found by {variable}={method} (looked at "
            f"{len({a.ifname for a in addresses})} interfaces); pick another method or set "
            f"{'IP' if version == 4 else 'IP6'} to the address"
        )
    return found


def _can_reach(
    dest: str, version: int, usable: Sequence[HostAddress], variable: str
) -> Detection | None:
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    try:
        infos = socket.getaddrinfo(dest, 80, family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise NotFound(
            f"{variable}=can-reach={dest[:60]}: cannot resolve it as an IPv{version} "
            f"destination ({exc}); give an IPv{version} address"
        ) from None
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect(infos[0][4])  # UDP connect: a route lookup, no packet sent
        except OSError as exc:
            raise NotFound(
                f"{variable}=can-reach={dest[:60]}: this host has no route to it ({exc}); "
                "check the routes or pick another method"
            ) from None
        local = str(ipaddress.ip_address(s.getsockname()[0].split("%")[0]))
    for a in usable:
        if a.address == local:
            return Detection(a, f"can-reach={dest} (the kernel's source address towards it)")
    return None


def _kubernetes(
    path: str, version: int, addresses: Sequence[HostAddress], variable: str
) -> Detection | None:
    if not path:
        raise InvalidInput(
            f"{variable}=kubernetes-internal-ip needs the Kubernetes Node object: set "
            "TORTIE_K8S_NODE_FILE to a YAML or JSON file holding it "
            "(e.g. kubectl get node NAME -o json)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise NotFound(
            f"TORTIE_K8S_NODE_FILE={path}: cannot read it ({exc.strerror}); check the path"
        ) from None
    try:
        import yaml

        doc = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
        entries = doc["status"]["addresses"]
    except (ValueError, KeyError, TypeError, yaml.YAMLError):
        raise InvalidInput(
            f"TORTIE_K8S_NODE_FILE={path}: not a Kubernetes Node with status.addresses; "
            "save the output of 'kubectl get node NAME -o json'"
        ) from None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("type") != "InternalIP":
            continue
        try:
            ip = ipaddress.ip_address(str(entry.get("address")))
        except ValueError:
            continue
        if ip.version != version:
            continue
        for a in addresses:
            if a.address == str(ip):
                return Detection(a, f"kubernetes-internal-ip (InternalIP of {path})")
        single = HostAddress("", 0, str(ip), 32 if version == 4 else 128, version, "global")
        return Detection(single, f"kubernetes-internal-ip ({path}; not on any interface)")
    return None


def complete(text: str, version: int, addresses: Sequence[HostAddress]) -> tuple[str, str]:
    """An address given in IP / IP6: (address with prefix, note).  IPv4 without a prefix
    takes the prefix of the interface holding it; IPv6 without one becomes /128 (§10)."""
    variable = "IP" if version == 4 else "IP6"
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise InvalidInput(
            f"{variable}={text[:60]!r} is not an address; set it to autodetect, none, or an "
            f"IPv{version} address with or without a prefix"
        ) from None
    if iface.version != version:
        raise InvalidInput(
            f"{variable}={text[:60]} is an IPv{iface.version} address; "
            f"{variable} takes IPv{version} (the other family goes in "
            f"{'IP6' if version == 4 else 'IP'})"
        )
    address = str(iface.ip)
    if "/" in text:
        return f"{address}/{iface.network.prefixlen}", f"{variable} given with its prefix"
    held = next((a for a in addresses if a.address == address), None)
    if version == 4 and held is not None:
        return held.interface, f"{variable} given; prefix of {held.ifname}"
    if version == 4:
        return f"{address}/32", f"{variable} given; not on any interface of this host, so /32"
    return f"{address}/128", f"{variable} given without a prefix, so /128"
