"""The compiled thin CNI client (``tortie_cni.c``): where the built binary lives.

``pip install`` compiles it when a C compiler is present (``setup.py``'s
``build_cclient``, using :mod:`tortie.cni.cclient.build`); ``tortie install-cni`` then
copies it into the CNI bin directory under every plugin name (``tortie.cni.install``).
"""

from __future__ import annotations

import os

BINARY = "tortie-cni-client"
SOURCE = "tortie_cni.c"
# The block ``install-cni`` fills in each copy (``CONFIG_MARKER`` / ``CONFIG_SIZE`` in C).
CONFIG_MARKER = b"@@TORTIE-CNI-CONFIG-1@@\0"
CONFIG_SIZE = 4096
CONNECT_TIMEOUT = 5.0  # seconds (CONNECT_TIMEOUT_S in C)
MAX_ANSWER = 1 << 20  # bytes (MAX_ANSWER in C)


def here() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def source_path() -> str:
    return os.path.join(here(), SOURCE)


def built_client() -> str | None:
    """The binary ``pip install`` built next to this module; None when none was built
    (no C compiler at install time)."""
    path = os.path.join(here(), BINARY)
    return path if os.access(path, os.X_OK) else None
