"""``tortie install-cni``: executables and a conflist per mode, usable by a runtime."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tortie.cli.main import main

MODES = {"ipv4": ("true", "false"), "ipv6": ("false", "true"), "dual": ("true", "true")}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_install_writes_plugins_and_a_conflist_for_the_mode(
    tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    code = main(
        [
            "install-cni",
            "--bin-dir",
            str(bin_dir),
            "--conf-dir",
            str(conf_dir),
            "--mode",
            mode,
            "--sqlite-path",
            str(tmp_path / "t.db"),
            "--nodename",
            "node-1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for name in ("tortie-ipam", "calico-ipam", "tortie-cni", "calico"):
        exe = bin_dir / name
        assert os.access(exe, os.X_OK), name
        head = exe.read_bytes()
        if not head.startswith(b"\x7fELF"):  # the compiled client when pip built it
            shebang = head.decode().splitlines()[0]
            assert "shims" not in shebang and shebang.endswith(" -IS")
    conf = json.loads((conf_dir / f"10-tortie-{mode}.conflist").read_text())
    assert f"10-tortie-{mode}.conflist" in out
    plugin = conf["plugins"][0]
    assert plugin["type"] == "calico" and plugin["nodename"] == "node-1"
    assert plugin["sqlite_path"] == str(tmp_path / "t.db")
    assert (plugin["ipam"]["assign_ipv4"], plugin["ipam"]["assign_ipv6"]) == MODES[mode]
    # The installed plugin answers a runtime's VERSION call.
    res = subprocess.run(
        [str(bin_dir / "calico-ipam")],
        input=json.dumps({"cniVersion": "1.0.0", "name": conf["name"]}).encode(),
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=True,
    )
    assert "1.1.0" in json.loads(res.stdout)["supportedVersions"]


def test_install_into_an_unwritable_place_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["install-cni", "--bin-dir", str(blocker / "bin"), "--conf-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(blocker / "bin") in err and "Traceback" not in err


def test_install_rejects_an_unknown_mode(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        ["install-cni", "--bin-dir", str(tmp_path), "--conf-dir", str(tmp_path), "--mode", "ipx"]
    )
    assert code == 2
    assert "invalid choice: 'ipx'" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import tortie.cli.demo as demo

    def broken(keep: bool = False) -> int:
        raise KeyError("boom")

    monkeypatch.setattr(demo, "run_demo", broken)
    monkeypatch.delenv("TORTIE_DEBUG", raising=False)
    assert main(["demo", "--ipam-only"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: KeyError" in err and "TORTIE_DEBUG" in err
    monkeypatch.setenv("TORTIE_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["demo", "--ipam-only"])
