"""The in-process ``tortie`` command for the rollout tests."""

from __future__ import annotations

import io
import sys

import pytest

from tortie.cli.main import main


def run(*argv: str, capsys: pytest.CaptureFixture[str], stdin: str = "") -> tuple[int, str, str]:
    """``tortie ARGV`` with ``stdin``; (exit code, stdout, stderr)."""
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        rc = main(list(argv))
    finally:
        sys.stdin = old
    out = capsys.readouterr()
    return rc, out.out, out.err
