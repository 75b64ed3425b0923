"""Batches of whole texts for the encoder tasks (classify, tag), the same for a resumed run.

An epoch is a seeded shuffle of the training texts; to waste little on padding, each run
of SORT_GROUP batches is sorted by length before it is cut into batches, and the batches
are then visited in a seeded order::

    shuffle(seed, epoch) -> [ 50 batches' texts ][ 50 batches' texts ] ...
                             sort by length, cut into batches, shuffle their order

so step s reads the same texts whether or not the run was resumed. Nothing is carried
from one step to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from charnn.model import State
from charnn.tasks.base import logged_evaluation
from charnn.tasks.encoders import figures

SORT_GROUP = 50


class WholeTextBatches:
    """The loop's side of a task that reads whole texts; the task sets ``lengths`` (each
    training text's tokens), ``batches_per_epoch`` and ``config``."""

    lengths: np.ndarray
    batches_per_epoch: int
    _epoch: tuple[int, np.ndarray] | None = None

    headline = staticmethod(figures.headline)
    brief = staticmethod(figures.brief)
    best_line = staticmethod(figures.best_line)
    logged = staticmethod(logged_evaluation)

    def initial_carry(self) -> State:
        return []

    def carry_template(self) -> State:
        return []

    def own_rows(self, carry: State) -> State:
        return carry

    def batch(self, step: int) -> np.ndarray:
        """Indices of the training texts of step ``step`` (all processes' rows)."""
        epoch, k = divmod(step, self.batches_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self._epoch_batches(epoch))
        return self._epoch[1][k]

    def _epoch_batches(self, epoch: int) -> np.ndarray:
        b = self.config.batch_size  # type: ignore[attr-defined]
        rng = np.random.default_rng([self.config.seed, epoch])  # type: ignore[attr-defined]
        order = rng.permutation(len(self.lengths))[: self.batches_per_epoch * b]
        group = SORT_GROUP * b
        for start in range(0, len(order), group):
            part = order[start : start + group]
            order[start : start + group] = part[np.argsort(self.lengths[part], kind="stable")]
        batches = order.reshape(self.batches_per_epoch, b)
        return batches[rng.permutation(self.batches_per_epoch)]


def arriving_batches(
    items: Iterable[Any], size: int, more_ready: Callable[[], bool] | None = None
) -> Iterator[list[Any]]:
    """``items`` in lists of up to ``size``, in order; a list is cut short when ``more_ready()``
    says the next item is not here yet, so that slow input is answered as it comes."""
    pending: list[Any] = []
    for item in items:
        pending.append(item)
        if len(pending) >= size or (more_ready is not None and not more_ready()):
            yield pending
            pending = []
    if pending:
        yield pending
