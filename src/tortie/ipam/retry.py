"""The one compare-and-swap retry loop.

Every IPAM write is read → compute → write-if-unchanged.  An operation signals a lost
race by raising ``Conflict``; this loop re-runs it after a jittered, growing pause,
until it succeeds, the attempt budget is spent or the deadline passes.  Nothing else in
tortie retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tortie.core.record import record
from tortie.errors import Conflict, Unavailable

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")


@record
class RetryPolicy:
    max_attempts: int = 100
    deadline_s: float = 60.0
    first_delay_s: float = 0.0005
    max_delay_s: float = 0.05


DEFAULT_POLICY = RetryPolicy()


def run_cas(
    op: Callable[[], T],
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] | None = None,
) -> T:
    """Run ``op`` until it does not raise ``Conflict``."""
    deadline = clock() + policy.deadline_s
    delay = policy.first_delay_s
    for _attempt in range(policy.max_attempts):
        try:
            return op()
        except Conflict:
            if clock() + delay > deadline:
                break
            if jitter is None:
                import random  # only on a lost race: keeps it off the plugin's start-up

                jitter = random.random
            sleep(delay * (0.5 + jitter()))
            delay = min(delay * 2, policy.max_delay_s)
    raise Unavailable(
        f"Max retries hit - excessive concurrent IPAM requests ({what}); try again later"
    )
