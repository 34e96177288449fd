"""A session-wide single etcd member for the overlay tests (skips without etcd)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.clihelp import Cli
from etcd_cluster import EtcdCluster, require_etcd


@pytest.fixture(scope="session")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd-overlay"), size=1) as cluster:
        yield cluster


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``tortie`` in-process against a fresh SQLite store (as tests/cli does)."""
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "tortie.db"))

    def set_stdin(text: str) -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))

    return Cli(tmp_path, capsys, set_stdin)
