"""Errors that stop the main plugin before it touches any network (no root needed):
CNI error JSON on stdout, the right code, no traceback, nothing allocated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from main_helpers import Env


def test_version(offline: Env) -> None:
    code, out, _err = offline.invoke("calico", {}, {"CNI_COMMAND": "VERSION"})
    assert code == 0 and out is not None
    assert "1.1.0" in out["supportedVersions"] and "0.2.0" in out["supportedVersions"]
    code, out, _ = offline.invoke("tortie-cni", {}, {"CNI_COMMAND": "VERSION"})
    assert code == 0


def test_interface_name_too_long(offline: Env) -> None:
    env = offline.env("ADD", "c1", "/run/netns/none", ifname="eth0-is-too-long-x")
    code, out, err = offline.invoke("calico", offline.conf(), env)
    assert code == 1 and out is not None and out["code"] == 4
    assert "longer than 15" in out["msg"] and "Traceback" not in err
    assert offline.allocations() == {}


def test_missing_netns(offline: Env) -> None:
    env = offline.env("ADD", "c1", "/run/netns/tt-does-not-exist")
    code, out, _err = offline.invoke("calico", offline.conf(), env)
    assert code == 1 and out is not None and out["code"] == 4
    assert "does not exist" in out["msg"]
    assert offline.allocations() == {} and offline.weps() == []


def test_bad_input_is_cni_error_json(offline: Env) -> None:
    env = offline.env("ADD", "c1", "/run/netns/none")
    proc = subprocess.run(
        [f"{offline.bin}/calico"], input=b"{not json", env=env, capture_output=True, check=False
    )
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["code"] == 6 and b"Traceback" not in proc.stderr
    no_ipam = {k: v for k, v in offline.conf().items() if k != "ipam"}
    code, answer, _ = offline.invoke("calico", no_ipam, env)
    assert code == 1 and answer is not None and answer["code"] == 7 and "ipam" in answer["msg"]
    code, answer, _ = offline.invoke("calico", offline.conf(mtu="big"), env)
    assert code == 1 and answer is not None and answer["code"] == 7 and "mtu" in answer["msg"]
    code, answer, _ = offline.invoke("calico", offline.conf(cniVersion="9.9.9"), env)
    assert code == 1 and answer is not None and answer["code"] == 1
    env_bad = {k: v for k, v in env.items() if k != "CNI_CONTAINERID"}
    code, answer, _ = offline.invoke("calico", offline.conf(), env_bad)
    assert code == 1 and answer is not None and answer["code"] == 4
    conf = offline.conf(ipam={"type": "no-such-ipam"})
    env2 = offline.env("ADD", "c1", "/proc/self/ns/net")
    env2["CNI_COMMAND"] = "STATUS"
    code, answer, _ = offline.invoke("calico", {**conf, "cniVersion": "1.1.0"}, env2)
    assert code == 1 and answer is not None and "no-such-ipam" in answer["msg"]


def test_status_in_process(offline: Env) -> None:
    env = offline.env("STATUS", "", "")
    code, out, _ = offline.invoke("calico", offline.conf(cniVersion="1.1.0"), env)
    assert (code, out) == (0, None)


def test_gc_removes_only_stale_endpoints(offline: Env) -> None:
    """GC with no pods: nothing to do, and a missing attachment list is refused."""
    env = offline.env("GC", "", "")
    conf = offline.conf(cniVersion="1.1.0")
    code, out, _ = offline.invoke("calico", conf, env)
    assert code == 1 and out is not None and out["code"] == 7
    conf["cni.dev/valid-attachments"] = []
    assert offline.invoke("calico", conf, env)[:2] == (0, None)


def test_import_is_lean() -> None:
    code = (
        "import sys; import tortie.cni.plugin_main, tortie.cni.main_plugin;"
        "print([m for m in ('yaml','pyroute2','argparse') if m in sys.modules])"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {src!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "[]"


def test_netns_that_is_not_a_network_namespace(offline: Env, tmp_path: Path) -> None:
    """Issue 10 defect 15: the path is checked before IPAM and named for what it is."""
    plain = tmp_path / "not-a-netns"
    plain.write_text("")
    cases = {
        str(plain): "is a regular file",
        str(tmp_path): "is a directory",
        "/proc/self/ns/mnt": "is a mount namespace",
    }
    for path, what in cases.items():
        env = offline.env("ADD", "c1", path)
        code, out, err = offline.invoke("calico", offline.conf(), env)
        assert code == 1 and out is not None and out["code"] == 4, (path, out)
        assert what in out["msg"] and "not a network namespace" in out["msg"], out
        assert path in out["msg"] and "Traceback" not in err
        assert offline.allocations() == {} and offline.weps() == []


def test_container_id_that_cannot_name_an_endpoint_is_refused_before_anything(
    offline: Env,
) -> None:
    env = offline.env("ADD", "bad_id_1", "/run/netns/none")
    code, out, err = offline.invoke("calico", offline.conf(), env)
    assert code == 1 and out is not None and out["code"] == 4, out
    assert "'bad_id_1'" in out["msg"] and "DNS-1123" in out["msg"] and "Traceback" not in err
    assert offline.allocations() == {}
