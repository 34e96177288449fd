"""Write the CNI executables: tiny Python launchers with a fast, isolated interpreter.

Each launcher's shebang names the real interpreter (symlinks resolved, never a pyenv
shim) with ``-IS`` (``-I -S``; Linux passes everything after the interpreter in a ``#!`` line as
one argument, so the flags must be one word): no site-packages scan, no user site, no ``PYTHON*`` variables,
which saves a good part of the start-up of every plugin call.  The plugins need only the
standard library and tortie, so the launcher puts the directory holding the ``tortie``
package first on ``sys.path`` and calls the entry point.
"""

from __future__ import annotations

import os
import sys
import tempfile

from tortie.errors import InvalidInput
from tortie.rundir import DEFAULT_CNI_SOCKET

# executable name → (which plugin it is for the node service, the in-process module)
EXECUTABLES: dict[str, tuple[str, str]] = {
    "tortie-ipam": ("ipam", "tortie.cni.ipam_main"),
    "calico-ipam": ("ipam", "tortie.cni.ipam_main"),
    "tortie-cni": ("main", "tortie.cni.plugin_main"),
    "calico": ("main", "tortie.cni.plugin_main"),
}
DEFAULT_SOCKET = DEFAULT_CNI_SOCKET  # $TORTIE_RUN_DIR/cni.sock of the default agent

# Linux reads at most this many bytes of a "#!" line (BINPRM_BUF_SIZE since 5.1).
MAX_SHEBANG = 255


def interpreter_path(executable: str | None = None) -> str:
    """The real interpreter behind ``executable`` (default ``sys.executable``)."""
    exe = executable or sys.executable
    if not exe:
        raise InvalidInput("cannot tell which Python runs tortie (sys.executable is empty)")
    real = os.path.realpath(exe)
    if "/shims/" in real or not os.access(real, os.X_OK):
        raise InvalidInput(
            f"{real} is not a usable Python interpreter for the CNI launchers (a pyenv shim "
            "or not executable); run the install with the real interpreter"
        )
    return real


def package_root() -> str:
    """The directory that contains the ``tortie`` package (goes on ``sys.path``)."""
    import tortie

    return os.path.dirname(os.path.dirname(os.path.realpath(tortie.__file__)))


def launcher_text(interpreter: str, root: str, plugin: str, module: str, socket: str) -> str:
    shebang = f"#!{interpreter} -IS"
    if len(shebang) > MAX_SHEBANG or any(c.isspace() for c in interpreter):
        raise InvalidInput(
            f"interpreter path {interpreter!r} cannot go in a '#!' line (too long or has "
            "spaces); install Python at a shorter path without spaces"
        )
    return (
        f"{shebang}\n"
        "# Written by tortie install-cni; rewritten on every install.\n"
        "# Asks the node service on the socket below; runs the plugin here when none answers.\n"
        "import sys\n"
        f"sys.path.insert(0, {root!r})\n"
        "from tortie.cni.thin import main\n"
        f"sys.exit(main({plugin!r}, {module!r}, {socket!r}))\n"
    )


def write_executables(bin_dir: str, socket: str = DEFAULT_SOCKET) -> list[str]:
    """Write ``tortie-ipam``, ``calico-ipam``, ``tortie-cni`` and ``calico`` into
    ``bin_dir`` (each replaced atomically, mode 0755).  They try the node service at
    ``socket`` first (see ``tortie.cni.thin``).  Returns their paths."""
    interpreter = interpreter_path()
    root = package_root()
    os.makedirs(bin_dir, exist_ok=True)
    written = []
    for name, (plugin, module) in EXECUTABLES.items():
        path = os.path.join(bin_dir, name)
        text = launcher_text(interpreter, root, plugin, module, socket)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=bin_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        written.append(path)
    return written
