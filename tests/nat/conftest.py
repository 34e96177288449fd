"""Fixtures of the NAT tests: the CLI against a fresh SQLite store, throw-away namespaces
and the NAT lab (``nat_lab``)."""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: netns, cli helpers
from cli.clihelp import Cli
from nat_lab import NatLab
from netns import NetnsPool, require_root


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "tortie.db"))
    monkeypatch.setenv("TORTIE_RUN_DIR", str(tmp_path / "run"))

    def set_stdin(text: str) -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))

    return Cli(tmp_path, capsys, set_stdin)


def require_nft() -> None:
    require_root()
    if shutil.which("nft") is None and not Path("/usr/sbin/nft").exists():
        pytest.skip("needs nft: apt-get install nftables")


@pytest.fixture
def namespaces() -> Iterator[NetnsPool]:
    require_nft()
    with NetnsPool() as pool:
        yield pool


@pytest.fixture
def lab(namespaces: NetnsPool, tmp_path: Path) -> Iterator[NatLab]:
    lab = NatLab(namespaces, tmp_path)
    try:
        yield lab
    finally:
        lab.close()
