"""calico-node's variables read into NodeConfig: Calico's meanings and its error texts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tortie.errors import InvalidInput
from tortie.node.config import Method, config_from_env, parse_bool, parse_duration, parse_method
from tortie.node.routerid import hashed_router_id, router_id
from tortie.nodename import determine_node_name


def env(**kw: str) -> dict[str, str]:
    return {"NODENAME": "node-a", "CALICO_NODENAME_FILE": "/nonexistent/nodename", **kw}


def test_defaults() -> None:
    c = config_from_env(env())
    assert c.node_name == "node-a" and c.name_source == "NODENAME"
    assert c.ip_method == Method("first-found") and c.ip6_method == Method("first-found")
    assert c.backend == "bird" and c.ipv6_support and c.ip_forwarding
    assert c.run_dir == "/var/run/tortie" and c.as_number is None and c.poll_interval == 0
    assert (c.pool4.block_size, c.pool6.block_size) == (26, 122)
    assert c.pool4.nat_outgoing and not c.pool6.nat_outgoing


def test_node_name_order(tmp_path: Path) -> None:
    f = tmp_path / "nodename"
    f.write_text("From-File\n")
    base = {"CALICO_NODENAME_FILE": str(f), "HOSTNAME": "Host-Env"}
    assert determine_node_name({**base, "NODENAME": " Big-Name "}) == ("big-name", "NODENAME")
    assert determine_node_name(base)[0] == "from-file"
    f.unlink()
    assert determine_node_name(base) == ("host-env", "HOSTNAME")


@pytest.mark.parametrize(
    ("text", "kind", "args"),
    [
        ("", "first-found", ()),
        ("first-found", "first-found", ()),
        ("interface=eth.*,ens.*", "interface", ("eth.*", "ens.*")),
        ("skip-interface=eth1", "skip-interface", ("eth1",)),
        ("cidr=10.0.0.0/8, fd00::/8", "cidr", ("10.0.0.0/8", "fd00::/8")),
        ("can-reach=8.8.8.8", "can-reach", ("8.8.8.8",)),
        ("kubernetes-internal-ip", "kubernetes-internal-ip", ()),
    ],
)
def test_methods(text: str, kind: str, args: tuple[str, ...]) -> None:
    assert parse_method("IP_AUTODETECTION_METHOD", text) == Method(kind, args)


@pytest.mark.parametrize("text", ["first_found", "eth0", "interface=", "bogus=1", "first-found=x"])
def test_unknown_method_is_calicos_error(text: str) -> None:
    with pytest.raises(InvalidInput, match="Invalid IP autodetection method") as e:
        config_from_env(env(IP6_AUTODETECTION_METHOD=text))
    assert "IP6_AUTODETECTION_METHOD" in str(e.value)


def test_bad_regex_named() -> None:
    with pytest.raises(InvalidInput, match=r"IP_AUTODETECTION_METHOD.*regular expression"):
        config_from_env(env(IP_AUTODETECTION_METHOD="interface=eth(["))


@pytest.mark.parametrize("false", ["false", "0", "no", "n", "f", "FALSE", "No"])
def test_calico_false_values(false: str) -> None:
    assert parse_bool("X", false, True) is False
    assert config_from_env(env(FELIX_IPV6SUPPORT=false)).ipv6_support is False


def test_true_and_default() -> None:
    assert parse_bool("X", "true", False) and parse_bool("X", "yes", False)
    assert parse_bool("X", "", True) and not parse_bool("X", " ", False)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CALICO_IPV4POOL_BLOCK_SIZE", "33"),
        ("CALICO_IPV6POOL_BLOCK_SIZE", "100"),
        ("CALICO_IPV4POOL_BLOCK_SIZE", "x"),
    ],
)
def test_block_size_error(var: str, value: str) -> None:
    v = "4" if "IPV4" in var else "6"
    with pytest.raises(InvalidInput, match=f"Invalid blocksize {value} for version {v}"):
        config_from_env(env(**{var: value}))


def test_no_default_pools_with_cidr_names_both() -> None:
    with pytest.raises(InvalidInput, match=r"NO_DEFAULT_POOLS.*CALICO_IPV6POOL_CIDR"):
        config_from_env(env(NO_DEFAULT_POOLS="true", CALICO_IPV6POOL_CIDR="fd00:1::/48"))
    assert config_from_env(env(NO_DEFAULT_POOLS="true")).no_default_pools


@pytest.mark.parametrize(
    ("var", "value", "match"),
    [
        ("CALICO_NETWORKING_BACKEND", "calico", "CALICO_NETWORKING_BACKEND"),
        ("FELIX_IPFORWARDING", "maybe", "FELIX_IPFORWARDING"),
        ("AS", "abc", "AS="),
        ("AS", "0", "AS="),
        ("AUTODETECT_POLL_INTERVAL", "soon", "AUTODETECT_POLL_INTERVAL"),
        ("TORTIE_BGP_HOLD_TIME", "2", "TORTIE_BGP_HOLD_TIME=2 is too short"),
        ("TORTIE_BGP_HOLD_TIME", "70000", "TORTIE_BGP_HOLD_TIME"),
        ("TORTIE_BGP_CONNECT_RETRY_TIME", "0", "TORTIE_BGP_CONNECT_RETRY_TIME"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        config_from_env(env(**{var: value}))


def test_durations() -> None:
    assert parse_duration("X", "30s") == 30 and parse_duration("X", "5m") == 300
    assert parse_duration("X", "2") == 2 and parse_duration("X", "500ms") == 0.5
    assert config_from_env(env(AUTODETECT_POLL_INTERVAL="1m")).poll_interval == 60


def test_bgp_timers() -> None:
    assert config_from_env(env()).bgp_hold_time == 0
    assert config_from_env(env(TORTIE_BGP_HOLD_TIME="3")).bgp_hold_time == 3
    assert config_from_env(env(TORTIE_BGP_CONNECT_RETRY_TIME="1")).bgp_connect_retry == 1


def _independent_hash(name: str) -> str:
    b = list(hashlib.sha256(name.encode()).digest()[:4])
    if b[0] > 223:
        b[0] = b[0] - 32
    return ".".join(str(x) for x in b)


@pytest.mark.parametrize("name", ["kube-master", "node-1", "worker-7.example", "a", "k8s-ipv6-0"])
def test_router_id_hash(name: str) -> None:
    assert hashed_router_id(name) == _independent_hash(name)
    assert int(hashed_router_id(name).split(".")[0]) <= 223


def test_router_id_known_value_and_rules() -> None:
    assert hashed_router_id("kube-master") == "25.79.212.8"
    assert router_id("", "n", "10.0.0.5/24") == "10.0.0.5"
    assert router_id("1.2.3.4", "n", None) == "1.2.3.4"
    with pytest.raises(InvalidInput, match="CALICO_ROUTER_ID=hash"):
        router_id("", "v6-only", None)
    with pytest.raises(InvalidInput, match="not a dotted-quad"):
        router_id("fd00::1", "n", None)


def test_high_first_byte_loses_32() -> None:
    # find a name whose hash starts above 223 and check the rule on it
    name = next(
        n for n in (f"n{i}" for i in range(10_000)) if hashlib.sha256(n.encode()).digest()[0] > 223
    )
    first = hashlib.sha256(name.encode()).digest()[0]
    assert hashed_router_id(name).split(".")[0] == str(first - 32)
