"""The one thread that runs every network a server holds.

torch is fastest when one thread does all of its work: a second thread that calls into it
brings a second OpenMP team, and on a small machine the two halve each other's speed. So a
server loads its runs, answers every request's network work and steps every batch on one
thread (its main thread, charnn.serve.server), and other threads hand it work (``call``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

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

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the worker's thread, between two steps; its result (or error) in the future."""
        future: Future = Future()
        with self.wake:
            self.calls.append((fn, future))
            self.wake.notify()
        return future

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
                if not self.calls and not any(loop.busy() for loop in self.loops):
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
            for loop in self.loops:
                if loop.busy():
                    loop.turn()
