"""The package builds the client when a compiler is present and installs without one;
``install-cni`` installs the compiled client under every plugin name and says which
client it installed; the sanitizer build really is one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tortie.cli.main import main
from tortie.cni.cclient import BINARY, CONFIG_MARKER, built_client
from tortie.cni.install import EXECUTABLES, choose_client, configured_client
from tortie.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]
WHEEL_PATH = f"tortie/cni/cclient/{BINARY}"


def wheel(tmp: Path, **env: str) -> zipfile.ZipFile:
    """``pip wheel`` of this tree (a copy, so no build directory is left behind)."""
    src = tmp / "src-copy"
    shutil.copytree(
        REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", BINARY)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "out"), "."],
        cwd=src,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (found,) = (tmp / "out").glob("tortie-*.whl")
    return zipfile.ZipFile(found)


@pytest.mark.slow
def test_pip_builds_the_client_with_a_compiler_and_installs_without(tmp_path: Path) -> None:
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler on PATH")
    with wheel(tmp_path / "with") as whl:
        info = whl.getinfo(WHEEL_PATH)
        assert info.external_attr >> 16 & 0o111, "not executable in the wheel"
        assert CONFIG_MARKER in whl.read(WHEEL_PATH)
    with wheel(tmp_path / "without", CC="/nonexistent/cc") as whl:
        names = whl.namelist()
        assert WHEEL_PATH not in names and "tortie/cni/thin.py" in names


def test_install_cni_installs_the_compiled_client_under_every_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if built_client() is None:
        pytest.skip("this install built no compiled client (no C compiler at pip time)")
    args = ["install-cni", "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(tmp_path)]
    assert main([*args, "--socket", str(tmp_path / "s.sock")]) == 0
    out = capsys.readouterr().out
    assert "The plugins are the compiled thin client" in out
    copies = {(tmp_path / "bin" / name).read_bytes() for name in EXECUTABLES}
    assert len(copies) == 1
    data = copies.pop()
    assert data.startswith(b"\x7fELF") and os.fsencode(str(tmp_path / "s.sock")) in data
    assert main([*args, "--client", "python"]) == 0
    assert "The plugins are Python launchers" in capsys.readouterr().out
    assert (tmp_path / "bin" / "calico").read_bytes().startswith(b"#!")


def test_without_a_build_auto_means_python_and_compiled_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tortie.cni.cclient as cclient

    monkeypatch.setattr(cclient, "built_client", lambda: None)
    assert choose_client("auto") == "python"
    with pytest.raises(InvalidInput, match="not built"):
        choose_client("compiled")


def test_the_configuration_block_is_checked(builds: dict[str, Path]) -> None:
    binary = builds["plain"].read_bytes()
    with pytest.raises(InvalidInput, match="do not fit"):
        configured_client(binary, "/s" * 3000, "/py", "/root")
    with pytest.raises(InvalidInput, match="no single configuration block"):
        configured_client(binary + binary, "/s", "/py", "/root")
    with pytest.raises(InvalidInput, match="no single configuration block"):
        configured_client(b"\x7fELF", "/s", "/py", "/root")
    done = configured_client(binary, "/s.sock", "/py", "/root")
    assert len(done) == len(binary) and b"socket=/s.sock\0python=/py\0root=/root\0\0" in done


def test_the_sanitizer_build_is_instrumented(builds: dict[str, Path]) -> None:
    for marker in (b"libasan.so", b"libubsan.so", b"__asan_init"):
        assert marker in builds["sanitized"].read_bytes(), marker
        assert marker not in builds["plain"].read_bytes(), marker
