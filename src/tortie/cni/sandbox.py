"""Check that ``CNI_NETNS`` names a network namespace before anything is allocated.

A runtime passes the path of the pod's namespace (``/proc/<pid>/ns/net`` or a bind mount
under ``/run/netns``).  Any other path would only fail later, deep in ``ip link add``,
with a message that does not say what was wrong; here the path is opened and the
kernel is asked (``NS_GET_NSTYPE``) which kind of namespace it is.
"""

from __future__ import annotations

import errno
import os
import stat

from tortie.cni import errors as codes
from tortie.cni.protocol import CniError

NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3): the namespace type of an nsfs file
CLONE_NEWNET = 0x40000000
_KINDS = {
    0x00020000: "a mount namespace",
    0x02000000: "a cgroup namespace",
    0x04000000: "a UTS namespace",
    0x08000000: "an IPC namespace",
    0x10000000: "a user namespace",
    0x20000000: "a PID namespace",
    0x00000080: "a time namespace",
}
_FIX = "pass the path of the pod's live network namespace (e.g. /proc/<pid>/ns/net)"


def _what(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a namespace file"


def check_netns_path(path: str) -> None:
    """Raise ``CniError`` (code 4) unless ``path`` is a network namespace."""

    def bad(what: str) -> CniError:
        return CniError(
            codes.INVALID_ENVIRONMENT,
            f"CNI_NETNS {path} is {what}, not a network namespace: {_FIX}",
        )

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CniError(
            codes.INVALID_ENVIRONMENT, f"CNI_NETNS {path} does not exist: {_FIX}"
        ) from None
    except OSError as exc:
        raise bad(f"unreadable ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise bad(_what(mode))
    import fcntl  # only on ADD of the main plugin, after the cheap checks

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise bad(f"unreadable ({exc.strerror})") from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            raise bad("a regular file") from None
        raise bad(f"not checkable ({exc.strerror})") from None
    finally:
        os.close(fd)
    if kind != CLONE_NEWNET:
        raise bad(_KINDS.get(kind, f"a namespace of type {kind:#x}"))
