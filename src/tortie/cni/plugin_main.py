"""Process entry point of ``calico`` / ``tortie-cni`` (the main plugin)."""

from __future__ import annotations

import sys

from tortie.cni.entry import serve_module


def main(stdin: bytes | None = None) -> int:
    return serve_module("tortie.cni.main_plugin", stdin)


if __name__ == "__main__":
    sys.exit(main())
