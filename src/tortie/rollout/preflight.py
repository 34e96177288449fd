"""``tortie preflight``: every row of the seed's Kubernetes tables checked against the
flags the cluster really has, the tortie pools and this host's IPv6 prerequisites.

Each check is a row: component, item, pass / warn / fail, what was found, and — for a
failure — the exact fix.  Pure functions over the flags and pools, plus the host reader.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from tortie.rollout.kubeflags import Flags

PASS, WARN, FAIL = "pass", "warn", "fail"
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Row:
    component: str
    item: str
    result: str
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def _nets(text: str) -> list[IPNet]:
    out = []
    for part in text.split(","):
        if part.strip():
            out.append(ipaddress.ip_network(part.strip(), strict=False))
    return out


def _parse_nets(comp: str, flag: str, text: str) -> tuple[list[IPNet], Row | None]:
    """The CIDRs of a flag, or a failed row naming the flag when one is not a CIDR."""
    try:
        return _nets(text), None
    except ValueError:
        return [], Row(
            comp,
            f"--{flag}",
            FAIL,
            f"{text[:80]!r} is not a comma-separated list of CIDRs",
            f"give --{flag} as CIDRs, e.g. 10.96.0.0/16,fd00:96::/112",
        )


def _addr_family(text: str) -> int | None:  # 4, 6 or None
    host = text.strip()
    if "://" in host:
        host = urlsplit(host).hostname or ""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _families_text(fams: set[int]) -> str:
    return {frozenset({4}): "IPv4", frozenset({6}): "IPv6"}.get(frozenset(fams), "dual stack")


def _address_row(
    comp: str, flag: str, value: str | None, fams: set[int], fix: str, required: bool = False
) -> Row:
    item = f"--{flag}"
    if value is None:
        return Row(
            comp,
            item,
            FAIL if required else WARN,
            "not set",
            fix if required else f"set {item} to an address of the right family",
        )
    values = [v for v in value.split(",") if v.strip()]
    got = {_addr_family(v) for v in values}
    if None in got:
        return Row(comp, item, FAIL, f"{value!r} is not an address", fix)
    if fams == {6} and got != {6}:
        return Row(comp, item, FAIL, f"{value} is not IPv6", fix)
    if fams == {4} and got != {4}:
        return Row(comp, item, FAIL, f"{value} is not IPv4", fix)
    return Row(comp, item, PASS, value)


def _apiserver_rows(api: dict[str, str], fams: set[int]) -> tuple[list[Row], list[IPNet]]:
    """Bind and advertise addresses, and the service range (returned for --cluster-dns)."""
    rows: list[Row] = []
    want = _families_text(fams)
    any_v6 = "::" if fams == {6} else "0.0.0.0 or ::"
    for flag in ("bind-address", "insecure-bind-address"):
        if flag in api or (flag == "bind-address" and fams == {6}):
            rows.append(
                _address_row(
                    "kube-apiserver",
                    flag,
                    api.get(flag),
                    fams,
                    f"set --{flag}={any_v6} (or this host's {want} address)",
                )
            )
    rows.append(
        _address_row(
            "kube-apiserver",
            "advertise-address",
            api.get("advertise-address"),
            fams,
            "set --advertise-address to the address nodes use to reach "
            f"the API server ({'IPv6' if fams == {6} else 'either family'})",
        )
    )
    svc_text = api.get("service-cluster-ip-range")
    svc: list[IPNet] = []
    if svc_text is None:
        rows.append(
            Row(
                "kube-apiserver",
                "--service-cluster-ip-range",
                FAIL,
                "not set",
                "set --service-cluster-ip-range (IPv4,IPv6 for dual stack)",
            )
        )
    else:
        svc, bad = _parse_nets("kube-apiserver", "service-cluster-ip-range", svc_text)
        got = [n.version for n in svc]
        expect = sorted(fams)
        if bad is not None:
            rows.append(bad)
        elif sorted(got) != expect or len(got) != len(fams):
            rows.append(
                Row(
                    "kube-apiserver",
                    "--service-cluster-ip-range",
                    FAIL,
                    f"{svc_text}: {len(got)} range(s) of IPv{'/'.join(map(str, got))}",
                    f"give one {' and one '.join(f'IPv{v}' for v in expect)} range "
                    "(comma-separated for dual stack)",
                )
            )
        else:
            rows.append(Row("kube-apiserver", "--service-cluster-ip-range", PASS, svc_text))
    return rows, svc


def _cluster_cidr_rows(
    cm: dict[str, str], proxy: dict[str, str], pools: dict[int, list[IPNet]], fams: set[int]
) -> tuple[list[Row], list[IPNet]]:
    """--cluster-cidr of the controller manager and kube-proxy equal to the pools and to
    each other; returns the controller manager's CIDRs (for the node masks)."""
    rows: list[Row] = []
    pool_text = ",".join(str(n) for v in sorted(fams) for n in pools.get(v, []))
    parsed: dict[str, list[IPNet]] = {}
    for comp, f in (("kube-controller-manager", cm), ("kube-proxy", proxy)):
        value = f.get("cluster-cidr")
        if value is None:
            result = FAIL if comp == "kube-controller-manager" else WARN
            rows.append(
                Row(
                    comp,
                    "--cluster-cidr",
                    result,
                    "not set",
                    f"set --cluster-cidr={pool_text or 'the IP pools'}",
                )
            )
            continue
        nets, bad = _parse_nets(comp, "cluster-cidr", value)
        if bad is not None:
            rows.append(bad)
            continue
        parsed[comp] = nets
        mismatch = [
            v for v in sorted(fams) if {n for n in nets if n.version == v} != set(pools.get(v, []))
        ]
        if mismatch:
            rows.append(
                Row(
                    comp,
                    "--cluster-cidr",
                    FAIL,
                    f"{value} but the tortie IPv{'/'.join(map(str, mismatch))} pools are "
                    f"{pool_text or 'missing'}",
                    f"set --cluster-cidr={pool_text} (or change the pools to match)",
                )
            )
        else:
            rows.append(Row(comp, "--cluster-cidr", PASS, f"{value} = the IP pools"))
    if (
        "kube-controller-manager" in parsed
        and "kube-proxy" in parsed
        and set(parsed["kube-controller-manager"]) != set(parsed["kube-proxy"])
    ):
        rows.append(
            Row(
                "kube-proxy",
                "--cluster-cidr",
                FAIL,
                f"{proxy['cluster-cidr']} differs from kube-controller-manager's "
                f"{cm['cluster-cidr']}",
                f"set both to {cm['cluster-cidr']}",
            )
        )
    return rows, parsed.get("kube-controller-manager", [])


def _node_mask_rows(cm: dict[str, str], cluster: list[IPNet], fams: set[int]) -> list[Row]:
    """--node-cidr-mask-size-ipv4/6: not shorter than the cluster's, at most 16 bits longer."""
    rows: list[Row] = []
    for version, default in ((4, 24), (6, 64)):
        if version not in fams:
            continue
        flag = f"node-cidr-mask-size-ipv{version}"
        text = cm.get(flag) or (cm.get("node-cidr-mask-size") if len(fams) == 1 else None)
        if text is not None and not text.strip().isdigit():
            rows.append(
                Row(
                    "kube-controller-manager",
                    f"--{flag}",
                    FAIL,
                    f"{text[:40]!r} is not a prefix length",
                    f"set --{flag} to a number (default {default})",
                )
            )
            continue
        size = int(text) if text else default
        for net in (n for n in cluster if n.version == version):
            if size < net.prefixlen or size - net.prefixlen > 16:
                rows.append(
                    Row(
                        "kube-controller-manager",
                        f"--{flag}",
                        FAIL,
                        f"/{size} for cluster CIDR {net} (more than 16 bits longer, or shorter)",
                        f"set --{flag} between {net.prefixlen} and {net.prefixlen + 16}",
                    )
                )
            else:
                rows.append(Row("kube-controller-manager", f"--{flag}", PASS, f"/{size} in {net}"))
    return rows


def _master_rows(flags: Flags, fams: set[int]) -> list[Row]:
    rows: list[Row] = []
    cm, sched, proxy = (
        flags["kube-controller-manager"],
        flags["kube-scheduler"],
        flags["kube-proxy"],
    )
    for comp, f in (
        ("kube-controller-manager", cm),
        ("kube-scheduler", sched),
        ("kube-proxy", proxy),
    ):
        if "master" in f:
            rows.append(
                _address_row(
                    comp,
                    "master",
                    f["master"],
                    fams,
                    "set --master to the API server's address of the right "
                    "family (https://[IPv6]:6443)",
                )
            )
    return rows


def _kubelet_rows(kubelet: dict[str, str], svc: list[IPNet], fams: set[int]) -> list[Row]:
    rows: list[Row] = []
    want = _families_text(fams)
    any_v6 = "::" if fams == {6} else "0.0.0.0 or ::"
    svc_text = ",".join(str(n) for n in svc)
    if "address" in kubelet or fams == {6}:
        rows.append(
            _address_row(
                "kubelet", "address", kubelet.get("address"), fams, f"set --address={any_v6}"
            )
        )
    node_ip = kubelet.get("node-ip")
    if node_ip is None:
        rows.append(
            Row(
                "kubelet",
                "--node-ip",
                WARN if fams != {6, 4} else FAIL,
                "not set",
                "set --node-ip to this node's address"
                + (" of each family (IPv4,IPv6)" if len(fams) == 2 else ""),
            )
        )
    else:
        ip_fams = sorted(int(_addr_family(v) or 0) for v in node_ip.split(","))
        if ip_fams != sorted(fams):
            rows.append(
                Row(
                    "kubelet",
                    "--node-ip",
                    FAIL,
                    f"{node_ip} ({want} wanted)",
                    "give one address per family in use, comma-separated",
                )
            )
        else:
            rows.append(Row("kubelet", "--node-ip", PASS, node_ip))
    dns = kubelet.get("cluster-dns")
    if dns is None:
        rows.append(
            Row(
                "kubelet",
                "--cluster-dns",
                WARN,
                "not set",
                "set --cluster-dns to the DNS service's address in the service range",
            )
        )
    elif any(_addr_family(d) is None for d in dns.split(",")):
        rows.append(
            Row(
                "kubelet",
                "--cluster-dns",
                FAIL,
                f"{dns[:80]!r} is not a list of addresses",
                "set --cluster-dns to the DNS service's address(es), comma-separated",
            )
        )
    else:
        outside = [
            d
            for d in dns.split(",")
            if svc
            and not any(
                _addr_family(d) == n.version and ipaddress.ip_address(d.strip()) in n for n in svc
            )
        ]
        if outside:
            rows.append(
                Row(
                    "kubelet",
                    "--cluster-dns",
                    FAIL,
                    f"{', '.join(outside)} is outside --service-cluster-ip-range {svc_text}",
                    "pick the DNS service address inside the service range",
                )
            )
        elif fams == {6} and not any(_addr_family(d) == 6 for d in dns.split(",")):
            rows.append(
                Row(
                    "kubelet",
                    "--cluster-dns",
                    FAIL,
                    f"{dns} has no IPv6 address",
                    "use the DNS service's IPv6 address",
                )
            )
        else:
            rows.append(Row("kubelet", "--cluster-dns", PASS, dns))
    return rows


def _proxy_bind_rows(proxy: dict[str, str], fams: set[int]) -> list[Row]:
    rows: list[Row] = []
    any_v6 = "::" if fams == {6} else "0.0.0.0 or ::"
    if "bind-address" in proxy or fams == {6}:
        rows.append(
            _address_row(
                "kube-proxy",
                "bind-address",
                proxy.get("bind-address"),
                fams,
                f"set --bind-address={any_v6}",
            )
        )
    return rows


def check_flags(flags: Flags, pools: dict[int, list[IPNet]], fams: set[int]) -> list[Row]:
    """Every row of the seed's tables for the families ``fams`` (4, 6 or both)."""
    rows, svc = _apiserver_rows(flags["kube-apiserver"], fams)
    cidr_rows, cluster = _cluster_cidr_rows(
        flags["kube-controller-manager"], flags["kube-proxy"], pools, fams
    )
    rows += cidr_rows
    rows += _node_mask_rows(flags["kube-controller-manager"], cluster, fams)
    rows += _master_rows(flags, fams)
    rows += _kubelet_rows(flags["kubelet"], svc, fams)
    rows += _proxy_bind_rows(flags["kube-proxy"], fams)
    # a component none of the sources describes gets one warning, not a row per flag
    missing = {comp for comp in flags if not flags[comp]}
    rows = [r for r in rows if r.component not in missing]
    for comp in flags:
        if comp in missing:
            rows.append(
                Row(
                    comp,
                    "flags",
                    WARN,
                    "none found in the given sources",
                    "give --kubeadm-config, --manifests or --from-processes",
                )
            )
    return rows
