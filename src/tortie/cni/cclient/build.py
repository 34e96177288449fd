"""Compile ``tortie_cni.c``: used by ``setup.py`` at install time and by the tests (which
also build it with the sanitizers).  Standard library only: ``setup.py`` imports it
before tortie is installed."""

from __future__ import annotations

import os
import shutil
import subprocess

FLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_FORTIFY_SOURCE=2")
SANITIZE = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g")


def find_compiler() -> str | None:
    """``$CC`` when set, else ``cc`` or ``gcc`` on ``PATH``; None when there is none."""
    wanted = os.environ.get("CC", "").split()
    for name in (wanted[0],) if wanted else ("cc", "gcc"):
        found = shutil.which(name)
        if found:
            return found
    return None


def compile_client(
    source: str, output: str, extra: tuple[str, ...] = (), compiler: str | None = None
) -> None:
    """Build ``source`` into the executable ``output`` (written under a temporary name,
    then renamed).  Raises ``RuntimeError`` with the compiler's message on failure."""
    cc = compiler or find_compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or $CC) on PATH")
    tmp = f"{output}.tmp{os.getpid()}"
    proc = subprocess.run(
        [cc, *FLAGS, *extra, "-o", tmp, source], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise RuntimeError(f"{cc} failed on {source}: {proc.stderr.strip()}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, output)
