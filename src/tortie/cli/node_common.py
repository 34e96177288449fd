"""What the ``tortie node …`` command modules share: the agent's log and its run
directory.  Imports no other command module (they import this one)."""

from __future__ import annotations

import logging
import os
import sys

from tortie.rundir import DEFAULT, RunDir

# The run directory's files as the commands' help names them ("TORTIE_RUN_DIR/cni.sock").
IN_HELP = RunDir("TORTIE_RUN_DIR")
DEFAULT_RUN_DIR = DEFAULT


def setup_logging() -> logging.Logger:
    log = logging.getLogger("tortie.node")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG if os.environ.get("TORTIE_DEBUG") else logging.INFO)
        log.propagate = False
    return log


def run_dir() -> RunDir:
    """``$TORTIE_RUN_DIR`` or the default."""
    return RunDir.from_env()
