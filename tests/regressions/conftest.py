"""The ``cli`` fixture: the in-process ``tortie`` command on a fresh SQLite store."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_fixture import Cli


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "tortie.db"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return Cli(capsys)
