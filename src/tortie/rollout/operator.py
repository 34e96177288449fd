"""The operator-era install: a Tigera ``Installation`` (``operator.tigera.io/v1``), where
the address families are ``spec.calicoNetwork.ipPools`` entries per family and
``nodeAddressAutodetectionV4`` / ``V6``.  Same surgical edits as the manifest rewrite."""

from __future__ import annotations

import ipaddress

import yaml

from tortie.errors import InvalidInput
from tortie.rollout.manifest import Result, Wanted, append_item, last_index
from tortie.rollout.yamledit import (
    Edits,
    after_line,
    compose,
    get,
    items,
    line_start,
    path,
    text_of,
)


def _family(pool: yaml.Node) -> int | None:
    cidr = get(pool, "cidr")
    try:
        return (
            ipaddress.ip_network(cidr.value, strict=False).version
            if isinstance(cidr, yaml.ScalarNode)
            else None
        )
    except ValueError:
        return None


def _remove(full: str, start_node: yaml.Node, last: yaml.Node, edits: Edits, note: str) -> None:
    edits.replace(
        line_start(full, start_node.start_mark.index), after_line(full, last_index(last)), "", note
    )


def rewrite_installation(full: str, source: str, inst: yaml.Node, want: Wanted) -> Result:
    net = path(inst, "spec", "calicoNetwork")
    pools = get(net, "ipPools")
    if (
        not isinstance(net, yaml.MappingNode)
        or not isinstance(pools, yaml.SequenceNode)
        or (not pools.value)
    ):
        raise InvalidInput(
            f"{source}: the Installation has no spec.calicoNetwork.ipPools list; add one "
            "IPv4 pool entry (cidr, blockSize, encapsulation, natOutgoing) first"
        )
    edits = Edits()
    families = {4: want.assign["assign_ipv4"] == "true", 6: want.assign["assign_ipv6"] == "true"}
    have = {v: [p for p in items(pools) if _family(p) == v] for v in (4, 6)}
    for version, on in families.items():
        if on and not have[version]:
            cidr = want.env.get(f"CALICO_IPV{version}POOL_CIDR")
            if not cidr:
                raise InvalidInput(
                    f"{source}: the Installation has no IPv{version} pool; give "
                    f"--ipv{version}-pool CIDR to add one"
                )
            lines = [
                f"cidr: {cidr}",
                f"blockSize: {26 if version == 4 else 122}",
                "encapsulation: None" if version == 6 else "encapsulation: IPIP",
                f"natOutgoing: {'Enabled' if version == 4 else 'Disabled'}",
                "nodeSelector: all()",
            ]
            append_item(full, pools, lines, edits, f"ipPools: add IPv{version} pool {cidr}")
        if not on:
            for pool in have[version]:
                seq_item = pool
                cidr = text_of(get(pool, "cidr"))
                _remove(
                    full, seq_item, seq_item, edits, f"ipPools: remove IPv{version} pool {cidr}"
                )
        key = f"nodeAddressAutodetectionV{version}"
        entry = next(((k, v) for k, v in net.value if getattr(k, "value", None) == key), None)
        if on and entry is None:
            first = net.value[0][0]
            col = first.start_mark.column
            pos = after_line(full, last_index(net))
            text = f"{' ' * col}{key}:\n{' ' * (col + 2)}firstFound: true\n"
            edits.replace(pos, pos, text, f"calicoNetwork: add {key} firstFound")
        if not on and entry is not None:
            _remove(full, entry[0], entry[1], edits, f"calicoNetwork: remove {key}")
    out = edits.apply(full)
    compose(out, source)
    return Result(out, edits.notes, [])
