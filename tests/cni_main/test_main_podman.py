"""podman (CNI backend) as a real runtime driving our ``calico`` plugin: two busybox
containers on a dual-stack network ping each other over IPv4 and IPv6.

Everything podman keeps (storage, run state, tmp) lives under the test's tmp dir; it runs
inside a test-created host namespace through ``nsenter --net`` (``ip netns exec`` remounts
/sys and breaks the runtime).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from main_helpers import NODE, REF_CNI, Env

from netns import NetnsPool

BUSYBOX = "/bin/busybox"
NETWORK = "tortie-dual"


def require_podman() -> None:
    missing = [p for p in ("podman", "runc", "nsenter") if shutil.which(p) is None]
    if missing:
        pytest.skip(f"podman test needs {', '.join(missing)} (apt-get install podman runc)")
    if (
        not os.path.exists(BUSYBOX)
        or b"statically linked"
        not in subprocess.run(["file", "-L", BUSYBOX], capture_output=True, check=False).stdout
    ):
        pytest.skip(f"podman test needs a static {BUSYBOX} (apt-get install busybox-static)")


class Podman:
    def __init__(self, world: Env, base: Path) -> None:
        assert world.host is not None
        self.base = base
        self.host = world.host
        conf_dir = base / "net.d"
        conf_dir.mkdir(parents=True)
        containers_conf = base / "containers.conf"
        containers_conf.write_text(
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{world.bin}", "{REF_CNI}"]\n'
            f'network_config_dir = "{conf_dir}"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
        )
        plugin = {k: v for k, v in world.conf("dual").items() if k not in ("name", "cniVersion")}
        plugin["log_file_path"] = str(base / "cni.log")
        conflist = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [plugin]}
        (conf_dir / f"{NETWORK}.conflist").write_text(json.dumps(conflist))
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(containers_conf),
            "TORTIE_CNI_SOCKET": world.socket,  # podman's plugins inherit its environment
        }
        self.argv = [
            "nsenter",
            f"--net={self.host.path}",
            "podman",
            "--root",
            str(base / "root"),
            "--runroot",
            str(base / "runroot"),
            "--tmpdir",
            str(base / "tmp"),
            "--storage-driver",
            "vfs",
            "--runtime",
            "runc",
        ]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.argv, *args], capture_output=True, text=True, env=self.env, timeout=120
        )
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def import_busybox(self) -> None:
        rootfs = self.base / "rootfs"
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        for link in ("sh", "ip", "ping", "sleep"):
            (rootfs / "bin" / link).symlink_to("busybox")
        tar = self.base / "bb.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        self("import", str(tar), "localhost/bb:latest")


RUN_OPTS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", NETWORK)


@pytest.mark.root
@pytest.mark.slow
def test_podman_dual_stack_ping(world: Env, namespaces: NetnsPool) -> None:
    require_podman()
    base = Path(tempfile.mkdtemp(prefix="ttpm-", dir="/tmp"))  # podman: runroot <= 50 chars
    podman = Podman(world, base / "p")
    try:
        podman.import_busybox()
        podman("run", "-d", "--name", "sleeper", *RUN_OPTS, "localhost/bb:latest", "sleep", "600")
        (wep,) = world.weps()
        assert wep["spec"]["node"] == NODE and wep["spec"]["orchestrator"] == "cni"
        v4, v6 = (a.split("/")[0] for a in wep["spec"]["ipNetworks"])
        script = f"ip addr; ping -c1 -W3 {v4} && ping -c1 -W3 {v6}"
        proc = podman("run", "--rm", *RUN_OPTS, "localhost/bb:latest", "sh", "-c", script)
        out = proc.stdout
        assert "/32 scope global eth0" in out and "/128 scope global" in out, out
        assert out.count("1 packets received") == 2, out
        assert len(world.weps()) == 1  # the pinger's endpoint is gone again
        podman("rm", "-f", "-t", "0", "sleeper")
        assert world.weps() == []
        assert world.allocations() == {}
        if world.service is not None:  # every call went through the node service
            log = world.stop_service()
            served = int(log.rsplit("served ", 1)[1].split()[0])
            assert served >= 4, log  # ADD + DEL of two containers at least
            assert "in-process" not in log
    finally:
        podman("rm", "-a", "-f", "-t", "0", check=False)
        podman("rmi", "-a", "-f", check=False)
        shutil.rmtree(base, ignore_errors=True)
    assert not [n for n in world.host.link_names() if n.startswith("cali")]  # type: ignore[union-attr]
