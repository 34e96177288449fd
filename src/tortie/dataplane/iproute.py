"""Run iproute2's ``ip -batch -``: many commands, one short-lived process.

Spawned with ``os.posix_spawn`` (``subprocess`` costs a few ms to import, paid on every
pod by the CNI plugin).  The child inherits the network namespace of the calling thread,
so callers wrap a run in ``tortie.dataplane.netns.entered`` to act inside a pod.
"""

from __future__ import annotations

import os

from tortie.errors import TortieError

TYPE_CHECKING = False  # typing costs ms to import in the per-pod CNI process
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_FALLBACK_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
_ip_path: str | None = None


class BatchFailure:
    """Why a batch stopped: the failing command (``None`` if unknown) and ip's words."""

    __slots__ = ("command", "message")

    def __init__(self, command: str | None, message: str) -> None:
        self.command = command
        self.message = message


class IpCommandError(Exception):
    """``ip`` refused a command.  Internal: public dataplane functions translate it into
    the ``tortie.errors`` tree (kept outside it so the error-code maps stay complete)."""

    def __init__(self, failure: BatchFailure) -> None:
        where = f"`ip {failure.command}`" if failure.command else "ip"
        self.message = f"{where} failed: {failure.message}"
        super().__init__(self.message)
        self.failure = failure


def ip_binary() -> str:
    """The path of iproute2's ``ip``; ``TortieError`` if it is not installed."""
    global _ip_path
    if _ip_path is None:
        dirs = [*os.environ.get("PATH", "").split(os.pathsep), *_FALLBACK_DIRS]
        for d in dirs:
            candidate = os.path.join(d, "ip") if d else ""
            if candidate and os.access(candidate, os.X_OK):
                _ip_path = candidate
                break
        else:
            raise TortieError("iproute2 `ip` not found on PATH or in /usr/sbin: install iproute2")
    return _ip_path


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def run_batch(
    commands: Sequence[str],
    *,
    json: bool = False,
    details: bool = False,
    pass_fds: Sequence[int] = (),
) -> str:
    """Run ``commands`` through one ``ip -batch -``; return stdout.

    Stops at the first failing command and raises ``IpCommandError`` naming it.
    ``pass_fds`` stay open in the child (refer to them as ``/proc/self/fd/N``).
    """
    argv = ["ip"]
    if json:
        argv.append("-j")
    if details:
        argv.append("-d")
    argv += ["-batch", "-"]
    text = "".join(f"{c}\n" for c in commands).encode()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    try:
        pid = os.posix_spawn(
            ip_binary(),
            argv,
            {**os.environ, "LC_ALL": "C"},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, in_r, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
        )
    finally:
        for fd in pass_fds:
            os.set_inheritable(fd, False)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    try:
        try:
            os.write(in_w, text)  # small: fits the pipe buffer
        except BrokenPipeError:  # ip died early; its stderr says why
            text = b""
        os.close(in_w)
        in_w = -1
        out = _read_all(out_r)
        err = _read_all(err_r)
    finally:
        for fd in (in_w, out_r, err_r):
            if fd >= 0:
                os.close(fd)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise IpCommandError(_failure(commands, err.decode(errors="replace")))
    return out.decode()


def _failure(commands: Sequence[str], stderr: str) -> BatchFailure:
    """Turn ip's "Error: ...\\nCommand failed -:N" into the command and its message."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    command = None
    words = []
    for ln in lines:
        if ln.startswith("Command failed -:"):
            number = ln.rsplit(":", 1)[1]
            if number.isdigit() and 0 < int(number) <= len(commands):
                command = commands[int(number) - 1]
        else:
            words.append(ln.removeprefix("Error: ").removeprefix("RTNETLINK answers: "))
    return BatchFailure(command, "; ".join(words) or "exited with an error")


def parse_json_stream(text: str) -> list[Any]:
    """The JSON documents printed one after another by ``ip -j -batch -``."""
    import json

    decoder = json.JSONDecoder()
    docs: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return docs
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
