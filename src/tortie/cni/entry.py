"""The process edge shared by both plugins: read stdin, run, write stdout, never a traceback.

Kept free of heavy imports (no yaml, pyroute2 or argparse): one process runs per pod.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import TextIO

Runner = Callable[..., tuple[int, str]]


def serve(load_runner: Callable[[], Runner], stdin: bytes | None = None) -> int:
    """Run a plugin's ``run(stdin, env, stderr=...)`` as a CNI process (``stdin``: what
    the thin plugin already read; None reads it here)."""
    try:
        if os.environ.get("CNI_COMMAND") == "VERSION":
            # Runtimes ask often; answer without loading the plugin.
            from tortie.cni.protocol import version_json

            return _emit(0, version_json())
        run = load_runner()
        if stdin is None:
            try:
                stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
            except (OSError, ValueError):
                stdin = b""
        env: Mapping[str, str] = os.environ
        stderr: TextIO = sys.stderr
        code, out = run(stdin, env, stderr=stderr)
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


def serve_module(module: str, stdin: bytes | None = None) -> int:
    """``serve`` the ``run`` of a plugin module, imported only when a call needs it."""

    def load() -> Runner:
        __import__(module)  # the builtin: importlib would add ~0.4 ms of imports
        run: Runner = sys.modules[module].run
        return run

    return serve(load, stdin)
