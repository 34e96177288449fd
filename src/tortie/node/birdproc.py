"""The BIRD 2 daemon as the agent's child: configuration files, start, reconfigure,
restart with back-off when it dies, stop.  Everything lives under the run directory, so
several agents (one per network namespace) can share a machine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from tortie.errors import NotFound, TortieError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

MAX_BACKOFF = 30.0


def find_bird() -> tuple[str, str]:
    bird, birdc = shutil.which("bird"), shutil.which("birdc")
    for candidate in ("/usr/sbin/bird", "/sbin/bird"):
        if bird is None and os.access(candidate, os.X_OK):
            bird = candidate
    for candidate in ("/usr/sbin/birdc", "/sbin/birdc"):
        if birdc is None and os.access(candidate, os.X_OK):
            birdc = candidate
    if bird is None or birdc is None:
        raise NotFound(
            "BIRD 2 is not installed (no bird/birdc on PATH): install it (Debian: apt-get "
            "install bird2), or set CALICO_NETWORKING_BACKEND=none to run without routing"
        )
    return bird, birdc


def birdc(socket_path: str, *command: str, timeout: float = 10) -> str:
    """One ``birdc`` command on the agent's control socket; its output."""
    _, client = find_bird()
    try:
        proc = subprocess.run(
            [client, "-s", socket_path, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TortieError(f"birdc {' '.join(command)}: no answer in {timeout:g} s") from None
    if proc.returncode != 0 or "Unable to connect" in proc.stdout + proc.stderr:
        raise NotFound(
            f"no BIRD answers on {socket_path} ({(proc.stderr or proc.stdout).strip()[:200]}); "
            "is 'tortie node run' running with this TORTIE_RUN_DIR?"
        )
    return proc.stdout


class Bird:
    def __init__(self, run_dir: str, log: logging.Logger) -> None:
        self.run_dir = run_dir
        self.log = log
        self.conf = os.path.join(run_dir, "bird.cfg")
        self.socket = os.path.join(run_dir, "bird.ctl")
        self.pidfile = os.path.join(run_dir, "bird.pid")
        self.logfile = os.path.join(run_dir, "bird.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._next_start = 0.0
        self._backoff = 1.0
        self._refused = ""  # the last text BIRD refused: not checked (nor logged) again
        self.bird, _ = find_bird()

    def apply(self, text: str) -> bool:
        """Write ``text`` as the configuration if BIRD accepts it, then reconfigure the
        running daemon (or start it).  False (and the old configuration kept) when BIRD
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
        else:
            self.start()
        return True

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                [self.bird, "-f", "-c", self.conf, "-s", self.socket, "-P", self.pidfile],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.log.info("BIRD started (pid %d), log %s", self.proc.pid, self.logfile)

    def supervise(self) -> None:
        """Restart a BIRD that died, waiting longer after each quick death."""
        if self.proc is None or self.running():
            if self.running() and time.monotonic() > self._next_start + 60:
                self._backoff = 1.0  # it has been up for a while
            return
        now = time.monotonic()
        if now < self._next_start:
            return
        self.log.warning(
            "BIRD (pid %d) exited with %s; restarting it", self.proc.pid, self.proc.returncode
        )
        self.restarts += 1
        self._next_start = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.log.info("BIRD stopped")
        for path in (self.socket, self.pidfile):
            if os.path.exists(path):
                os.unlink(path)
