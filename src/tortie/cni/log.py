"""A tiny logger for the CNI plugins (the ``logging`` package is not needed for one call).

Never writes to stdout.  Destination: ``log_file_path`` when set (appended, default level
info), otherwise stderr, and stderr only when ``log_level`` is debug or info.  Write
errors are ignored: logging must never fail a CNI call.
"""

from __future__ import annotations

import contextlib
import os
import time

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import TextIO

_RANK = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "fatal": 50, "panic": 50}


class Log:
    def __init__(
        self, level: str = "", path: str = "", stderr: TextIO | None = None, tag: str = ""
    ) -> None:
        self.path = path
        self.stderr = stderr if not path else None
        self.tag = tag
        self.lines: list[str] = []
        if level == "none":
            self.threshold = 100
        elif path:
            self.threshold = _RANK.get(level, 20)
        elif level in ("debug", "info") and stderr is not None:
            self.threshold = _RANK[level]
        else:
            self.threshold = 100

    def enabled(self, level: str) -> bool:
        return _RANK[level] >= self.threshold

    def log(self, level: str, msg: str) -> None:
        if not self.enabled(level):
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}"
        line = f"{stamp} [{level.upper()}][{os.getpid()}] {self.tag}{' '.join(msg.splitlines())}\n"
        line = line.encode("utf-8", "backslashreplace").decode("utf-8")
        if self.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                self.stderr.write(line)
        elif self.path:
            self.lines.append(line)

    def debug(self, msg: str) -> None:
        self.log("debug", msg)

    def info(self, msg: str) -> None:
        self.log("info", msg)

    def warning(self, msg: str) -> None:
        self.log("warning", msg)

    def error(self, msg: str) -> None:
        self.log("error", msg)

    def flush(self) -> None:
        """Append buffered lines to the log file (one write, so concurrent plugin
        processes do not interleave inside a line)."""
        if not self.lines or not self.path:
            return
        data = "".join(self.lines).encode("utf-8", "backslashreplace")
        self.lines = []
        try:
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except (OSError, ValueError):
            pass
