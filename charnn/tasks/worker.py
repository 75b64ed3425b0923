"""The one thread that runs every network a server holds.

torch is fastest when one thread does all of its work: a second thread that calls into it
brings a second OpenMP team, and on a small machine the two halve each other's speed. So a
server loads its runs, answers every request's network work and steps every batch on one
thread (its main thread, charnn.serve.server), and other threads hand it work (``call``).

Work that takes long (scoring a long text, classifying or tagging many) is a chore: a generator
that does one chunk each time it is advanced. The worker advances one chore a chunk between two
steps of the batches, so no request holds the others up for more than a chunk's time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from charnn.tasks.base import Stopping

TIDY_EVERY = 50
"""Calls between two of ``run``'s tidy-ups (a server hands back freed memory)."""
IDLE_WAIT = 0.1
"""Seconds the worker sleeps at most when it has nothing to do (it then checks whether to stop)."""


class Worker:
    """Runs calls handed to it and steps the batches of its loops, all on the thread of ``run``.

    A loop (charnn.tasks.lm.batcher.Batcher) gives ``busy()`` and ``turn()``: one step of its batch."""

    def __init__(self) -> None:
        self.wake = threading.Condition()
        self.calls: deque[tuple[Callable[[], Any], Future]] = deque()
        self.loops: list[Any] = []
        self.chores: deque[Iterator[Any]] = deque()
        self.closing = False

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the worker's thread, between two steps; its result (or error) in the future."""
        future: Future = Future()
        with self.wake:
            self.calls.append((fn, future))
            self.wake.notify()
        return future

    def begin(self, chore: Iterator[Any]) -> None:
        """Advance ``chore`` a chunk at a time between steps, until it ends (call on the worker's thread).
        Once the worker closes, chores are thrown ``Stopping`` (charnn.tasks.base.chunked ends its job);
        ``chore`` is primed here (charnn.tasks.base.chunked does no work in its first advance)."""
        next(chore)
        self.chores.append(chore)

    def close(self) -> None:
        """Stop every chore at its next chunk, and every chore begun after (the server is stopping)."""
        self.closing = True
        self.nudge()

    def add(self, loop: Any) -> None:
        self.loops.append(loop)

    def nudge(self) -> None:
        """Wake the worker (a loop has new work)."""
        with self.wake:
            self.wake.notify()

    def run(self, keep_going: Callable[[], bool], tidy: Callable[[], None] | None = None) -> None:
        """Work until ``keep_going()`` is false (checked at least every IDLE_WAIT seconds);
        ``tidy()`` after every TIDY_EVERY calls."""
        done = 0
        while keep_going():
            with self.wake:
                if not self.calls and not self.chores and not any(loop.busy() for loop in self.loops):
                    self.wake.wait(IDLE_WAIT)
                calls, self.calls = list(self.calls), deque()
            done += len(calls)
            if tidy is not None and done >= TIDY_EVERY:
                done = 0
                tidy()
            for fn, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as error:  # noqa: BLE001  (the caller's to raise)
                        future.set_exception(error)
            self._advance()
            for loop in self.loops:
                if loop.busy():
                    loop.turn()

    def _advance(self) -> None:
        """One chunk of the first chore (which then waits behind the others); all of them end when closing."""
        if not self.chores:
            return
        chores = list(self.chores) if self.closing else [self.chores[0]]
        if not self.closing:
            self.chores.rotate(-1)
        for chore in chores:
            try:
                if self.closing:
                    chore.throw(Stopping())
                else:
                    next(chore)
                    continue
            except StopIteration:
                pass
            except Exception:  # noqa: BLE001, S110  (a chore answers its own errors; one that escapes ends only it)
                pass
            self.chores.remove(chore)
