"""The node service's call queue: first come, first served per container, ahead of a
fixed set of workers.

- Calls for one container run one at a time, in the order they were queued; while one
  runs, later ones wait in that container's queue, not in the workers' (so one container
  never takes more than one worker, however often its runtime retries).
- Containers take turns: a container with more calls waiting goes to the back of the
  line after each of its calls.
- A worker whose thread is not in the host's network namespace after a call (a dataplane
  that could not step back out of a pod) is retired, never reused, and replaced.
- ``close`` stops taking calls, lets the queued and running ones finish (bounded), and
  answers the ones that never started through their ``abandon``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

SELF_NETNS = "/proc/thread-self/ns/net"


def netns_identity() -> tuple[int, int] | None:
    """The calling thread's network namespace (device, inode); None without /proc."""
    try:
        st = os.stat(SELF_NETNS)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class QueuedCall:
    """One call: ``run`` does it (and answers); ``abandon`` answers it without running
    (the service is stopping); ``gone`` says whether its client already hung up."""

    __slots__ = ("abandon", "gone", "key", "label", "run")

    def __init__(
        self,
        key: object,
        run: Callable[[], None],
        abandon: Callable[[], None],
        gone: Callable[[], bool],
        label: str,
    ) -> None:
        self.key = key
        self.run = run
        self.abandon = abandon
        self.gone = gone
        self.label = label


class CallQueue:
    def __init__(
        self,
        workers: int,
        log: logging.Logger | None = None,
        *,
        where: Callable[[], tuple[int, int] | None] = netns_identity,
    ) -> None:
        self.log = log
        self.where = where
        self.home = where()  # the host's namespace: the constructing thread's
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # calls queued, a container done
        self._short = threading.Condition(lock)  # the keeper's: a worker is missing
        self._pending: dict[object, deque[QueuedCall]] = {}
        self._ready: deque[object] = deque()  # containers with a call waiting, none running
        self._running: set[object] = set()
        self._closed = False
        self._quit = False
        self.retired = 0  # workers retired after leaving the host's namespace
        self.dropped = 0  # calls whose client had hung up before they started
        self._threads: set[threading.Thread] = set()
        self._serial = 0
        self.size = workers
        # New threads inherit the namespace of the thread that starts them, so a worker
        # stranded in a pod must not start its replacement: this keeper (which never
        # enters a namespace) starts every worker.
        self._keeper = threading.Thread(target=self._keep, name="cni-call-keeper", daemon=True)
        self._keeper.start()

    # ------------------------------------------------------------------ callers

    def submit(self, call: QueuedCall) -> bool:
        """Queue ``call`` behind the calls of its container; False once closed."""
        with self._cond:
            if self._closed:
                return False
            queue = self._pending.get(call.key)
            if queue is None:
                queue = self._pending[call.key] = deque()
                if call.key not in self._running:
                    self._ready.append(call.key)
            queue.append(call)
            self._cond.notify()
            return True

    def waiting(self, key: object) -> int:
        with self._cond:
            return len(self._pending.get(key, ()))

    @property
    def workers(self) -> int:
        with self._cond:
            return len(self._threads)

    def close(self, timeout: float) -> int:
        """Take no more calls; wait up to ``timeout`` for queued and running calls; then
        answer the queued ones that never started (``abandon``) and let the workers go.
        Returns how many calls are still running (0: nothing runs any more)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            while (self._pending or self._running) and time.monotonic() < deadline:
                self._cond.wait(0.1)
            left = [c for q in self._pending.values() for c in q]
            self._pending.clear()
            self._ready.clear()
            self._quit = True
            self._cond.notify_all()
            self._short.notify()
            running = len(self._running)
        for call in left:
            self._guard(call.abandon, call.label)
        return running

    # ------------------------------------------------------------------ workers

    def _keep(self) -> None:
        with self._cond:
            while not self._quit:
                while len(self._threads) < self.size and not self._quit:
                    self._spawn()
                self._short.wait()

    def _spawn(self) -> None:
        self._serial += 1
        thread = threading.Thread(target=self._work, name=f"cni-call-{self._serial}", daemon=True)
        self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._ready and not self._quit:
                    self._cond.wait()
                if self._quit:
                    self._threads.discard(me)
                    return
                key = self._ready.popleft()
                queue = self._pending[key]
                call = queue.popleft()
                if not queue:
                    del self._pending[key]
                self._running.add(key)
            if self._guard(call.gone, call.label):
                self.dropped += 1
                if self.log is not None:
                    self.log.info(
                        "CNI %s: the client hung up before it started; dropped", call.label
                    )
            else:
                self._guard(call.run, call.label)
            home = self.home is None or self.where() == self.home
            with self._cond:
                self._running.discard(key)
                if key in self._pending:
                    self._ready.append(key)  # its next call: behind the others waiting
                if not home:
                    self.retired += 1
                    self._threads.discard(me)
                    self._short.notify()  # the keeper starts another
                self._cond.notify_all()
            if not home:
                if self.log is not None:
                    self.log.error(
                        "CNI worker %s is not in the host's network namespace after %s; "
                        "retired it and started another",
                        me.name,
                        call.label,
                    )
                return

    def _guard(self, fn: Callable[[], object], label: str) -> object:
        try:
            return fn()
        except Exception as exc:  # a call's own errors are answered inside ``run``
            if self.log is not None:
                self.log.error("CNI %s: %s: %s", label, type(exc).__name__, exc)
            return None
