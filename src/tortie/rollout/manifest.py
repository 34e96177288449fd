"""``tortie manifest rewrite``: the seed how-to's edits of a Calico manifest, done
surgically (see ``yamledit``): the ``ipam`` section of the CNI configuration in the
``calico-config`` ConfigMap, and the ``calico-node`` container's environment.

The seed's IPv6-only snippet still shows ``"assign_ipv4": "true"`` although its text says to
disable IPv4 assignment; tortie follows the text (``"assign_ipv4": "false"``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from tortie.errors import InvalidInput
from tortie.rollout.yamledit import (
    Edits,
    after_line,
    compose,
    documents_of_kind,
    get,
    items,
    line_start,
    path,
    quoted,
    text_of,
)

MODES = ("ipv4", "ipv6", "dual")


@dataclass
class Wanted:
    mode: str
    assign: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)


def wanted(mode: str, ipv4_pool: str = "", ipv6_pool: str = "", router_id: str = "") -> Wanted:
    """What the seed says a manifest for ``mode`` holds; conflicting options refused."""
    if mode not in MODES:
        raise InvalidInput(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    for flag, cidr, version in (("--ipv4-pool", ipv4_pool, 4), ("--ipv6-pool", ipv6_pool, 6)):
        if not cidr:
            continue
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise InvalidInput(f"{flag} {cidr[:60]!r} is not a CIDR ({exc})") from None
        if net.version != version:
            raise InvalidInput(
                f"{flag} {cidr} is an IPv{net.version} CIDR; give an IPv{version} one"
            )
    if mode == "ipv4" and ipv6_pool:
        raise InvalidInput(
            "--mode ipv4 assigns no IPv6 addresses: drop --ipv6-pool or use --mode dual"
        )
    if mode == "ipv6" and ipv4_pool:
        raise InvalidInput(
            "--mode ipv6 assigns no IPv4 addresses: drop --ipv4-pool or use --mode dual"
        )
    if router_id not in ("", "hash", "auto"):
        raise InvalidInput(f"--router-id {router_id!r} is not hash or auto")
    env: dict[str, str] = {}
    if mode == "ipv4":
        env = {"IP": "autodetect", "FELIX_IPV6SUPPORT": "false"}
        assign = {"assign_ipv4": "true", "assign_ipv6": "false"}
    elif mode == "dual":
        env = {"IP": "autodetect", "IP6": "autodetect", "FELIX_IPV6SUPPORT": "true"}
        assign = {"assign_ipv4": "true", "assign_ipv6": "true"}
    else:
        env = {"IP": "none", "IP6": "autodetect", "FELIX_IPV6SUPPORT": "true"}
        assign = {"assign_ipv4": "false", "assign_ipv6": "true"}
    if ipv4_pool:
        env["CALICO_IPV4POOL_CIDR"] = ipv4_pool
    if ipv6_pool:
        env["CALICO_IPV6POOL_CIDR"] = ipv6_pool
    if router_id == "hash" or (mode == "ipv6" and router_id in ("", "auto")):
        env["CALICO_ROUTER_ID"] = "hash"  # IPv6-only nodes have no IPv4 address to use
    return Wanted(mode, assign, env)


# ------------------------------------------------------------------ the CNI configuration

_PLACEHOLDER = re.compile(r"__[A-Z0-9_]+__")


def parse_cni(text: str) -> dict[str, object]:
    """The CNI configuration with the installer's unquoted placeholders (``__CNI_MTU__``)
    made numbers, so it parses as JSON."""
    return json.loads(_PLACEHOLDER.sub("0", text))  # type: ignore[no-any-return]


def _object_end(text: str, open_brace: int) -> int:
    depth, i, in_string = 0, open_brace, False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InvalidInput("the CNI configuration in calico-config has an unclosed '{'")


def _ipam_edits(full: str, node: yaml.ScalarNode, want: Wanted, edits: Edits) -> None:
    start, end = node.start_mark.index, node.end_mark.index
    region = full[start:end]
    dq = node.style == '"'
    key = '\\"ipam\\"' if dq else '"ipam"'
    at = region.find(key)
    if at < 0:
        raise InvalidInput(
            'calico-config\'s cni_network_config has no "ipam" section; add '
            '"ipam": {"type": "calico-ipam"} to the calico plugin first'
        )
    brace = region.find("{", at)
    close = _object_end(region.replace('\\"', "''") if dq else region, brace)
    body = region[brace + 1 : close]
    q = '\\"' if dq else '"'
    missing = []
    for name, value in want.assign.items():
        m = re.search(
            re.escape(f"{q}{name}{q}")
            + r"\s*:\s*("
            + re.escape(q)
            + r"[^\"\\]*"
            + re.escape(q)
            + r"|true|false)",
            body,
        )
        if m is None:
            missing.append((name, value))
        elif m.group(1) != f"{q}{value}{q}":
            s = start + brace + 1 + m.start(1)
            edits.replace(
                s,
                start + brace + 1 + m.end(1),
                f"{q}{value}{q}",
                f'cni_network_config ipam.{name}: {m.group(1).replace(chr(92), "")} -> "{value}"',
            )
    if not missing:
        return
    nl = body.find("\n")
    if nl >= 0 and body[:nl].strip() == "":  # multi-line object: new lines, same indent
        first = body[nl + 1 :]
        indent = first[: len(first) - len(first.lstrip(" "))]
        new = "".join(f"\n{indent}{q}{n}{q}: {q}{v}{q}," for n, v in missing)
        pos = start + brace + 1
    else:
        new = "".join(f"{q}{n}{q}: {q}{v}{q}, " for n, v in missing)
        pos = start + brace + 1
    edits.replace(
        pos,
        pos,
        new,
        "cni_network_config ipam: add " + ", ".join(f'"{n}": "{v}"' for n, v in missing),
    )


# ------------------------------------------------------------------ the environment


def last_index(node: yaml.Node) -> int:
    if isinstance(node, yaml.ScalarNode):
        return int(node.end_mark.index)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    return max((last_index(c) for c in children), default=int(node.end_mark.index))


def append_item(
    full: str, seq: yaml.SequenceNode, lines: list[str], edits: Edits, note: str
) -> None:
    """Append a block-sequence item written as ``lines`` (the first without its ``- ``)."""
    first = seq.value[0]
    line = full[line_start(full, first.start_mark.index) : first.start_mark.index]
    dash = line.rfind("-")
    if dash < 0:
        raise InvalidInput(f"cannot add to a flow-style list ({note}); write it in block style")
    pos = after_line(full, last_index(seq.value[-1]))
    text = (
        " " * dash
        + "- "
        + lines[0]
        + "\n"
        + "".join(" " * (dash + 2) + extra + "\n" for extra in lines[1:])
    )
    if pos == len(full) and not full.endswith("\n"):
        text = "\n" + text
    edits.replace(pos, pos, text, note)


def _env_edits(full: str, env: yaml.Node, want: Wanted, edits: Edits, problems: list[str]) -> None:
    if not isinstance(env, yaml.SequenceNode) or not env.value:
        raise InvalidInput("the calico-node container has no env list to edit")
    present = {text_of(get(item, "name")): item for item in items(env)}
    for name, value in want.env.items():
        item = present.get(name)
        if item is None:
            append_item(
                full,
                env,
                [f"name: {name}", f"value: {quoted(value)}"],
                edits,
                f"calico-node env {name}: add {value}",
            )
            continue
        node = get(item, "value")
        if isinstance(node, yaml.ScalarNode):
            if node.value != value:
                edits.replace(
                    node.start_mark.index,
                    node.end_mark.index,
                    quoted(value, node),
                    f"calico-node env {name}: {node.value} -> {value}",
                )
        else:
            problems.append(
                f"calico-node env {name} comes from valueFrom; set it to {value!r} where it is "
                "defined (tortie does not rewrite references)"
            )


def _named(docs: list[yaml.Node], kind: str, name: str) -> yaml.Node | None:
    return next(
        (d for d in documents_of_kind(docs, kind) if text_of(path(d, "metadata", "name")) == name),
        None,
    )


@dataclass
class Result:
    text: str
    changes: list[str]
    problems: list[str]


def _with_encapsulation(want: Wanted, env: yaml.Node, cm: yaml.Node) -> Wanted:
    """``want`` plus the env that gives the IPv6 pool the manifest's overlay."""
    from tortie.rollout.encapsulation import encapsulation_env

    values: dict[str, str] = {}
    for item in items(env):
        name, value = text_of(get(item, "name")), get(item, "value")
        if name and isinstance(value, yaml.ScalarNode):
            values[name] = value.value
    backend_node = path(cm, "data", "calico_backend")
    backend = backend_node.value if isinstance(backend_node, yaml.ScalarNode) else "bird"
    extra = encapsulation_env(values, backend, want.mode)
    return Wanted(want.mode, want.assign, {**want.env, **extra}) if extra else want


def rewrite(full: str, source: str, want: Wanted) -> Result:
    docs = compose(full, source)
    installation = next(documents_of_kind(docs, "Installation"), None)
    if installation is not None:
        from tortie.rollout.operator import rewrite_installation

        return rewrite_installation(full, source, installation, want)
    edits: Edits = Edits()
    problems: list[str] = []
    cm = _named(docs, "ConfigMap", "calico-config")
    if cm is None:
        raise InvalidInput(
            f"{source}: no ConfigMap named calico-config; give the Calico manifest "
            "(calico.yaml or calico-etcd.yaml), or an operator Installation"
        )
    cni = path(cm, "data", "cni_network_config")
    if not isinstance(cni, yaml.ScalarNode):
        raise InvalidInput(f"{source}: calico-config has no data.cni_network_config")
    try:
        parse_cni(cni.value)
    except ValueError as exc:
        raise InvalidInput(
            f"{source}: calico-config's cni_network_config is not JSON ({exc}); fix it first"
        ) from None
    _ipam_edits(full, cni, want, edits)
    ds = _named(docs, "DaemonSet", "calico-node")
    container = next(
        (
            c
            for c in items(path(ds, "spec", "template", "spec", "containers"))
            if text_of(get(c, "name")) == "calico-node"
        ),
        None,
    )
    if container is None:
        raise InvalidInput(
            f"{source}: no calico-node DaemonSet with a calico-node container; give the "
            "Calico manifest"
        )
    env = get(container, "env")
    if env is None:
        raise InvalidInput(f"{source}: the calico-node container has no env list")
    want = _with_encapsulation(want, env, cm)
    _env_edits(full, env, want, edits, problems)
    out = edits.apply(full)
    verify(out, source, want)
    return Result(out, edits.notes, problems)


def verify(text: str, source: str, want: Wanted) -> None:
    """Parse the result as a reader would and check it says what was asked."""
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    cm = next(
        d
        for d in docs
        if d.get("kind") == "ConfigMap" and d.get("metadata", {}).get("name") == "calico-config"
    )
    conf = parse_cni(cm["data"]["cni_network_config"])
    listed = conf.get("plugins")
    plugins: list[Any] = listed if isinstance(listed, list) else [conf]
    ipam = next(p["ipam"] for p in plugins if isinstance(p, dict) and "ipam" in p)
    for k, v in want.assign.items():
        if ipam.get(k) != v:
            raise InvalidInput(f"{source}: internal check failed: ipam.{k} is {ipam.get(k)!r}")
    ds = next(
        d
        for d in docs
        if d.get("kind") == "DaemonSet" and d.get("metadata", {}).get("name") == "calico-node"
    )
    c = next(
        c for c in ds["spec"]["template"]["spec"]["containers"] if c.get("name") == "calico-node"
    )
    env = {e.get("name"): e.get("value") for e in c.get("env") or []}
    for k, v in want.env.items():
        if k not in env or (env[k] is not None and env[k] != v):
            raise InvalidInput(f"{source}: internal check failed: env {k} is {env.get(k)!r}")
