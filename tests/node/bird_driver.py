"""Drives one ``tortie.node.birdproc.Bird`` from inside a network namespace, for
test_bird_supervision.py: ``python bird_driver.py RUN_DIR SUPERVISE_EVERY`` (seconds; 0:
never call ``supervise``, so only ``apply`` can start BIRD).

Reads commands on stdin, one a line, and answers each with one JSON line on stdout:
``apply FILE`` (the file's text), ``state``, ``stop`` (then exits).  The first line out
says whether the constructor adopted a BIRD.  Log lines go to RUN_DIR/driver.log.
"""

from __future__ import annotations

import json
import logging
import select
import sys
import time

from tortie.node.birdproc import Bird


def main() -> int:
    run_dir, every = sys.argv[1], float(sys.argv[2])
    logging.basicConfig(
        filename=f"{run_dir}/driver.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    bird = Bird(run_dir, logging.getLogger("driver"))

    def say(**doc: object) -> None:
        doc.update(pid=bird.pid, running=bird.running(), restarts=bird.restarts)
        print(json.dumps(doc), flush=True)

    say(adopted=bird.adopted is not None)
    next_supervise = time.monotonic()
    while True:
        wait = max(0.0, next_supervise - time.monotonic()) if every else None
        ready, _, _ = select.select([sys.stdin], [], [], wait)
        if every and time.monotonic() >= next_supervise:
            bird.supervise()
            next_supervise = time.monotonic() + every
        if not ready:
            continue
        line = sys.stdin.readline()
        if not line:
            bird.stop()
            return 0
        command, _, arg = line.strip().partition(" ")
        if command == "apply":
            with open(arg, encoding="utf-8") as fh:
                say(applied=bird.apply(fh.read()))
        elif command == "state":
            say()
        elif command == "stop":
            bird.stop()
            say(stopped=True)
            return 0
        else:
            say(error=f"unknown command {command!r}")


if __name__ == "__main__":
    sys.exit(main())
