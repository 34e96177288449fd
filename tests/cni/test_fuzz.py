"""Fuzz the plugin's stdin and environment: always CNI JSON, never a traceback, and the
datastore untouched by every call that fails."""

from __future__ import annotations

import json
import os
from typing import Any

from cni_helpers import add_pool
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tortie.cni.ipam_plugin import run
from tortie.cni.protocol import COMMANDS, SUPPORTED_VERSIONS
from tortie.datastore.base import Datastore
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.memory import MemoryDatastore

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly (about 96%) plausible values, sometimes any JSON value."""
    # Hypothesis favours small integers: the rare branch sits at the top of the range.
    return st.integers(0, 24).flatmap(lambda n: json_values if n == 24 else good)


pool_refs = st.lists(
    st.sampled_from(
        ["pool4", "pool6", "10.65.0.0/24", "fd00:65::/120", "nope", "10.1.0.0/33", "x/y"]
    ),
    max_size=3,
)
ipam_section = st.fixed_dictionaries(
    {},
    optional={
        "type": st.just("calico-ipam"),
        "assign_ipv4": maybe(st.sampled_from(["true", "false", "False", ""])),
        "assign_ipv6": maybe(st.sampled_from(["true", "false", "TRUE", ""])),
        "ipv4_pools": maybe(pool_refs),
        "ipv6_pools": maybe(pool_refs),
    },
)
netconfs = st.fixed_dictionaries(
    {
        "cniVersion": maybe(
            st.sampled_from([*SUPPORTED_VERSIONS, *SUPPORTED_VERSIONS, "0.5.0", ""])
        ),
        "name": maybe(st.sampled_from(["net1", "net1", "k8s-pod-network", "a.b", "bad name", ""])),
        "ipam": maybe(ipam_section),
    },
    optional={
        "type": st.just("calico-ipam"),
        "nodename": maybe(st.sampled_from(["node-1", "node-2", "", "a/b", "x y"])),
        "nodename_file_optional": maybe(st.booleans()),
        "datastore_type": maybe(st.sampled_from(["sqlite", "etcdv3", "kubernetes", "memory", ""])),
        "etcd_endpoints": maybe(st.sampled_from(["http://127.0.0.1:1", ""])),
        "log_level": maybe(st.sampled_from(["debug", "info", "WARNING", "none", "loud"])),
        "prevResult": maybe(
            st.fixed_dictionaries(
                {
                    "ips": st.lists(
                        st.fixed_dictionaries(
                            {
                                "address": maybe(
                                    st.sampled_from(
                                        ["10.65.0.0/26", "fd00:65::/122", "10.65.0.1/26", "junk"]
                                    )
                                )
                            }
                        ),
                        max_size=2,
                    )
                }
            )
        ),
        "cni.dev/valid-attachments": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {"containerID": maybe(st.sampled_from(["c1", "c2"])), "ifname": st.just("eth0")}
                ),
                max_size=2,
            )
        ),
    },
)


@st.composite
def stdins(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 19))
    if kind == 19:
        return draw(st.binary(max_size=64))
    if kind == 18:
        return json.dumps(draw(json_values)).encode()
    conf = draw(netconfs)
    text = json.dumps(conf)
    if kind == 17:
        cut = draw(st.integers(0, len(text)))
        return text[:cut].encode()
    return text.encode()


def text_or(good: list[str]) -> st.SearchStrategy[str]:
    return st.integers(0, 9).flatmap(
        lambda n: st.text(max_size=20) if n == 9 else st.sampled_from(good)
    )


cni_args = st.lists(
    st.sampled_from(
        [
            "K8S_POD_NAME=p",
            "K8S_POD_NAMESPACE=ns",
            "IgnoreUnknown=1",
            "IP=10.65.0.9",
            "IP=fd00:65::9",
            "IP=10.65.0.10,fd00:65::10",
            "IP=192.168.0.1",
            "IP=junk",
            "FOO=bar",
            "novalue",
            "",
        ]
    ),
    max_size=3,
).map(";".join)


@st.composite
def envs(draw: st.DrawFn) -> dict[str, str]:
    """A mostly valid environment, then maybe a variable dropped or garbled."""
    env = {
        "CNI_COMMAND": draw(text_or([*COMMANDS, "ADD", "ADD", "DEL"])),
        "CNI_CONTAINERID": draw(text_or(["c1", "c2", "abc-123", "c.1", "-x", "a/b"])),
        "CNI_NETNS": draw(text_or(["/var/run/netns/x"])),
        "CNI_IFNAME": draw(text_or(["eth0", "eth0", "net1", "x" * 16, "a:b"])),
        "CNI_PATH": draw(text_or(["/usr/lib/cni"])),
    }
    if draw(st.booleans()):
        env["CNI_ARGS"] = draw(st.one_of(cni_args, cni_args, cni_args, st.text(max_size=20)))
    for key in draw(st.lists(st.sampled_from(sorted(env)), max_size=2)):
        if draw(st.integers(0, 3)) == 3:
            env.pop(key, None)
    return env


def fresh_store() -> MemoryDatastore:
    store = MemoryDatastore()
    add_pool(store, "pool4", "10.65.0.0/24")
    add_pool(store, "pool6", "fd00:65::/120")
    return store


def check_answer(code: int, out: str, command: str | None) -> None:
    if code == 1:
        err = json.loads(out)
        assert set(err) == {"cniVersion", "code", "msg", "details"}
        assert err["cniVersion"] in SUPPORTED_VERSIONS
        assert isinstance(err["code"], int) and err["code"] != 999, err
        assert isinstance(err["msg"], str) and err["msg"] and "\n" not in err["msg"]
        assert "Traceback" not in out
        return
    assert code == 0
    if command == "VERSION":
        assert json.loads(out)["supportedVersions"]
    elif command == "ADD":
        result = json.loads(out)
        assert result["cniVersion"] in SUPPORTED_VERSIONS
        assert result.get("ips") or result.get("ip4") or result.get("ip6")
    else:
        assert out == ""


@settings(
    # 4,000 random inputs per run (a new seed each run, so CI runs add up); 10,000 took
    # 44 s of the suite.  TORTIE_FUZZ_EXAMPLES raises it for a long local run.
    max_examples=int(os.environ.get("TORTIE_FUZZ_EXAMPLES", "4000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stdin=stdins(), env=envs())
def test_fuzz_stdin_and_env(stdin: bytes, env: dict[str, str]) -> None:
    store = fresh_store()
    # a second ADD of a known container exercises "address taken" and re-ADD paths
    run(
        json.dumps({"cniVersion": "1.0.0", "name": "net1", "nodename": "node-1"}).encode(),
        {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "c2",
            "CNI_NETNS": "/x",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": "IP=10.65.0.9",
        },
        open_store=lambda _s: store,
    )
    before = store.list("")

    def opener(_settings: DatastoreSettings) -> Datastore:
        return store

    code, out = run(stdin, env, open_store=opener)
    event(f"{env.get('CNI_COMMAND')} -> " + ("ok" if code == 0 else str(json.loads(out)["code"])))
    check_answer(code, out, env.get("CNI_COMMAND"))
    if code != 0:
        assert store.list("") == before, out
