"""The installed ``tortie`` executable as a user runs it, plus demo and --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .clihelp import STOCK_POOL, Cli

TORTIE = Path(sys.executable).with_name("tortie")


def _run(
    args: list[str], tmp_path: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "DATASTORE_TYPE": "sqlite",
        "SQLITE_PATH": str(tmp_path / "tortie.db"),
        **env,
    }
    return subprocess.run(
        [str(TORTIE), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


@pytest.fixture(autouse=True)
def _needs_executable() -> None:
    if not TORTIE.exists():
        pytest.skip(f"{TORTIE} is not installed (pip install -e .)")


def _one_line_error(proc: subprocess.CompletedProcess[str], rc: int, *fragments: str) -> None:
    assert proc.returncode == rc, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr


def test_process_round_trip(tmp_path: Path) -> None:
    proc = _run(["apply", "-f", "-"], tmp_path, stdin=STOCK_POOL)
    assert proc.returncode == 0, proc.stderr
    assert "IPPool(default-ipv4-ippool)" in proc.stdout and proc.stderr == ""
    proc = _run(["ipam", "assign", "--handle=h", "--node=n1", "-o", "json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _run(["ipam", "show", "--show-blocks"], tmp_path)
    assert proc.returncode == 0 and "| Block" in proc.stdout
    proc = _run(["ipam", "check"], tmp_path)
    assert proc.stdout.splitlines()[-1] == "Check complete; found 0 problems."


def test_process_errors(tmp_path: Path) -> None:
    _run(["apply", "-f", "-"], tmp_path, stdin=STOCK_POOL)
    _one_line_error(_run(["create", "-f", "-"], tmp_path, stdin=STOCK_POOL), 1, "already exists")
    _one_line_error(_run(["apply", "-f", "-"], tmp_path, stdin="kind: [\n"), 2, "invalid YAML")
    _one_line_error(
        _run(["get", "ippools"], tmp_path, SQLITE_PATH="/proc/nope/x.db"),
        1,
        "/proc/nope/x.db",
        "SQLITE_PATH",
    )
    _one_line_error(_run(["ipam", "frobnicate"], tmp_path), 2, "invalid choice")
    _one_line_error(_run(["ipam", "show", "--ip=nope"], tmp_path), 2, "--ip 'nope'")
    _one_line_error(
        _run(["ipam", "split", "3", "--name=default-ipv4-ippool"], tmp_path), 2, "power of two"
    )
    _one_line_error(
        _run(["ipam", "release", "--ip=10.1.2.3"], tmp_path), 1, "10.1.2.3 is not assigned"
    )


def test_demo(tmp_path: Path) -> None:
    proc = _run(["demo", "--ipam-only"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "GROUPING" in proc.stdout and "| Block" in proc.stdout and "| IP Pool" in proc.stdout
    assert "host:node-1" in proc.stdout
    assert not (tmp_path / "tortie.db").exists()  # the user's store is not touched


def test_demo_in_process(cli: Cli) -> None:
    res = cli("demo", "--ipam-only").ok()
    assert "10.244.0.0/16" in res.out and "fd00:10:244::/48" in res.out
    assert res.out.count("| Block") == 6


HELP = [
    ([], ("create", "apply", "ipam", "demo", "SQLITE_PATH")),
    (["create"], ("-f", "standard input")),
    (["apply"], ("create or update",)),
    (["replace"], ("fails if one is missing",)),
    (["delete"], ("KIND", "NAME")),
    (["get"], ("ippools", "wide", "yaml", "json")),
    (["ipam"], ("show", "check", "release", "configure", "split", "assign")),
    (["ipam", "show"], ("--show-blocks", "--show-borrowed", "--show-configuration", "--ip")),
    (["ipam", "check"], ("leaks", "REPORT")),
    (["ipam", "release"], ("--ip", "--handle", "--from-report", "another cluster")),
    (["ipam", "configure"], ("--strictaffinity", "--max-blocks-per-host")),
    (["ipam", "split"], ("power of two", "split-<name>-<i>", "--cidr", "--name")),
    (["ipam", "assign"], ("--handle", "--node", "--ipv4", "--ipv6", "--pool", "--ip")),
    (["demo"], ("temporary",)),
    (["datastore"], ("migrate",)),
    (["datastore", "migrate"], ("export", "import", "copy")),
    (["datastore", "migrate", "copy"], ("--from-sqlite",)),
]


@pytest.mark.parametrize(("argv", "words"), HELP, ids=lambda v: " ".join(v) or "top")
def test_help(
    cli: Cli, capsys: pytest.CaptureFixture[str], argv: list[str], words: tuple[str, ...]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(*argv, "--help")
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: tortie")
    for word in words:
        assert word in out, word


def test_help_as_a_process(tmp_path: Path) -> None:
    proc = _run(["ipam", "assign", "--help"], tmp_path)
    assert proc.returncode == 0 and "usage: tortie ipam assign" in proc.stdout
    proc = _run(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("tortie ")


def test_process_non_utf8_stdin(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(TORTIE), "apply", "-f", "-"],
        input=b"kind: \xff\xfe\n",
        capture_output=True,
        env={**os.environ, "SQLITE_PATH": str(tmp_path / "t.db")},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "standard input: not UTF-8" in err
    assert "Traceback" not in err
