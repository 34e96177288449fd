"""Fixtures: the compiled client built from this tree (plain and sanitized), installed
as ``calico-ipam`` / ``calico`` in a temporary bin directory."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cclient_helpers import compile_into, require_compiler


@pytest.fixture(scope="session")
def builds() -> Iterator[dict[str, Path]]:
    require_compiler()
    with tempfile.TemporaryDirectory(prefix="tortie-cclient-") as tmp:
        yield {
            "plain": compile_into(Path(tmp), sanitized=False),
            "sanitized": compile_into(Path(tmp), sanitized=True),
        }


@pytest.fixture(params=["plain", "sanitized"])
def client(builds: dict[str, Path], request: pytest.FixtureRequest) -> Path:
    """One build of the client (every fault test runs against both)."""
    return builds[request.param]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for sockets (the 108-byte limit)."""
    with tempfile.TemporaryDirectory(prefix="tcc-", dir="/tmp") as tmp:
        yield Path(tmp)
