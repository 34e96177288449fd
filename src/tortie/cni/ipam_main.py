"""Process entry point of ``calico-ipam`` / ``tortie-ipam``."""

from __future__ import annotations

import sys

from tortie.cni.entry import Runner, serve


def _runner() -> Runner:
    from tortie.cni.ipam_plugin import run

    return run


def main() -> int:
    return serve(_runner)


if __name__ == "__main__":
    sys.exit(main())
