"""``tortie manifest rewrite`` / ``rewrite-kube-dns``: the seed's edits on the stock Calico
manifests, older shapes and an operator Installation — checked by parsing the result and
by a byte diff that touches only the intended lines; idempotent; ``--check``; bad input."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from rollout_cli import run as cli

from tortie.rollout.manifest import parse_cni, rewrite, wanted

SHARED = next(
    (
        base / "shared" / "reference" / "calico-manifests"
        for base in (Path(__file__).resolve().parents[2].parent, Path("/work"))
        if (base / "shared" / "reference" / "calico-manifests").is_dir()
    ),
    Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "calico-manifests",
)  # beside the repository (CI lays it there), or the workplace's copy
FIXTURES = Path(__file__).resolve().parent / "fixtures"
POOL6 = "fd00:10:244::/48"


def stock(name: str) -> str:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"the shared Calico manifests are not at {SHARED}")
    return path.read_text()


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def ipam_and_env(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    cm = next(
        d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "calico-config"
    )
    conf = parse_cni(cm["data"]["cni_network_config"])
    plugins = conf.get("plugins", [conf])
    assert isinstance(plugins, list)
    ipam = next(p["ipam"] for p in plugins if "ipam" in p)
    ds = next(d for d in docs if d.get("kind") == "DaemonSet")
    container = next(
        c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "calico-node"
    )
    return ipam, {e["name"]: e.get("value") for e in container["env"]}


EXPECTED = {
    "ipv4": (
        {"assign_ipv4": "true", "assign_ipv6": "false"},
        {"IP": "autodetect", "FELIX_IPV6SUPPORT": "false"},
    ),
    "dual": (
        {"assign_ipv4": "true", "assign_ipv6": "true"},
        {
            "IP": "autodetect",
            "IP6": "autodetect",
            "FELIX_IPV6SUPPORT": "true",
            "CALICO_IPV6POOL_CIDR": POOL6,
        },
    ),
    "ipv6": (
        {"assign_ipv4": "false", "assign_ipv6": "true"},
        {
            "IP": "none",
            "IP6": "autodetect",
            "FELIX_IPV6SUPPORT": "true",
            "CALICO_IPV6POOL_CIDR": POOL6,
            "CALICO_ROUTER_ID": "hash",
        },
    ),
}
ALLOWED = (
    "assign_ipv4",
    '"ipam": {',
    "assign_ipv6",
    "name: IP",
    "name: FELIX_IPV6SUPPORT",
    "name: CALICO_IPV6POOL_CIDR",
    "name: CALICO_ROUTER_ID",
    "value:",
)


@pytest.mark.parametrize("name", ["calico.yaml", "calico-etcd.yaml", "calico-v3.1-old.yaml"])
@pytest.mark.parametrize("mode", ["ipv4", "dual", "ipv6"])
def test_rewrite_each_manifest_and_mode(name: str, mode: str) -> None:
    text = (FIXTURES / name).read_text() if "old" in name else stock(name)
    want = wanted(mode, ipv6_pool="" if mode == "ipv4" else POOL6)
    result = rewrite(text, name, want)
    ipam, env = ipam_and_env(result.text)
    exp_ipam, exp_env = EXPECTED[mode]
    assert {k: ipam.get(k) for k in exp_ipam} == exp_ipam
    assert {k: env.get(k) for k in exp_env} == exp_env
    lines = changed_lines(text, result.text)
    assert lines and all(any(a in line for a in ALLOWED) for line in lines), lines
    assert len(lines) <= 14
    # everything else is byte for byte the same: the other documents parse identically
    before = [
        d for d in yaml.safe_load_all(text) if d and d.get("kind") not in ("ConfigMap", "DaemonSet")
    ]
    after = [
        d
        for d in yaml.safe_load_all(result.text)
        if d and d.get("kind") not in ("ConfigMap", "DaemonSet")
    ]
    assert before == after
    again = rewrite(result.text, name, want)
    assert again.text == result.text and again.changes == []


def test_check_and_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "calico.yaml"
    f.write_text(stock("calico.yaml"))
    original = f.read_bytes()

    def dual(*extra: str, stdin: str = "") -> tuple[int, str, str]:
        return cli(
            "manifest",
            "rewrite",
            "--mode",
            "dual",
            "--ipv6-pool",
            POOL6,
            *extra,
            stdin=stdin,
            capsys=capsys,
        )

    rc, out, _ = dual("--check", str(f))
    assert rc == 1 and "needed: calico-node env IP6: add autodetect" in out
    assert f.read_bytes() == original  # --check changes nothing
    rc, out, _ = dual("--in-place", str(f))
    assert rc == 0 and "configured for dual (4 changes)" in out
    rc, out, _ = dual("--check", str(f))
    assert rc == 0 and out.strip().endswith("configured for dual")
    rc, out, err = dual("-", stdin=f.read_text())
    assert rc == 0 and out == f.read_text() and err == ""


def test_ipv6_only_follows_the_seed_text_not_its_snippet() -> None:
    result = rewrite(stock("calico.yaml"), "calico.yaml", wanted("ipv6", ipv6_pool=POOL6))
    ipam, env = ipam_and_env(result.text)
    assert ipam["assign_ipv4"] == "false" and env["CALICO_ROUTER_ID"] == "hash"


@pytest.mark.parametrize("mode", ["ipv4", "dual", "ipv6"])
def test_operator_installation(mode: str) -> None:
    text = (FIXTURES / "installation.yaml").read_text()
    result = rewrite(
        text, "installation.yaml", wanted(mode, ipv6_pool="" if mode == "ipv4" else POOL6)
    )
    inst = next(yaml.safe_load_all(result.text))
    net = inst["spec"]["calicoNetwork"]
    cidrs = [p["cidr"] for p in net["ipPools"]]
    want4, want6 = mode != "ipv6", mode != "ipv4"
    assert ("192.168.0.0/16" in cidrs) == want4 and (POOL6 in cidrs) == want6
    assert ("nodeAddressAutodetectionV4" in net) == want4
    assert ("nodeAddressAutodetectionV6" in net) == want6
    assert "# Configures Calico networking." in result.text  # comments kept
    assert (
        rewrite(result.text, "i", wanted(mode, ipv6_pool="" if mode == "ipv4" else POOL6)).text
        == result.text
    )
    if mode == "ipv4":
        assert result.text == text  # already IPv4-only: not a byte changed


def test_kube_dns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tortie.rollout.kubedns import rewrite_kube_dns

    text = (FIXTURES / "kube-dns.yaml").read_text()
    result = rewrite_kube_dns(text, "kube-dns.yaml")
    dep = next(d for d in yaml.safe_load_all(result.text) if d["kind"] == "Deployment")
    c = {x["name"]: x for x in dep["spec"]["template"]["spec"]["containers"]}
    assert all(x["image"].endswith(":1.14.8") for x in c.values())
    assert "--dns-bind-address=[::]" in c["kubedns"]["args"]
    assert "--no-negcache" in c["dnsmasq"]["args"]
    assert all(a.endswith(",SRV") for a in c["sidecar"]["args"] if a.startswith("--probe="))
    assert "# probe both record paths" in result.text
    assert len(changed_lines(text, result.text)) == 12
    assert rewrite_kube_dns(result.text, "k").changes == []
    f = tmp_path / "dns.yaml"
    f.write_text(result.text)
    rc, out, _ = cli("manifest", "rewrite-kube-dns", "--ipv6", "--check", str(f), capsys=capsys)
    assert rc == 0 and "ready for IPv6" in out


@pytest.mark.parametrize(
    ("argv", "stdin", "fragment"),
    [
        (["--mode", "dual", "-"], "a: [\n", "not valid YAML"),
        (
            ["--mode", "dual", "-"],
            "kind: ConfigMap\nmetadata: {name: x}\n",
            "no ConfigMap named calico-config",
        ),
        (
            ["--mode", "dual", "-"],
            "kind: ConfigMap\nmetadata: {name: calico-config}\n"
            "data: {cni_network_config: '{not json'}\n",
            "is not JSON",
        ),
        (
            ["--mode", "dual", "-"],
            "kind: ConfigMap\nmetadata: {name: calico-config}\ndata:\n"
            '  cni_network_config: \'{"ipam": {"type": "calico-ipam"}}\'\n',
            "no calico-node DaemonSet",
        ),
        (["--mode", "ipv4", "--ipv6-pool", POOL6, "-"], "", "drop --ipv6-pool"),
        (["--mode", "dual", "--ipv6-pool", "10.0.0.0/8", "-"], "", "is an IPv4 CIDR"),
        (["--mode", "dual", "--in-place", "-"], "", "--in-place needs a FILE"),
    ],
)
def test_bad_input(
    argv: list[str], stdin: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = cli("manifest", "rewrite", *argv, stdin=stdin, capsys=capsys)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err and "Traceback" not in err


def test_in_place_leaves_a_bad_file_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("kind: ConfigMap\nmetadata: {name: calico-config}\n")
    rc, _, _ = cli("manifest", "rewrite", "--mode", "dual", "--in-place", str(f), capsys=capsys)
    assert rc == 2 and f.read_text() == "kind: ConfigMap\nmetadata: {name: calico-config}\n"
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == '["m.yaml"]'
