"""Review findings for the CNI plugins and the CLI: each test demonstrates one bug.

Tests that need network namespaces create their own (``tt-rv-<hex>``), run the plugin
inside them (never in the machine's own namespace) and delete them afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cni"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_fixture import POOLS_YAML, Cli
from cni_helpers import add_pool, allocated, call, netconf  # type: ignore[import-not-found, unused-ignore]

from tortie.cni import ipam_plugin
from tortie.cni.netconf import NETWORK_NAME
from tortie.cni.protocol import CniError, parse_env
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
IP = shutil.which("ip")


# ----------------------------------------------------------------------- fixtures


@pytest.fixture
def store() -> MemoryDatastore:
    s = MemoryDatastore()
    add_pool(s, "pool4", "10.65.0.0/24")
    add_pool(s, "pool6", "fd00:65::/120")
    return s


def result_addresses(out: dict[str, Any]) -> list[str]:
    if "ips" in out:
        return [ip["address"] for ip in out["ips"]]
    return [out[k]["ip"] for k in ("ip4", "ip6") if k in out]


@pytest.fixture
def netns_names() -> Iterator[list[str]]:
    """Creates namespaces on demand (append via new_netns); deletes them all."""
    if os.geteuid() != 0 or IP is None:
        pytest.skip("needs root and iproute2 (creates network namespaces)")
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run([IP, "netns", "del", name], check=False, capture_output=True)


def new_netns(names: list[str]) -> str:
    name = "tt-rv-" + secrets.token_hex(4)
    subprocess.run([str(IP), "netns", "add", name], check=True, capture_output=True)
    names.append(name)
    return name


# ------------------------------------------------------- 1. IP= with an IPv6 zone id


def test_ipam_ip_arg_with_zone_id_returns_valid_cidr(store: MemoryDatastore) -> None:
    """IP=fd00:65::5%eth0 is accepted and the result carries 'fd00:65::5%eth0/128',
    which is not a CIDR any runtime can parse."""
    code, out = call(
        store, "ADD", netconf(ipam={"assign_ipv6": "true"}), CNI_ARGS="IP=fd00:65::5%eth0"
    )
    if code == 0:
        assert out is not None
        for a in result_addresses(out):
            assert "%" not in a, f"result address {a!r} carries a zone id"
            ipaddress.ip_interface(a)
    else:
        assert out is not None and out["code"] == 4
        assert allocated(store) == {}


def test_cli_ipam_assign_ip_with_zone_id_prints_valid_cidr(cli: Cli, tmp_path: Path) -> None:
    pools = tmp_path / "pools.yaml"
    pools.write_text(POOLS_YAML)
    assert cli("apply", "-f", str(pools))[0] == 0
    rc, out, _ = cli(
        "ipam", "assign", "--handle", "h1", "--node", "n1", "--ip", "fd00:80::5%eth0", "-o", "json"
    )
    if rc == 0:
        for a in json.loads(out)["ipv6"]:
            assert "%" not in a, f"assigned address printed as {a!r}"
    else:
        assert rc == 2


# ------------------------------------------- 2. IP= with two addresses of one family


def test_ipam_ip_arg_two_ipv4_addresses_refused(store: MemoryDatastore) -> None:
    """At most one address per family per pod; the plugin's own hint says 'give one
    address per family', yet two IPv4 addresses are assigned and returned."""
    code, out = call(store, "ADD", netconf(), CNI_ARGS="IP=10.65.0.5,10.65.0.6")
    assert code == 1, f"two IPv4 addresses accepted: {out}"
    assert allocated(store) == {}


def test_ipam_ip_arg_two_ipv4_addresses_v020_leaks_unreturned_address(
    store: MemoryDatastore,
) -> None:
    """With cniVersion 0.2.0 only one ip4 fits the result: the second address stays
    allocated to the handle but is never reported to the runtime."""
    code, out = call(store, "ADD", netconf("0.2.0"), CNI_ARGS="IP=10.65.0.5,10.65.0.6")
    if code == 0:
        assert out is not None
        returned = {a.split("/")[0] for a in result_addresses(out)}
        held = {a for a, h in allocated(store).items() if h == "net1.c1"}
        assert held == returned, f"allocated {sorted(held)} but returned {sorted(returned)}"


# ------------------------------------------- 3. CNI_IFNAME length counted in characters


def test_cni_ifname_length_counted_in_bytes() -> None:
    """Linux (and libcni) limit interface names to 15 *bytes*; 10 x 'é' is 20 bytes but
    passes parse_env, so the main plugin runs IPAM first and fails later with code 7."""
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/var/run/netns/x",
        "CNI_IFNAME": "\u00e9" * 10,
    }
    with pytest.raises(CniError) as info:
        parse_env(env, "ADD")
    assert info.value.code == 4


# --------------------------------------------------- 4. main DEL needs the nodename file

_DEL_SCRIPT = """
import json, sys
sys.path.insert(0, {src!r})
from tortie.cni.main_plugin import run
conf, env = json.loads(sys.stdin.read())
code, out = run(json.dumps(conf).encode(), env)
print(json.dumps([code, out]))
"""


def test_main_del_without_nodename_file_releases_addresses(
    tmp_path: Path, netns_names: list[str]
) -> None:
    """The nodename file was there at ADD and is gone at DEL (node agent restarted or
    uninstalled): DEL fails with code 7 before releasing anything, so the pod's addresses
    stay allocated for good.  Releasing by handle does not need the node name."""
    db = str(tmp_path / "store.sqlite")
    s = SqliteDatastore(db)
    add_pool(s, "pool4", "10.65.0.0/24")
    nodefile = tmp_path / "nodename"
    nodefile.write_text("node-1\n")
    conf = {
        "cniVersion": "1.0.0",
        "name": "tnet",
        "type": "calico",
        "datastore_type": "sqlite",
        "sqlite_path": db,
        "nodename_file": str(nodefile),
        "ipam": {"type": "calico-ipam"},
    }
    # the IPAM half of an earlier ADD (same handle tnet.n1), without touching any netns
    code, out = ipam_plugin.run(
        json.dumps(conf).encode(),
        {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "n1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"},
        open_store=lambda _s: s,
    )
    assert code == 0, out
    assert set(allocated(s).values()) == {"tnet.n1"}
    nodefile.unlink()

    host = new_netns(netns_names)  # DEL runs in a throw-away "host" namespace
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": "n1",
        "CNI_NETNS": "",
        "CNI_IFNAME": "eth0",
    }
    proc = subprocess.run(
        [str(IP), "netns", "exec", host, PYTHON, "-c", _DEL_SCRIPT.format(src=str(REPO / "src"))],
        input=json.dumps([conf, env]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    code, out = json.loads(proc.stdout)
    assert code == 0, f"DEL failed: {out}"
    assert allocated(s) == {}, "DEL left the pod's addresses allocated"
    s.close()


# ----------------------------------------------- 5. ipam assign ignores --pool for IPv4


def test_cli_ipam_assign_pool_restriction_not_ignored(cli: Cli, tmp_path: Path) -> None:
    """`--pool p6` alone: the IPv4 default (1) is still auto-assigned from *any* pool
    (here p4), although --help says the given pools are the ones to use."""
    pools = tmp_path / "pools.yaml"
    pools.write_text(POOLS_YAML)
    assert cli("apply", "-f", str(pools))[0] == 0
    rc, out, _err = cli(
        "ipam", "assign", "--handle", "h", "--node", "n1", "--pool", "p6", "-o", "json"
    )
    if rc == 0:
        got = json.loads(out)
        for a in got["ipv4"] + got["ipv6"]:
            addr = ipaddress.ip_interface(a).ip
            assert addr in ipaddress.ip_network("fd00:80::/120"), (
                f"--pool p6 given, but {a} was assigned from another pool"
            )


# --------------------------------------------------------------- 6. install-cni errors


def test_cli_install_cni_unwritable_bin_dir_no_traceback(cli: Cli, tmp_path: Path) -> None:
    rc, _, err = cli("install-cni", "--bin-dir", "/proc/self", "--conf-dir", str(tmp_path / "c"))
    assert rc != 0
    assert err.startswith("tortie:") and len(err.strip().splitlines()) == 1


def test_cli_install_cni_unwritable_conf_dir_no_traceback(cli: Cli, tmp_path: Path) -> None:
    rc, _, err = cli("install-cni", "--bin-dir", str(tmp_path / "b"), "--conf-dir", "/proc/self")
    assert rc != 0
    assert err.startswith("tortie:") and len(err.strip().splitlines()) == 1


def test_cli_install_cni_refuses_network_name_plugins_reject(cli: Cli, tmp_path: Path) -> None:
    """install-cni writes any --network-name; the plugins then refuse every pod with
    'invalid characters detected in the given network name'."""
    conf_dir = tmp_path / "conf"
    rc, _, _ = cli(
        "install-cni",
        "--bin-dir",
        str(tmp_path / "bin"),
        "--conf-dir",
        str(conf_dir),
        "--network-name",
        "my net/1",
    )
    if rc == 0:
        (path,) = conf_dir.glob("*.conflist")
        name = json.loads(path.read_text())["name"]
        assert NETWORK_NAME.fullmatch(name), f"installed a conflist with network name {name!r}"
    else:
        assert rc == 2
