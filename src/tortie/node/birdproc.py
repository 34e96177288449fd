"""The BIRD 2 daemon of one run directory: its configuration file, start, reconfigure,
restart with back-off when it dies, stop; and the BIRD a previous agent left behind.

Never two BIRDs for one run directory.  ``Bird(...)`` first looks for BIRDs already
running for it (``tortie.node.birdfind``: the executable is ``bird`` and the command line
names this run directory's socket and configuration; a pid alone proves nothing).  One
such BIRD that runs the installed binary and answers on the socket is *adopted*: it
keeps its BGP sessions and kernel routes, gets this agent's configuration at the next
``apply`` (``birdc configure``), and is watched by pid and start time, since it is not
our child.  Anything else found
(several BIRDs, one that does not answer, one whose binary was replaced) is stopped.
Every start, the first as well as restarts, from ``apply`` as from ``supervise``, passes
one back-off gate, and looks for strays once more.  docs/design/node-routing.md says why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tortie.errors import TortieError
from tortie.node.birdctl import birdc, find_bird
from tortie.node.birdfind import (
    STOP_TIMEOUT,
    BirdProcess,
    find_birds,
    pid_in,
    terminate,
)
from tortie.rundir import RunDir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

__all__ = ["Bird"]

MIN_BACKOFF = 1.0  # seconds before the start after the first one
MAX_BACKOFF = 30.0
STABLE = 60.0  # up this long: the next death starts the back-off from the beginning


class Bird:
    """The one BIRD of ``run_dir``: ours (a child) or adopted (found running)."""

    def __init__(self, run_dir: str, log: logging.Logger) -> None:
        files = RunDir(run_dir)
        self.run_dir = run_dir
        self.log = log
        self.conf = files.bird_config
        self.socket = files.bird_socket
        self.pidfile = files.bird_pid
        self.logfile = files.bird_log
        self.proc: subprocess.Popen[bytes] | None = None  # our child
        self.adopted: BirdProcess | None = None  # found running: not our child
        self.restarts = 0
        self._ran = False  # a BIRD ran under this supervisor: a start now is a restart
        self._next_start = 0.0  # monotonic time before which nothing starts BIRD
        self._backoff = MIN_BACKOFF
        self._up_since = 0.0
        self._death_seen = False
        self._refused = ""  # the last text BIRD refused: not checked (nor logged) again
        self.bird, _ = find_bird()
        self._take_over()

    # -------------------------------------------------------------- public

    def apply(self, text: str) -> bool:
        """Write ``text`` as the configuration if BIRD accepts it, then reconfigure the
        running daemon, or start it when the back-off allows (else ``supervise`` starts it
        with this text when due).  False (and the old configuration kept) when BIRD
        refuses the new text."""
        if text == self._refused:
            return False
        tmp = f"{self.conf}.new"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        check = subprocess.run(
            [self.bird, "-p", "-c", tmp], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            self.log.error("BIRD refused the rendered configuration: %s", check.stderr.strip())
            os.unlink(tmp)
            self._refused = text
            return False
        self._refused = ""
        os.replace(tmp, self.conf)
        if self.running():
            out = birdc(self.socket, "configure")
            self.log.info("BIRD reconfigured: %s", " ".join(out.split()[-2:]))
            return True
        self._note_death()
        if not self._start_when_due():
            self.log.info(
                "BIRD is down; it starts with the new configuration in %.1f s (back-off)",
                self._next_start - time.monotonic(),
            )
        return True

    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.adopted is not None and self.adopted.alive()

    @property
    def pid(self) -> int | None:
        """The supervised BIRD's pid (ours or adopted), None when none runs."""
        if not self.running():
            return None
        if self.proc is not None:
            return self.proc.pid
        return None if self.adopted is None else self.adopted.pid

    def supervise(self) -> None:
        """Restart a BIRD that died.  Starts are at least 1, 2, 4 … 30 s apart (each
        delay twice the last); after a minute up the delay is 1 s again, so a BIRD that
        ran a while is restarted at once."""
        if self.running():
            if time.monotonic() - self._up_since >= STABLE:
                self._backoff = MIN_BACKOFF
            return
        if not self._ran:
            return  # no configuration accepted yet: nothing to run
        self._note_death()
        self._start_when_due()

    def stop(self) -> None:
        """Stop the BIRD (ours or adopted: TERM, then KILL after 5 s) and remove its
        socket and pid file.  ``TortieError`` when it cannot be stopped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
            self.log.info("BIRD stopped")
        elif self.adopted is not None and self.adopted.alive():
            terminate(self.adopted, self.run_dir)
            self.log.info("BIRD stopped (pid %d, adopted)", self.adopted.pid)
        self.proc = self.adopted = None
        for path in (self.socket, self.pidfile):
            if os.path.exists(path):
                os.unlink(path)

    # -------------------------------------------------------------- start

    def _start_when_due(self) -> bool:
        """The one way to start BIRD: only when the back-off allows; True if started."""
        now = time.monotonic()
        if now < self._next_start:
            return False
        self._next_start = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        self._start()
        return True

    def _start(self) -> None:
        for stray in find_birds(self.socket, self.conf, self.bird):
            self.log.warning(
                "BIRD (pid %d) runs for %s though this agent did not start it; stopping it "
                "(never two BIRDs on one run directory)",
                stray.pid,
                self.run_dir,
            )
            terminate(stray, self.run_dir)
        if os.path.exists(self.socket):
            os.unlink(self.socket)  # a dead BIRD's: the next one would take it for alive
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                [self.bird, "-f", "-c", self.conf, "-s", self.socket, "-P", self.pidfile],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.adopted = None
        if self._ran:
            self.restarts += 1
        self._ran = True
        self._up_since = time.monotonic()
        self._death_seen = False
        self.log.info("BIRD started (pid %d), log %s", self.proc.pid, self.logfile)

    def _note_death(self) -> None:
        """Log a death once, when first seen."""
        if not self._ran or self._death_seen:
            return
        self._death_seen = True
        if self.proc is not None:
            pid, how = self.proc.pid, f" with {self.proc.returncode}"
        else:
            pid, how = (self.adopted.pid if self.adopted else 0), ""
        wait = max(0.0, self._next_start - time.monotonic())
        self.log.warning("BIRD (pid %d) exited%s; restarting it in %.1f s", pid, how, wait)

    # -------------------------------------------------------------- a previous agent's BIRD

    def _take_over(self) -> None:
        """Adopt the one BIRD a previous agent left running here, or stop what is found."""
        found = find_birds(self.socket, self.conf, self.bird)
        hint = pid_in(self.pidfile)
        if hint is not None and all(p.pid != hint for p in found):
            self.log.info(
                "%s names pid %d, which is no BIRD of this run directory: left alone",
                self.pidfile,
                hint,
            )
        if not found:
            return
        why = self._why_not_adopt(found[0]) if len(found) == 1 else f"{len(found)} run for it"
        if why is None:
            self.adopted = found[0]
            self._ran = True
            self._up_since = time.monotonic()
            self.log.info(
                "adopted BIRD (pid %d) left running by a previous agent in %s: its sessions "
                "and routes stay; it gets this agent's configuration",
                found[0].pid,
                self.run_dir,
            )
            return
        for proc in found:
            self.log.warning(
                "stopping BIRD (pid %d) left running by a previous agent in %s: %s",
                proc.pid,
                self.run_dir,
                why,
            )
            terminate(proc, self.run_dir)

    def _why_not_adopt(self, proc: BirdProcess) -> str | None:
        installed = os.path.realpath(self.bird)
        if proc.exe != installed:
            return f"it runs {proc.exe}, not the installed {installed}"
        try:
            birdc(self.socket, "show", "status", timeout=3)
        except TortieError as exc:
            return f"it does not answer on its control socket ({exc})"
        return None
