"""What a classifier and a tagger share under `charnn serve`: a request's ``input`` (a text or
a list of them) checked against the server's caps, then answered on the server's worker thread a
few texts at a time (ANSWER_CHUNK), between the steps of the completions it writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from charnn.errors import RequestError
from charnn.tasks.base import Chunked, InFlight, Job

ANSWER_CHUNK = 2000
"""Characters of input answered between two steps of the server's batches (at least one text)."""


class EncoderService:
    """Answers one encoder run's endpoint; a kind gives ``answer(inputs) -> list of results``."""

    names_key: str = "labels"

    def __init__(self, run: Any, limits: Any, kind: str, worker: Any) -> None:
        self.run, self.limits, self.kind, self.worker = run, limits, kind, worker
        self.in_flight = InFlight()
        self.run.model.eval()

    @property
    def active(self) -> int:
        """Requests being answered."""
        return self.in_flight.count

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "endpoint": f"/v1/{self.kind}",
            "tokenizer": self.run.tokenizer.kind,
            self.names_key: list(self.run.config["task"][self.names_key]),
        }

    def submit(self, body: dict[str, Any], notify: Callable[[], None], endpoint: str = "") -> Job:
        unknown = sorted(set(body) - {"model", "input", "user", *self.options})
        if unknown:
            reads = ", ".join(("model", "input", *self.options))
            raise RequestError(f"unknown parameter {unknown[0]!r}; this endpoint reads {reads}", param=unknown[0])
        for option in self.options:
            if not isinstance(body.get(option, False), bool):
                raise RequestError(f"{option} must be true or false", param=option)
        inputs = self.inputs(body.get("input"))
        job = Chunked(notify)
        options = {option: body.get(option, False) for option in self.options}
        self.worker.begin(self.in_flight.around(job.work(self._answering(inputs, options))))
        return job

    def _answering(self, inputs: list[Any], options: dict[str, bool]) -> Iterator[None]:
        """The answer, ANSWER_CHUNK characters of input at a time (a yield between two)."""
        results: list[dict[str, Any]] = []
        start = 0
        while start < len(inputs):
            end, size = start, 0
            while end < len(inputs) and (end == start or size + _size(inputs[end]) <= ANSWER_CHUNK):
                size += _size(inputs[end])
                end += 1
            results += self.answer(inputs[start:end], options)
            start = end
            if start < len(inputs):
                yield
        data = [{"object": f"{self.kind}.result", "index": i, **result} for i, result in enumerate(results)]
        return {"object": "list", "data": data}

    def inputs(self, value: Any) -> list[Any]:
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(self.one_input(t) for t in texts):
            raise RequestError(f"input must be {self.input_noun}", param="input")
        if len(texts) > self.limits.max_inputs:
            raise RequestError(
                f"input holds {len(texts)} texts; the server allows {self.limits.max_inputs} a request", param="input"
            )
        for text in texts:
            if (size := _size(text)) > self.limits.max_prompt:
                raise RequestError(
                    f"an input is {size:,} characters; the server's --max-prompt allows {self.limits.max_prompt:,}",
                    param="input",
                )
        return texts

    input_noun = "a string or a non-empty list of strings"
    options: tuple[str, ...] = ()
    """The endpoint's own true-or-false fields, passed to ``answer``."""

    def one_input(self, value: Any) -> bool:
        return isinstance(value, str)

    def answer(self, inputs: list[Any], options: dict[str, bool]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _size(text: str | list[str]) -> int:
    """Characters of an input: a text, or a sentence given as its tokens (a space between two)."""
    return len(text) if isinstance(text, str) else sum(len(t) + 1 for t in text)
