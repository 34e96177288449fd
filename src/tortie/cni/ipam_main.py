"""Process entry point of ``calico-ipam`` / ``tortie-ipam``: stdin, environment, stdout.

Kept free of heavy imports (no yaml, pyroute2 or argparse): one process runs per pod.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    try:
        if os.environ.get("CNI_COMMAND") == "VERSION":
            # Runtimes ask often; answer without loading the IPAM service.
            from tortie.cni.protocol import version_json

            code, out = 0, version_json()
            return _emit(code, out)
        from tortie.cni.ipam_plugin import run

        try:
            stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
        except (OSError, ValueError):
            stdin = b""
        code, out = run(stdin, os.environ, stderr=sys.stderr)
    except BaseException as exc:  # never a traceback, even for a broken install
        import json

        code = 1
        out = json.dumps(
            {
                "cniVersion": "1.1.0",
                "code": 999,
                "msg": f"internal error: {type(exc).__name__}: {exc}".replace("\n", " "),
                "details": "",
            }
        )
    return _emit(code, out)


def _emit(code: int, out: str) -> int:
    if out:
        try:
            sys.stdout.write(out + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
