"""Read and write ``/proc/sys/net`` files of the calling thread's network namespace.

A ``/proc/sys/net`` file opened after ``setns`` belongs to the new namespace, so these
work inside ``tortie.dataplane.netns.entered`` without spawning ``sysctl``.
"""

from __future__ import annotations

import os

from tortie.errors import TortieError

ROOT = "/proc/sys/net"


def write(key: str, value: str, *, missing_ok: bool = False) -> None:
    """Write ``value`` to ``/proc/sys/net/<key>`` (``key`` like ``ipv4/conf/eth0/forwarding``)."""
    path = f"{ROOT}/{key}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if missing_ok:
            return
        raise TortieError(
            f"sysctl {path} does not exist: the kernel lacks it or the interface is gone"
        ) from None
    except OSError as exc:
        raise TortieError(f"cannot open sysctl {path} ({exc.strerror}): run as root") from None
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise TortieError(f"cannot set sysctl {path} to {value} ({exc.strerror})") from None
    finally:
        os.close(fd)


def read(key: str) -> str | None:
    """The value of ``/proc/sys/net/<key>``, or ``None`` if the file does not exist."""
    try:
        with open(f"{ROOT}/{key}", encoding="ascii") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None
