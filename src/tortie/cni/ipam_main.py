"""Process entry point of ``calico-ipam`` / ``tortie-ipam``."""

from __future__ import annotations

import sys

from tortie.cni.entry import serve_module


def main(stdin: bytes | None = None) -> int:
    return serve_module("tortie.cni.ipam_plugin", stdin)


if __name__ == "__main__":
    sys.exit(main())
