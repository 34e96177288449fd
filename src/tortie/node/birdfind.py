"""BIRD processes of one run directory, found in /proc: a process counts only when its
executable is ``bird`` and its command line names the run directory's control socket and
configuration (a pid alone proves nothing: pids get reused).  Used by ``birdproc.Bird``
to adopt or stop what a previous agent left, and by agents of other backends to stop it.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from tortie.errors import TortieError
from tortie.node.birdctl import find_bird
from tortie.rundir import RunDir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

STOP_TIMEOUT = 5.0  # per signal (TERM, then KILL)
PROC = "/proc"


# ------------------------------------------------------------------ processes, pure part


def names_run_dir(argv: list[str], socket: str, config: str) -> bool:
    """True when a command line gives ``socket`` as ``-s`` and ``config`` as ``-c``."""
    given = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i] in ("-s", "-c")}
    return given.get("-s") == socket and given.get("-c") == config


def is_bird(exe: str, bird: str) -> bool:
    """``exe`` (``/proc/<pid>/exe``, ``… (deleted)`` after a package upgrade) is a BIRD
    daemon: the same file name as ``bird`` (never ``birdc``, a shell, …)."""
    return os.path.basename(exe.removesuffix(" (deleted)")) == os.path.basename(bird)


def stat_fields(text: str) -> tuple[str, int]:
    """State letter and start time (clock ticks after boot) from ``/proc/<pid>/stat``.
    The command name may hold spaces and parentheses: fields are counted after the last
    ``)``."""
    rest = text.rsplit(")", 1)[1].split()
    return rest[0], int(rest[19])  # fields 3 and 22 of proc(5)


# ------------------------------------------------------------------ processes, /proc


@dataclass(frozen=True)
class BirdProcess:
    """A process known by pid *and* start time: together they name it for its whole life,
    where a pid alone may name another process tomorrow."""

    pid: int
    started: int
    exe: str

    def alive(self) -> bool:
        """Still this process, and not exited (a zombie nobody reaped counts as exited)."""
        now = _stat(self.pid)
        return now is not None and now[1] == self.started and now[0] not in "ZXx"

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if this is still the same live process; False when it is gone.
        Through a pidfd opened *before* the identity check where the kernel has them, so
        a pid reused between check and signal cannot be hit."""
        try:
            fd: int | None = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return False
        except OSError:
            fd = None  # kernel before 5.3: check, then kill (a microsecond's window)
        try:
            if not self.alive():
                return False
            if fd is None:
                os.kill(self.pid, sig)
            else:
                signal.pidfd_send_signal(fd, sig)
            return True
        except ProcessLookupError:
            return False
        finally:
            if fd is not None:
                os.close(fd)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    raw = _read(f"{PROC}/{pid}/stat")
    if raw is None:
        return None
    try:
        return stat_fields(raw.decode(errors="replace"))
    except (IndexError, ValueError):
        return None


def _process(pid: int, socket: str, config: str, bird: str) -> BirdProcess | None:
    """The BIRD of this run directory at ``pid``, or None (other program, other run
    directory, gone, zombie, unreadable: never ours when in doubt)."""
    raw = _read(f"{PROC}/{pid}/cmdline")
    if not raw:
        return None
    argv = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
    if not names_run_dir(argv, socket, config):
        return None
    try:
        exe = os.readlink(f"{PROC}/{pid}/exe")
    except OSError:
        return None
    stat = _stat(pid)
    if not is_bird(exe, bird) or stat is None or stat[0] in "ZXx":
        return None
    return BirdProcess(pid, stat[1], exe)


def find_birds(socket: str, config: str, bird: str) -> list[BirdProcess]:
    """Every running BIRD whose command line names this control socket and configuration."""
    found = []
    for name in os.listdir(PROC):
        if name.isdigit():
            proc = _process(int(name), socket, config, bird)
            if proc is not None:
                found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def terminate(proc: BirdProcess, run_dir: str) -> None:
    """Stop a BIRD that is not our child: TERM (and CONT, should it be stopped), then
    KILL; it is gone (or a zombie its parent will reap) when this returns."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not proc.signal(sig):
            return
        if sig == signal.SIGTERM:
            proc.signal(signal.SIGCONT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    if proc.alive():
        raise TortieError(
            f"BIRD (pid {proc.pid}) of {run_dir} does not stop, even on SIGKILL: "
            "find out what holds it, then restart the agent"
        )


def stop_left_behind(run_dir: str, log: logging.Logger) -> int:
    """Stop every BIRD a previous agent left running for ``run_dir``; how many.  For an
    agent that now runs without BIRD (``CALICO_NETWORKING_BACKEND`` changed): an old
    BIRD would otherwise go on programming the kernel."""
    files = RunDir(run_dir)
    try:
        bird = find_bird()[0]
    except TortieError:
        bird = "bird"  # uninstalled since: its process still says "bird"
    found = find_birds(files.bird_socket, files.bird_config, bird)
    for proc in found:
        log.warning("stopping BIRD (pid %d) left running in %s: no BIRD now", proc.pid, run_dir)
        terminate(proc, run_dir)
    return len(found)


def pid_in(path: str) -> int | None:
    raw = _read(path)
    try:
        return int(raw.strip()) if raw else None
    except ValueError:
        return None


# ------------------------------------------------------------------ the supervisor
