"""``route``: run a test module's plugin calls in-process and through the node service."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cni_helpers


@pytest.fixture(params=["in-process", "service"])
def route(request: pytest.FixtureRequest) -> Iterator[str]:
    via: str = request.param
    with tempfile.TemporaryDirectory(prefix="tortie-svc-") as tmp:
        cni_helpers.ROUTE.update(via=via, tmp=tmp)
        try:
            yield via
        finally:
            cni_helpers.stop_services()
            cni_helpers.ROUTE.update(via="in-process")
