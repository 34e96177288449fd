"""Fixtures for the CLI tests: ``cli(...)`` runs ``tortie.cli.main.main`` in-process
against a fresh SQLite store in ``tmp_path`` and returns exit code, stdout and stderr."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from .clihelp import Cli


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "tortie.db"))

    def set_stdin(text: str) -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))

    return Cli(tmp_path, capsys, set_stdin)
