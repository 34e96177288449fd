"""Write the CNI executables: the compiled thin client, or tiny Python launchers.

The compiled client (``tortie.cni.cclient``, built by ``pip install`` when a C compiler
is present) is copied under every plugin name with the socket, the interpreter and the
package root written into its configuration block; it execs that interpreter for the
in-process plugin when no service answers.  Without it, the Python launchers:

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


def configured_client(binary: bytes, socket: str, interpreter: str, root: str) -> bytes:
    """``binary`` (the compiled client) with its configuration block filled in."""
    from tortie.cni.cclient import CONFIG_MARKER, CONFIG_SIZE

    at = binary.find(CONFIG_MARKER)
    if at < 0 or binary.find(CONFIG_MARKER, at + 1) >= 0:
        raise InvalidInput(
            "the compiled CNI client has no single configuration block (a foreign or "
            "damaged build); reinstall tortie or use --client python"
        )
    entries = b"".join(
        k + b"=" + os.fsencode(v) + b"\0"
        for k, v in ((b"socket", socket), (b"python", interpreter), (b"root", root))
    )
    room = CONFIG_SIZE - len(CONFIG_MARKER) - 1  # the last byte stays NUL
    if len(entries) > room or b"\0" in socket.encode() + interpreter.encode() + root.encode():
        raise InvalidInput(
            f"--socket {socket!r}, the interpreter {interpreter!r} and the package at "
            f"{root!r} do not fit the compiled client's {room}-byte configuration; use "
            "shorter paths or --client python"
        )
    start = at + len(CONFIG_MARKER)
    block = entries + b"\0" * (CONFIG_SIZE - len(CONFIG_MARKER) - len(entries))
    return binary[:start] + block + binary[start + len(block) :]


def choose_client(wanted: str = "auto") -> str:
    """``compiled`` or ``python``: ``auto`` takes the compiled client when it was built."""
    from tortie.cni.cclient import built_client

    if wanted not in CLIENTS:
        raise InvalidInput(f"client {wanted!r}: choose one of {', '.join(CLIENTS)}")
    if wanted == "python":
        return "python"
    if built_client() is None:
        if wanted == "compiled":
            raise InvalidInput(
                "the compiled CNI client was not built (no C compiler when tortie was "
                "installed); install gcc and reinstall tortie, or use --client python"
            )
        return "python"
    return "compiled"


CLIENTS = ("auto", "compiled", "python")


def write_executables(
    bin_dir: str, socket: str = DEFAULT_SOCKET, client: str = "python"
) -> list[str]:
    """Write ``tortie-ipam``, ``calico-ipam``, ``tortie-cni`` and ``calico`` into
    ``bin_dir`` (each replaced atomically, mode 0755).  They try the node service at
    ``socket`` first (see ``tortie.cni.thin``).  ``client``: ``python`` launchers, the
    ``compiled`` client, or ``auto`` (see ``choose_client``).  Returns their paths."""
    from tortie.cni.cclient import built_client

    interpreter = interpreter_path()
    root = package_root()
    chosen = choose_client(client)
    binary = b""
    if chosen == "compiled":
        built = built_client()
        assert built is not None
        with open(built, "rb") as f:
            binary = configured_client(f.read(), socket, interpreter, root)
    os.makedirs(bin_dir, exist_ok=True)
    written = []
    for name, (plugin, module) in EXECUTABLES.items():
        path = os.path.join(bin_dir, name)
        data = binary or launcher_text(interpreter, root, plugin, module, socket).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=bin_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        written.append(path)
    return written
