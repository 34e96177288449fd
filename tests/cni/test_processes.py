"""The plugin as real processes: lean imports, launchers, latency, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cni_helpers import add_pool, allocated, netconf

from tortie.cni.install import EXECUTABLES, write_executables
from tortie.datastore.sqlite import SqliteDatastore

VENV_PLUGIN = [sys.executable, "-m", "tortie.cni.ipam_main"]
HEAVY = ("yaml", "pyroute2", "argparse", "logging", "asyncio", "subprocess", "requests")


def test_plugin_imports_stay_light() -> None:
    code = (
        "import sys, json\n"
        "import tortie.cni.ipam_main, tortie.cni.ipam_plugin, tortie.datastore.sqlite\n"
        "import tortie.cni.install\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = set(json.loads(out.stdout))
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    assert heavy == [], f"heavy modules on the plugin path: {heavy}"
    assert "tortie.cni.ipam_plugin" in mods


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "tortie.db")
    store = SqliteDatastore(path)
    add_pool(store, "pool4", "10.80.0.0/16")
    add_pool(store, "pool6", "fd00:80::/112")
    store.close()
    return path


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    write_executables(str(d))
    return d


def _env(command: str, container: str, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": "/var/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v}


def _conf(db: str, **ipam: str) -> bytes:
    return json.dumps(netconf(ipam=ipam, sqlite_path=db)).encode()


def test_write_executables(bin_dir: Path) -> None:
    names = sorted(p.name for p in bin_dir.iterdir())
    assert names == sorted(EXECUTABLES)
    for name in names:
        path = bin_dir / name
        assert os.access(path, os.X_OK)
        first = path.read_text().splitlines()[0]
        interp = first[2:].split()[0]
        assert first.endswith(" -IS")  # = -I -S; a #! line allows one argument
        assert os.path.realpath(interp) == interp and "shims" not in interp
    text = (bin_dir / "calico").read_text()
    assert "from tortie.cni.thin import main" in text  # the thin plugin first
    assert "'tortie.cni.plugin_main'" in text  # its in-process fallback
    # rewriting is fine (atomic replace)
    assert write_executables(str(bin_dir)) == [str(bin_dir / n) for n in EXECUTABLES]


def test_launcher_runs_without_site_packages(bin_dir: Path, db: str) -> None:
    env = _env("VERSION", "")
    out = subprocess.run([bin_dir / "calico-ipam"], input=b"", env=env, capture_output=True)
    assert out.returncode == 0 and json.loads(out.stdout)["cniVersion"] == "1.1.0"
    out = subprocess.run(
        [bin_dir / "tortie-ipam"],
        input=_conf(db, assign_ipv6="true"),
        env=_env("ADD", "x"),
        capture_output=True,
    )
    assert out.returncode == 0, out
    assert len(json.loads(out.stdout)["ips"]) == 2
    assert out.stderr == b""


def test_process_errors_are_json_on_stdout(db: str) -> None:
    for stdin, env, code in (
        (b"{", _env("ADD", "a"), 6),
        (_conf(db), _env("ADD", "a", CNI_NETNS=""), 4),
        (_conf(db), {"PATH": "/usr/bin"}, 4),
        (json.dumps({"cniVersion": "9.9.9", "name": "n"}).encode(), _env("ADD", "a"), 1),
    ):
        out = subprocess.run(VENV_PLUGIN, input=stdin, env=env, capture_output=True)
        assert out.returncode == 1
        assert json.loads(out.stdout)["code"] == code
        assert b"Traceback" not in out.stderr and out.stderr == b""


def test_del_without_netns_process(db: str) -> None:
    assert (
        subprocess.run(
            VENV_PLUGIN, input=_conf(db), env=_env("ADD", "a"), capture_output=True
        ).returncode
        == 0
    )
    for _ in range(2):
        out = subprocess.run(
            VENV_PLUGIN, input=_conf(db), env=_env("DEL", "a", CNI_NETNS=""), capture_output=True
        )
        assert (out.returncode, out.stdout) == (0, b"")
    store = SqliteDatastore(db)
    assert allocated(store) == {}
    store.close()


@pytest.mark.slow
def test_100_concurrent_adds(bin_dir: Path, db: str) -> None:
    plugin = str(bin_dir / "calico-ipam")
    conf = _conf(db, assign_ipv6="true")
    procs = []
    for i in range(100):
        p = subprocess.Popen(
            [plugin],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env("ADD", f"conc{i}"),
        )
        procs.append(p)
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(conf, timeout=300)
        assert p.returncode == 0, (stdout, stderr)
        outs.append(json.loads(stdout))
    v4 = [o["ips"][0]["address"] for o in outs]
    v6 = [o["ips"][1]["address"] for o in outs]
    assert len(set(v4)) == 100 and len(set(v6)) == 100
    store = SqliteDatastore(db)
    owners = allocated(store)
    store.close()
    assert len(owners) == 200
    assert sorted({str(h) for h in owners.values()}) == sorted(f"net1.conc{i}" for i in range(100))
