"""A completion request as `charnn serve` answers it (charnn.tasks.lm.serving): the choices the
batcher writes, gathered for the response or streamed as events."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from charnn.tasks.base import Job
from charnn.tasks.lm.batcher import Row
from charnn.tasks.lm.request import Completion


class CompletionJob(Job):
    """The choices of one completion request as the batcher writes them (see charnn.tasks.base.Job);
    the batcher's thread writes, the server's reads, under one lock."""

    def __init__(self, request: Completion, service: Any, notify: Callable[[], None], prompt_tokens):  # noqa: ANN001
        self.request, self.service, self.notify = request, service, notify
        self.prompt_tokens = sum(prompt_tokens)
        count = len(request.prompts) * request.n
        self.texts = [""] * count
        self.entries: list[list[dict[str, Any]]] = [[] for _ in range(count)]
        self.streamed = [0] * count
        """Characters of each choice's logprob entries already streamed: the next event's first text_offset."""
        self.finish: list[str | None] = [None] * count
        self.drawn = 0
        self.rows: list[Row] = []
        self.lock = threading.Lock()
        self.deltas: list[tuple[int, str, list[dict[str, Any]], str | None]] = []
        self.signalled = False
        self.error: str | None = None
        self.usage_sent = False
        self.cancelled = False

    def fail(self, message: str, status: int, param: str | None = None) -> None:
        """End every choice not yet ended with ``message`` (the response: ``failure()``)."""
        self.error_status, self.error_param = status, param
        for index, reason in enumerate(self.finish):
            if reason is None:
                self._push(index, "", [], f"error: {message}")

    def echo(self, prompt_entries: list[list[dict[str, Any]]]) -> None:
        """Begin each choice with its prompt (and the prompt's logprobs) when echo asks for it;
        with nothing to generate, the choices end here."""
        request = self.request
        for i, prompt in enumerate(request.prompts):
            for k in range(request.n):
                index = i * request.n + k
                if request.echo:
                    self._push(index, prompt, list(prompt_entries[i]), None)
        if self.request.max_tokens == 0:
            for index in range(len(self.texts)):
                self._push(index, "", [], "length")

    def piece(self, row: Row, text: str, entries: list[dict[str, Any]], reason: str | None) -> None:
        """The batcher's report of one row's new text (on its thread)."""
        if reason is not None:
            with self.lock:
                self.drawn += row.drawn
        self._push(row.index, text, entries, reason)

    def _push(self, index: int, text: str, entries: list[dict[str, Any]], reason: str | None) -> None:
        with self.lock:
            if reason is not None and reason.startswith("error"):
                self.error, reason = reason.partition(": ")[2], "stop"
            self.texts[index] += text
            self.entries[index] += entries
            if reason is not None:
                self.finish[index] = reason
                self.done = all(self.finish)
            self.deltas.append((index, text, entries, reason))
            if self.signalled:
                return
            self.signalled = True
        self.notify()

    def events(self) -> list[dict[str, Any]]:
        """The chunks since the last call: one a choice, holding all its new text."""
        with self.lock:
            deltas, self.deltas, self.signalled = self.deltas, [], False
            done = self.done
        merged: dict[int, list] = {}
        for index, text, entries, reason in deltas:
            got = merged.setdefault(index, ["", [], None])
            got[0] += text
            got[1] += entries
            got[2] = reason or got[2]
        chunks = []
        for i, (text, entries, reason) in merged.items():
            choice = self._choice(i, text, entries, reason)
            if choice["logprobs"] is not None:  # offsets in the whole choice's text, as the response gives them
                choice["logprobs"]["text_offset"] = _offsets(entries, self.streamed[i])
                self.streamed[i] += sum(len(e["text"]) for e in entries)
            chunks.append({"object": "text_completion", "choices": [choice]})
        if done and self.request.include_usage and not self.usage_sent:
            self.usage_sent = True
            chunks.append({"object": "text_completion", "choices": [], "usage": self.usage()})
        return chunks

    def _choice(self, index: int, text: str, entries: list[dict[str, Any]], reason: str | None) -> dict[str, Any]:
        logprobs = None
        if self.request.logprobs is not None:
            logprobs = self._logprobs(entries)
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}

    def _logprobs(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        text = self.service.token_text
        return {
            "tokens": [e["text"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [None if e["top"] is None else {text[i]: lp for i, lp in e["top"]} for e in entries],
        }

    def response(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.failure()
        choices = []
        for index, text in enumerate(self.texts):
            choice = self._choice(index, text, self.entries[index], self.finish[index])
            if choice["logprobs"] is not None:
                choice["logprobs"]["text_offset"] = _offsets(self.entries[index])
            choices.append(choice)
        return {"object": "text_completion", "choices": choices, "usage": self.usage()}

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.drawn,
            "total_tokens": self.prompt_tokens + self.drawn,
        }

    def cancel(self) -> None:
        self.cancelled = True
        for row in self.rows:
            row.cancelled = True


def _offsets(entries: list[dict[str, Any]], at: int = 0) -> list[int]:
    """Where each entry's text begins in its choice's text, the first at ``at``."""
    offsets = []
    for entry in entries:
        offsets.append(at)
        at += len(entry["text"])
    return offsets
