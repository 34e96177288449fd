"""``tortie manifest rewrite-kube-dns --ipv6``: the seed's kube-dns changes for IPv6 —
images at least 1.14.8, ``--dns-bind-address=[::]`` on kubedns, ``--no-negcache`` on
dnsmasq, the sidecar's probes asking for ``SRV`` instead of ``A`` records."""

from __future__ import annotations

import re

import yaml

from tortie.errors import InvalidInput
from tortie.rollout.manifest import Result, append_item
from tortie.rollout.yamledit import Edits, compose, documents_of_kind, get, items, path, text_of

MIN_VERSION = (1, 14, 8)


def _version(tag: str) -> tuple[int, ...] | None:
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", tag)
    return tuple(int(x) for x in m.groups()) if m else None


def rewrite_kube_dns(full: str, source: str) -> Result:
    docs = compose(full, source)
    deploy = next(
        (
            d
            for d in documents_of_kind(docs, "Deployment")
            if text_of(path(d, "metadata", "name")) == "kube-dns"
        ),
        None,
    )
    if deploy is None:
        raise InvalidInput(f"{source}: no Deployment named kube-dns; give the kube-dns manifest")
    containers = {
        text_of(get(c, "name")): c
        for c in items(path(deploy, "spec", "template", "spec", "containers"))
    }
    missing = [n for n in ("kubedns", "dnsmasq", "sidecar") if n not in containers]
    if missing:
        raise InvalidInput(
            f"{source}: kube-dns has no {', '.join(missing)} container; give the stock "
            "kube-dns Deployment"
        )
    edits = Edits()
    for name, container in containers.items():
        image = get(container, "image")
        if isinstance(image, yaml.ScalarNode) and ":" in image.value:
            repo, tag = image.value.rsplit(":", 1)
            version = _version(tag)
            if version is not None and version < MIN_VERSION:
                new = f"{repo}:{'v' if tag.startswith('v') else ''}1.14.8"
                edits.replace(
                    image.start_mark.index,
                    image.end_mark.index,
                    new,
                    f"{name} image: {tag} -> 1.14.8",
                )
    _ensure_arg(full, containers["kubedns"], "--dns-bind-address", "--dns-bind-address=[::]", edits)
    _ensure_arg(full, containers["dnsmasq"], "--no-negcache", "--no-negcache", edits)
    for arg in items(get(containers["sidecar"], "args")):
        if (
            isinstance(arg, yaml.ScalarNode)
            and arg.value.startswith("--probe=")
            and (arg.value.endswith(",A"))
        ):
            raw = full[arg.start_mark.index : arg.end_mark.index]
            cut = raw.rfind(",A")
            edits.replace(
                arg.start_mark.index + cut,
                arg.start_mark.index + cut + 2,
                ",SRV",
                f"sidecar {arg.value.split(',')[0]}: record type A -> SRV",
            )
    out = edits.apply(full)
    compose(out, source)  # still YAML
    return Result(out, edits.notes, [])


def _ensure_arg(full: str, container: yaml.Node, flag: str, want: str, edits: Edits) -> None:
    name = text_of(get(container, "name"))
    args = get(container, "args")
    for arg in items(args):
        if isinstance(arg, yaml.ScalarNode) and arg.value.split("=", 1)[0] == flag:
            if arg.value != want:
                edits.replace(
                    arg.start_mark.index,
                    arg.end_mark.index,
                    want,
                    f"{name} args: {arg.value} -> {want}",
                )
            return
    if not isinstance(args, yaml.SequenceNode) or not args.value:
        raise InvalidInput(f"the {name} container has no args list; add {want} by hand")
    append_item(full, args, [want], edits, f"{name} args: add {want}")
