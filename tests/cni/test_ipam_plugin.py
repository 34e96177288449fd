"""The IPAM plugin in-process: every verb, every result shape, failure clean-up."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cni_helpers import NODE, add_pool, allocated, call, ipam_keys, netconf, snapshot

from tortie.cni.ipam_plugin import run
from tortie.cni.protocol import SUPPORTED_VERSIONS
from tortie.datastore import keys
from tortie.datastore.memory import MemoryDatastore
from tortie.model.ipam_records import decode_block

DUAL = {"assign_ipv6": "true"}
pytestmark = pytest.mark.usefixtures("route")  # every test in-process and via the service


@pytest.fixture
def store() -> MemoryDatastore:
    s = MemoryDatastore()
    add_pool(s, "pool4", "10.65.0.0/24")
    add_pool(s, "pool6", "fd00:65::/120")
    return s


def addresses(out: dict[str, Any]) -> list[str]:
    if "ips" in out:
        return [ip["address"] for ip in out["ips"]]
    return [out[k]["ip"] for k in ("ip4", "ip6") if k in out]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_dual_stack_every_version(store: MemoryDatastore, version: str) -> None:
    code, out = call(store, "ADD", netconf(version, ipam=DUAL))
    assert code == 0 and out is not None
    assert out["cniVersion"] == version
    v4, v6 = addresses(out)
    assert v4.startswith("10.65.0.") and v4.endswith("/26")  # block prefix
    assert v6.startswith("fd00:65::") and v6.endswith("/122")
    if version in ("0.1.0", "0.2.0"):
        assert "ips" not in out and set(out) == {"cniVersion", "ip4", "ip6", "dns"}
    elif version.startswith("0."):
        assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    else:
        assert all("version" not in ip for ip in out["ips"])
    owners = allocated(store)
    assert owners[v4.split("/")[0]] == "net1.c1"
    assert owners[v6.split("/")[0]] == "net1.c1"


def test_attributes(store: MemoryDatastore) -> None:
    args = "K8S_POD_NAME=nginx;K8S_POD_NAMESPACE=default;K8S_POD_INFRA_CONTAINER_ID=c1"
    code, out = call(store, "ADD", netconf(), CNI_ARGS=args)
    assert code == 0 and out
    kv = store.list(keys.block_prefix(4))[0]
    block = decode_block(kv.key, kv.value)
    [(_, attr)] = list(block.allocated())
    assert attr.handle_id == "net1.c1"
    assert attr.secondary["node"] == NODE
    assert attr.secondary["pod"] == "nginx"
    assert attr.secondary["namespace"] == "default"
    assert attr.secondary["timestamp"].endswith("+0000 UTC")
    assert store.get(keys.handle_key("net1.c1")) is not None


@pytest.mark.parametrize(
    ("ipam", "families"),
    [
        ({}, [4]),
        ({"assign_ipv4": "true"}, [4]),
        ({"assign_ipv4": "False"}, [4]),
        ({"assign_ipv6": "true"}, [4, 6]),
        ({"assign_ipv6": "TRUE"}, [4]),
        ({"assign_ipv4": "false", "assign_ipv6": "true"}, [6]),
    ],
)
def test_family_selection(
    store: MemoryDatastore, ipam: dict[str, str], families: list[int]
) -> None:
    code, out = call(store, "ADD", netconf(ipam=ipam))
    assert code == 0 and out
    assert [6 if ":" in a else 4 for a in addresses(out)] == families


def test_nothing_to_assign(store: MemoryDatastore) -> None:
    before = snapshot(store)
    code, out = call(store, "ADD", netconf(ipam={"assign_ipv4": "false"}))
    assert code == 1 and out and out["code"] == 7 and "assign_ipv4" in out["msg"]
    assert snapshot(store) == before


def test_pools_by_name_and_cidr_in_order(store: MemoryDatastore) -> None:
    add_pool(store, "a-second", "10.66.0.0/30", blockSize=30)
    add_pool(store, "z-first", "10.67.0.0/30", blockSize=30)
    conf = netconf(ipam={"ipv4_pools": ["z-first", "10.66.0.0/30"]})
    got = []
    for i in range(8):
        code, out = call(store, "ADD", conf, CNI_CONTAINERID=f"c{i}")
        assert code == 0 and out, out
        got.append(addresses(out)[0])
    assert all(a.startswith("10.67.0.") for a in got[:4])
    assert all(a.startswith("10.66.0.") for a in got[4:])
    code, out = call(store, "ADD", conf, CNI_CONTAINERID="c9")
    assert code == 1 and out
    assert out["code"] == 100
    assert out["msg"].startswith("failed to request IPv4 addresses:")
    assert "No IPs available in pools: [10.67.0.0/30 10.66.0.0/30]" in out["msg"]
    assert store.get(keys.handle_key("net1.c9")) is None


@pytest.mark.parametrize("pool", ["nope", "10.99.0.0/24", "disabled"])
def test_unknown_or_disabled_pool(store: MemoryDatastore, pool: str) -> None:
    add_pool(store, "disabled", "10.70.0.0/24", disabled=True)
    before = snapshot(store)
    code, out = call(store, "ADD", netconf(ipam={"ipv4_pools": [pool]}))
    assert code == 1 and out and out["code"] == 7
    assert out["msg"] == (
        f"failed to request IPv4 addresses: the given pool ({pool}) does not exist, "
        "or is not enabled"
    )
    assert snapshot(store) == before


def test_pool_of_wrong_family(store: MemoryDatastore) -> None:
    code, out = call(store, "ADD", netconf(ipam={"ipv4_pools": ["fd00:65::/120"]}))
    assert code == 1 and out and out["code"] == 7 and "ipv6_pools" in out["msg"]


def test_ipv6_failure_releases_ipv4() -> None:
    """No IPv6 pool: the request fails before the IPv4 address (or a block) is taken."""
    store = MemoryDatastore()
    add_pool(store, "pool4", "10.65.0.0/24")
    before = snapshot(store)
    code, out = call(store, "ADD", netconf(ipam=DUAL))
    assert snapshot(store) == before
    assert code == 1 and out
    assert out["msg"].startswith("failed to request IPv6 addresses: no configured Calico pools")
    assert allocated(store) == {}
    assert store.get(keys.handle_key("net1.c1")) is None
    # the IPv4 address was really free again: the next ADD gets an address
    code, out = call(store, "ADD", netconf(), CNI_CONTAINERID="c2")
    assert code == 0


def test_ipv6_pool_dry_releases_ipv4() -> None:
    """IPv6 runs dry after IPv4 succeeded: the IPv4 address is released again."""
    store = MemoryDatastore()
    add_pool(store, "pool4", "10.65.0.0/24")
    add_pool(store, "pool6", "fd00:65::/128", blockSize=128)
    assert call(store, "ADD", netconf(ipam=DUAL), CNI_CONTAINERID="a")[0] == 0
    code, out = call(store, "ADD", netconf(ipam=DUAL), CNI_CONTAINERID="b")
    assert code == 1 and out and out["code"] == 100
    assert "failed to request IPv6 addresses" in out["msg"]
    assert set(allocated(store).values()) == {"net1.a"}


def test_no_pool_for_family() -> None:
    store = MemoryDatastore()
    add_pool(store, "pool6", "fd00:65::/120")
    code, out = call(store, "ADD", netconf())
    assert code == 1 and out and out["code"] == 101
    assert out["msg"].startswith("failed to request IPv4 addresses: no configured Calico pools")


def test_exact_ip(store: MemoryDatastore) -> None:
    code, out = call(store, "ADD", netconf(ipam=DUAL), CNI_ARGS="IP=10.65.0.77")
    assert code == 0 and out and addresses(out) == ["10.65.0.77/32"]
    code, out = call(
        store, "ADD", netconf(), CNI_CONTAINERID="c2", CNI_ARGS="IP=fd00:65::9,10.65.0.9"
    )
    assert code == 0 and out and addresses(out) == ["10.65.0.9/32", "fd00:65::9/128"]
    assert allocated(store)["fd00:65::9"] == "net1.c2"
    # taken address: error and nothing left behind
    before = allocated(store)
    code, out = call(
        store, "ADD", netconf(), CNI_CONTAINERID="c3", CNI_ARGS="IP=10.65.0.10,fd00:65::9"
    )
    assert code == 1 and out and "failed to request IPv6 addresses" in out["msg"]
    assert "already assigned" in out["msg"]
    assert allocated(store) == before
    code, out = call(store, "ADD", netconf(), CNI_CONTAINERID="c4", CNI_ARGS="IP=192.168.1.1")
    assert code == 1 and out and "not in a configured pool" in out["msg"]
    add_pool(store, "disabled", "10.70.0.0/24", disabled=True)
    code, out = call(store, "ADD", netconf(), CNI_CONTAINERID="c4", CNI_ARGS="IP=10.70.0.1")
    assert code == 1 and out and "not in a configured pool" in out["msg"]
    assert allocated(store) == before
    code, out = call(store, "ADD", netconf(), CNI_CONTAINERID="c4", CNI_ARGS="IP=banana")
    assert code == 1 and out and out["code"] == 4 and "IP=" in out["msg"]


def test_unknown_args(store: MemoryDatastore) -> None:
    code, out = call(store, "ADD", netconf(), CNI_ARGS="FOO=1")
    assert code == 1 and out and out["code"] == 4 and "FOO" in out["msg"]
    code, out = call(store, "ADD", netconf(), CNI_ARGS="FOO=1;IgnoreUnknown=1")
    assert code == 0


def test_del_twice_and_without_netns(store: MemoryDatastore) -> None:
    code, out = call(store, "ADD", netconf(ipam=DUAL))
    assert code == 0
    code, out = call(store, "DEL", netconf(ipam=DUAL), CNI_NETNS="")
    assert (code, out) == (0, None)
    assert allocated(store) == {}
    assert store.get(keys.handle_key("net1.c1")) is None
    assert call(store, "DEL", netconf(ipam=DUAL), CNI_NETNS="")[0] == 0
    assert call(store, "DEL", netconf(ipam=DUAL))[0] == 0
    # DEL of a container never added
    assert call(store, "DEL", netconf(), CNI_CONTAINERID="never")[0] == 0


def test_del_only_releases_its_own_handle(store: MemoryDatastore) -> None:
    assert call(store, "ADD", netconf(), CNI_CONTAINERID="a")[0] == 0
    assert call(store, "ADD", netconf(), CNI_CONTAINERID="b")[0] == 0
    assert call(store, "ADD", netconf(name="other"), CNI_CONTAINERID="a")[0] == 0
    assert call(store, "DEL", netconf(), CNI_CONTAINERID="a")[0] == 0
    assert sorted(str(h) for h in allocated(store).values()) == ["net1.b", "other.a"]


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_check(store: MemoryDatastore, version: str) -> None:
    conf = netconf(version, ipam=DUAL)
    code, out = call(store, "ADD", conf)
    assert code == 0 and out
    assert call(store, "CHECK", {**conf, "prevResult": out}) == (0, None)
    # another container's CHECK with this result fails
    code, err = call(store, "CHECK", {**conf, "prevResult": out}, CNI_CONTAINERID="x")
    assert code == 1 and err and err["code"] == 103 and "net1.x" in err["msg"]
    code, err = call(store, "CHECK", conf)
    assert code == 1 and err and err["code"] == 7 and "prevResult" in err["msg"]
    assert call(store, "DEL", conf)[0] == 0
    code, err = call(store, "CHECK", {**conf, "prevResult": out})
    assert code == 1 and err and err["code"] == 103 and "not allocated" in err["msg"]


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1"])
def test_check_needs_040(store: MemoryDatastore, version: str) -> None:
    code, out = call(store, "CHECK", netconf(version))
    assert code == 1 and out and out["code"] == 1 and out["cniVersion"] == version


def test_version_command() -> None:
    code, out = run(b"", {"CNI_COMMAND": "VERSION"})
    assert code == 0
    assert json.loads(out)["supportedVersions"][-1] == "1.1.0"
    code, out = run(b"garbage", {"CNI_COMMAND": "VERSION"})
    assert code == 0


def test_gc(store: MemoryDatastore) -> None:
    conf = netconf("1.1.0", ipam=DUAL)
    for cid in ("keep", "stale1", "stale2"):
        assert call(store, "ADD", conf, CNI_CONTAINERID=cid)[0] == 0
    # same container ids in another network and on another node: GC must not touch them
    assert call(store, "ADD", netconf(name="net2"), CNI_CONTAINERID="stale1")[0] == 0
    assert call(store, "ADD", netconf(name="net1.x"), CNI_CONTAINERID="y")[0] == 0
    assert call(store, "ADD", {**conf, "nodename": "node-2"}, CNI_CONTAINERID="remote")[0] == 0
    gc = {
        **conf,
        "ipam": {**DUAL, "leak_grace_period": "0s"},
        "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}],
    }
    assert call(store, "GC", gc, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="") == (0, None)
    handles = sorted(h for h in set(allocated(store).values()) if h)
    assert handles == ["net1.keep", "net1.remote", "net1.x.y", "net2.stale1"]
    assert store.get(keys.handle_key("net1.stale1")) is None
    # GC without the list is an error, not "release everything"
    code, out = call(store, "GC", conf)
    assert code == 1 and out and out["code"] == 7
    assert "net1.keep" in allocated(store).values()
    # GC needs cniVersion 1.1.0
    code, out = call(store, "GC", {**gc, "cniVersion": "1.0.0"})
    assert code == 1 and out and out["code"] == 1


def test_gc_collects_dotted_container_ids_of_its_own_network(store: MemoryDatastore) -> None:
    """ADD records the network, so GC can tell net1 + "a.b" from network "net1.a" + "b"."""
    conf = netconf("1.1.0", ipam=DUAL)
    assert call(store, "ADD", conf, CNI_CONTAINERID="pod.1")[0] == 0
    assert call(store, "ADD", netconf(name="net1.pod"), CNI_CONTAINERID="2")[0] == 0
    gc = {**conf, "ipam": {**DUAL, "leak_grace_period": 0}, "cni.dev/valid-attachments": []}
    assert call(store, "GC", gc, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="") == (0, None)
    assert sorted(h for h in set(allocated(store).values()) if h) == ["net1.pod.2"]


def test_status(store: MemoryDatastore) -> None:
    conf = netconf("1.1.0", ipam=DUAL)
    assert call(store, "STATUS", conf, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="") == (0, None)
    empty = MemoryDatastore()
    code, out = call(empty, "STATUS", conf)
    assert code == 1 and out and out["code"] == 50
    only4 = MemoryDatastore()
    add_pool(only4, "pool4", "10.65.0.0/24")
    assert call(only4, "STATUS", netconf("1.1.0"))[0] == 0
    code, out = call(only4, "STATUS", conf)
    assert code == 1 and out and out["code"] == 50 and "IPv6" in out["msg"]
    add_pool(only4, "dis6", "fd00:1::/120", disabled=True)
    code, out = call(only4, "STATUS", conf)
    assert code == 1 and out and out["code"] == 50
    # a pool that is full
    tiny = MemoryDatastore()
    add_pool(tiny, "tiny", "10.1.0.0/31", blockSize=31)
    assert call(tiny, "STATUS", netconf("1.1.0"))[0] == 0
    for cid in ("a", "b"):
        assert call(tiny, "ADD", netconf("1.1.0"), CNI_CONTAINERID=cid)[0] == 0
    code, out = call(tiny, "STATUS", netconf("1.1.0"))
    assert code == 1 and out and out["code"] == 50 and "no free IPv4" in out["msg"]
    code, out = call(tiny, "STATUS", netconf("1.1.0", ipam={"ipv4_pools": ["gone"]}))
    assert code == 1 and out and out["code"] == 50


def test_protocol_errors(store: MemoryDatastore) -> None:
    before = snapshot(store)
    code, out = call(store, "ADD", b"{not json")
    assert code == 1 and out and out["code"] == 6 and out["cniVersion"] == "1.1.0"
    code, out = call(store, "ADD", netconf("0.9.9"))
    assert code == 1 and out and out["code"] == 1 and "0.9.9" in out["msg"]
    code, out = call(store, "ADD", netconf(), CNI_NETNS="")
    assert code == 1 and out and out["code"] == 4 and "CNI_NETNS" in out["msg"]
    assert out["cniVersion"] == "1.0.0"
    code, out = call(store, "ADD", netconf(), CNI_IFNAME="")
    assert code == 1 and out and out["code"] == 4 and "CNI_IFNAME" in out["msg"]
    code, out = call(store, "ADD", netconf(), CNI_CONTAINERID="")
    assert code == 1 and out and out["code"] == 4 and "CNI_CONTAINERID" in out["msg"]
    code, out = call(store, "BOGUS", netconf())
    assert code == 1 and out and out["code"] == 4 and "CNI_COMMAND" in out["msg"]
    code, text = run(b"{}", {})
    assert code == 1 and "CNI_COMMAND" in json.loads(text)["msg"]
    code, out = call(store, "ADD", netconf(name="bad name"))
    assert code == 1 and out and out["code"] == 7
    assert snapshot(store) == before


def test_unexpected_exception_is_one_line_json(store: MemoryDatastore) -> None:
    class Broken(MemoryDatastore):
        def get(self, key: str) -> Any:
            raise RuntimeError("boom\nsecond line")

    code, out = call(Broken(), "ADD", netconf())
    assert code == 1 and out and out["code"] == 999
    assert out["msg"] == "internal error: RuntimeError: boom second line"


def test_unusable_store_is_not_try_again(tmp_path: Any) -> None:
    """A directory where the store should be is permanent (issue 10 defect 3): code 5,
    naming the cause, not 11 (try again later)."""
    conf = netconf(sqlite_path=str(tmp_path / "dir-not-file"))
    (tmp_path / "dir-not-file").mkdir()
    code, out = run(
        json.dumps(conf).encode(),
        {**dict(CNI_COMMAND="ADD", CNI_CONTAINERID="a", CNI_NETNS="/x", CNI_IFNAME="eth0")},
    )
    assert code == 1 and json.loads(out)["code"] == 5
    assert "it is a directory" in json.loads(out)["msg"]


def test_logging(store: MemoryDatastore, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    log = tmp_path / "logs" / "cni.log"
    conf = netconf(log_level="debug", log_file_path=str(log))
    code, out = run(
        json.dumps(conf).encode(),
        {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"},
        open_store=lambda _s: store,
    )
    assert code == 0
    text = log.read_text()
    assert "[DEBUG]" in text and "assigned 10.65.0." in text
    err = io.StringIO()
    conf = netconf(log_level="info")
    code, out = run(
        json.dumps(conf).encode(),
        {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "a", "CNI_IFNAME": "eth0"},
        open_store=lambda _s: store,
        stderr=err,
    )
    assert code == 0 and out == "" and "[INFO]" in err.getvalue()
    err = io.StringIO()
    code, out = run(
        json.dumps(netconf()).encode(),
        {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "a", "CNI_IFNAME": "eth0"},
        open_store=lambda _s: store,
        stderr=err,
    )
    assert err.getvalue() == ""  # default: silent


def test_store_keys_after_add_del_cycle(store: MemoryDatastore) -> None:
    for i in range(5):
        assert call(store, "ADD", netconf(ipam=DUAL), CNI_CONTAINERID=f"c{i}")[0] == 0
    for i in range(5):
        assert call(store, "DEL", netconf(ipam=DUAL), CNI_CONTAINERID=f"c{i}")[0] == 0
    assert not [k for k in ipam_keys(store) if "/handle/" in k]
    assert allocated(store) == {}
