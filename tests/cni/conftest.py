"""``route``: run a test module's plugin calls in-process, through the node service with
the Python thin client, and through it with the compiled client (``compiled``)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cni_helpers


@pytest.fixture(params=["in-process", "service", "compiled"])
def route(request: pytest.FixtureRequest) -> Iterator[str]:
    via: str = request.param
    with tempfile.TemporaryDirectory(prefix="tortie-svc-") as tmp:
        if via == "compiled":
            cni_helpers.install_compiled(tmp)
        cni_helpers.ROUTE.update(via=via, tmp=tmp)
        try:
            yield via
        finally:
            cni_helpers.stop_services()
            cni_helpers.ROUTE.update(via="in-process")
