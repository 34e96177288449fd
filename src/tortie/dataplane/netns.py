"""Enter a network namespace for a block of code: ``setns(2)`` on the calling thread.

Python 3.11 has no ``os.setns`` (3.12 does, and is used when present); the fallback calls
libc through ctypes, loaded only on first use.  Only the calling thread moves, so the CNI
plugin (one thread) can step into the pod's namespace, write ``/proc/sys/net`` files and
spawn ``ip`` there (children inherit the namespace of the thread that spawns them), then
step back.  Nothing here changes any namespace's configuration.
"""

from __future__ import annotations

import os

from tortie.errors import InvalidInput, NotFound, TortieError

TYPE_CHECKING = False  # typing costs ms to import in the per-pod CNI process
if TYPE_CHECKING:
    from collections.abc import Callable

CLONE_NEWNET = 0x40000000
SELF_NETNS = "/proc/thread-self/ns/net"

_setns: Callable[[int, int], None] | None = None


def _load_setns() -> Callable[[int, int], None]:
    global _setns
    if _setns is None:
        native = getattr(os, "setns", None)
        if native is not None:
            _setns = native
        else:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc_setns = libc.setns

            def _ctypes_setns(fd: int, nstype: int) -> None:
                if libc_setns(fd, nstype) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, os.strerror(errno))

            _setns = _ctypes_setns
    return _setns


def open_netns(path: str) -> int:
    """Open a network namespace file (``/var/run/netns/x``, ``/proc/PID/ns/net``)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(
            f"network namespace {path} does not exist: pass the path of a live namespace"
        ) from None
    except OSError as exc:
        raise InvalidInput(
            f"network namespace {path} cannot be opened ({exc.strerror}): pass a readable "
            "namespace path"
        ) from None


def setns(fd: int, what: str) -> None:
    """Move the calling thread into the network namespace open on ``fd``."""
    try:
        _load_setns()(fd, CLONE_NEWNET)
    except OSError as exc:
        raise InvalidInput(
            f"cannot enter network namespace {what} ({exc.strerror}): pass the path of a "
            "network namespace and run as root"
        ) from None


class entered:  # lower case: used like a function, ``with entered(fd, path):``
    """Run the block inside the namespace open on ``fd``; always come back afterwards."""

    def __init__(self, fd: int, what: str) -> None:
        self.fd = fd
        self.what = what
        self.home = -1

    def __enter__(self) -> None:
        self.home = os.open(SELF_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(self.fd, self.what)
        except BaseException:
            os.close(self.home)
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            _load_setns()(self.home, CLONE_NEWNET)
        except OSError as exc:  # pragma: no cover - would leave the thread in the pod
            raise TortieError(
                f"cannot return to the original network namespace ({exc.strerror}); "
                "this process must stop"
            ) from None
        finally:
            os.close(self.home)
