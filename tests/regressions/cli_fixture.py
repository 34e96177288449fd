"""The in-process ``tortie`` command for regression tests, and a two-pool store file."""

from __future__ import annotations

import pytest

from tortie.cli.main import main


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            rc = main(list(argv))
        except Exception as exc:  # a traceback would reach the user
            pytest.fail(f"tortie {' '.join(argv)} raised {type(exc).__name__}: {exc}")
        captured = self.capsys.readouterr()
        return rc, captured.out, captured.err


POOLS_YAML = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: p4
spec:
  cidr: 10.80.0.0/24
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: p6
spec:
  cidr: fd00:80::/120
"""
