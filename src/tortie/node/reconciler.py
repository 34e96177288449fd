"""Desired state from the watched cache, applied only when it differs.

Each thing the agent programs is a ``Part``: a pure ``desired(view, me)`` (BIRD's
configuration text, the VXLAN state, the NAT ruleset, ...) and an ``apply`` that makes
the world match.  ``Reconciler.reconcile`` computes every part's desired state and
applies those that changed since they were last applied.  Parts that own kernel state
(``kernel = True``) are also applied on every dataplane resync, unchanged or not: their
appliers read the kernel and correct what someone changed by hand.

One part failing never holds up another: its error is logged once (again only when the
wording changes) and it is retried with a growing delay (1 s, doubling, at most
``MAX_RETRY``) — or when its desired state changes.  A part whose ``apply`` refuses a
desired state (returns False: BIRD rejected the configuration) is not asked again until
the desired state changes.
"""

from __future__ import annotations

import time

from tortie.errors import TortieError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Protocol

    from tortie.node.cache import ClusterView
    from tortie.node.startup import StartupResult
else:
    Protocol = object

MAX_RETRY = 30.0


class Part(Protocol):
    """One piece of programmed state."""

    name: str
    kernel: bool  # also applied on every dataplane resync

    def desired(self, view: ClusterView, me: StartupResult) -> object: ...

    def apply(self, desired: object) -> bool: ...


class _Track:
    __slots__ = ("applied", "attempt", "delay", "error", "has_applied", "refused", "retry_at")

    def __init__(self) -> None:
        self.applied: object = None  # the desired state last applied
        self.has_applied = False
        self.refused: object = None  # the desired state last refused
        self.attempt: object = None  # the desired state whose apply failed
        self.error = ""
        self.retry_at = 0.0
        self.delay = 1.0


def _due(t: _Track, want: object, resync: bool, now: float) -> bool:
    """Whether ``want`` must be applied now."""
    if t.error:  # wait for the retry, unless what is wanted changed
        return want != t.attempt or now >= t.retry_at
    if t.refused is not None and want == t.refused:
        return False
    return resync or not t.has_applied or want != t.applied


class Reconciler:
    def __init__(self, parts: list[Part], log: logging.Logger) -> None:
        self.parts = parts
        self.log = log
        self._track = {p.name: _Track() for p in parts}
        self.applied = 0  # applies that went through (metrics)

    def pending(self) -> bool:
        """Whether a failed part waits for its retry (the caller wakes up for it)."""
        return any(t.error for t in self._track.values())

    def reconcile(self, view: ClusterView, me: StartupResult, resync: bool = False) -> list[str]:
        """Apply what changed (and every kernel part when ``resync``); the names applied."""
        done: list[str] = []
        now = time.monotonic()
        for part in self.parts:
            t = self._track[part.name]
            try:
                want = part.desired(view, me)
            except TortieError as exc:
                self._failed(part, t, f"cannot compute the desired state: {exc}", now)
                continue
            if not _due(t, want, resync and part.kernel, now):
                continue
            try:
                ok = part.apply(want)
            except TortieError as exc:
                t.attempt = want
                self._failed(part, t, str(exc), now)
                continue
            except OSError as exc:
                t.attempt = want
                self._failed(part, t, f"{exc.strerror or exc}", now)
                continue
            if t.error:
                self.log.info("%s: applied again after the failure", part.name)
            t.error, t.delay = "", 1.0
            if ok:
                t.applied, t.has_applied, t.refused = want, True, None
                self.applied += 1
                done.append(part.name)
            else:
                t.refused = want
        return done

    def _failed(self, part: Part, t: _Track, message: str, now: float) -> None:
        if message != t.error:
            self.log.error("%s: %s; retrying", part.name, message)
        t.error = message
        t.retry_at = now + t.delay
        t.delay = min(t.delay * 2, MAX_RETRY)
