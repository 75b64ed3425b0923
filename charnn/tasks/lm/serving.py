"""A language-model run under `charnn serve`: OpenAI's completions, every request's rows
stepped together (charnn.tasks.lm.batcher).

``max_tokens`` counts characters of text for every run, subword runs too (the sampler cuts
inside a token, as `charnn sample --length` does); ``usage`` counts the model's tokens.
Logprobs are the model's own (temperature 1, nothing cut), one entry per token: a character
on a char run. ``echo`` with ``logprobs`` scores the prompt as `charnn eval` scores a text:
the first token of a stream is only context; a record run's prompt is read from its boundary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from charnn.errors import ConfigError, CorpusError, RequestError
from charnn.tasks.base import Chunked, InFlight, Job, chunked, drain
from charnn.tasks.lm.batcher import Batcher, Row
from charnn.tasks.lm.cells import cell_reading
from charnn.tasks.lm.healing import Healing, Utf8Guard, heal_prime
from charnn.tasks.lm.jobs import CompletionJob
from charnn.tasks.lm.request import DEFAULT_MAX_TOKENS, Completion, parse_completion, style_error
from charnn.tasks.lm.styles import drawn_choice, parse_choice, run_styles, style_names
from charnn.text.records import RecordFormat, cut, record_cap, split, trim_separators
from charnn.tokenizers.base import spelled

SCORE_CHUNK = 256
"""Prompt tokens scored a forward pass (the logits of a subword vocabulary are large); the server's
batches step between two (charnn.tasks.worker's chores)."""


REVERSED = (
    "this run reads right to left (trained with --reverse): the server does not complete, score or read cells with "
    "it; score a text with charnn eval -m RUN, or ask a left-to-right run"
)


class CompletionService:
    """Answers /v1/completions for one loaded language-model run."""

    def __init__(self, run: Any, limits: Any, kind: str, worker: Any) -> None:
        self.run, self.limits, self.kind, self.worker = run, limits, kind, worker
        self.model, self.tokenizer = run.model.eval(), run.tokenizer
        self.device = self.model.embed.weight.device
        vocab = self.model.config.vocab_size
        self.token_bytes = [self.tokenizer.token_bytes(i) for i in range(self.tokenizer.vocab_size)]
        self.token_bytes += [b""] * (vocab - len(self.token_bytes))  # a record run's boundary spells nothing
        self.token_text = [b.decode("utf-8", errors="replace") for b in self.token_bytes]
        self.styles = style_names(run.config)
        self.batcher = Batcher(self.model)
        self.in_flight = InFlight()
        self.reader = self.model.stepper()
        """The model's own fp32 arithmetic, for /v1/cells: what each unit holds, not its int8 copy."""
        worker.add(self.batcher)

    def describe(self) -> dict[str, Any]:
        fmt = _format(self.run.config.get("task") or {})
        return {
            "kind": self.kind,
            "endpoint": "/v1/completions",
            "tokenizer": self.tokenizer.kind,
            "max_tokens_counts": "characters",
            **_described(fmt),
            "cell": self.model.config.cell,
            "layers": self.model.config.layers,
            "hidden": self.model.config.hidden,
            "styles": self.styles or None,
            "style_records": [_described(_format(s)) for s in run_styles(self.run.config)] or None,
            "reverse": bool((self.run.config.get("task") or {}).get("reverse")),
        }

    @property
    def active(self) -> int:
        """Rows stepping or waiting in the batch, and requests being scored or read (echo, /v1/cells)."""
        return self.batcher.active + self.in_flight.count

    def close(self) -> None:
        """End every completion in flight (finish reason 'stop') at the next step."""
        self.batcher.close()

    def submit(self, body: dict[str, Any], notify: Callable[[], None], endpoint: str = "completions") -> Job:
        if (self.run.config.get("task") or {}).get("reverse"):
            raise RequestError(REVERSED, param="model")
        if endpoint == "cells":
            job = Chunked(notify)
            self.worker.begin(self.in_flight.around(job.work(cell_reading(self, body))))
            return job
        request = parse_completion(body, self.limits)
        weights, task = self.style(request.style, request.seed)
        fmt = _format(task)
        boundary = self.model.boundary if fmt is not None else None
        length = request.max_tokens
        if length is None:  # the default, within the server's --max-tokens as any length asked for
            length = min(record_cap(self.run) if fmt is not None else DEFAULT_MAX_TOKENS, self.limits.max_tokens)
        if fmt is not None and length == 0:  # scoring alone: a record run's text may hold several records
            read = [self.read_text(p, fmt) for p in request.prompts]
        else:
            read = [self._spelled(_record_start(p, fmt)) for p in request.prompts]
        encoded = [np.asarray(ids, dtype=np.int64) for ids, _ in read]
        job = CompletionJob(request, self, notify, [len(ids) for ids in encoded])
        banned = self._banned(boundary, fmt)
        rows = []
        for i, ids in enumerate(encoded):
            context, owed = self._context(ids, boundary)
            for k in range(request.n):
                index = i * request.n + k
                rng = np.random.default_rng(None if request.seed is None else [request.seed % 2**64, index])
                rows.append(self._row(request, index, context, owed, length, rng, banned, boundary, weights, job))
        job.rows = rows
        if request.echo and request.logprobs is not None:  # scored a chunk at a time, then written
            prompts = [(ids, texts) for ids, (_, texts) in zip(encoded, read)]
            steps = self._scored(job, prompts, boundary, weights, length)
            self.worker.begin(self.in_flight.around(chunked(steps, lambda _: None, job.fail, lambda: job.cancelled)))
            return job
        job.echo([[] for _ in encoded])
        if length:
            self.batcher.add(rows)
        return job

    def _scored(
        self, job: CompletionJob, prompts: list[tuple[Any, list[str]]], boundary, weights, length: int
    ) -> Iterator[None]:  # noqa: ANN001,E501
        """Score each prompt (echo with logprobs), a chunk at a time, then echo them and write the rows."""
        entries = []
        for ids, texts in prompts:
            if entries:  # a turn for the others between two prompts, as between two chunks of one
                yield
            entries.append((yield from self.scoring(ids, boundary, weights, job.request.logprobs, texts)))
        job.echo(entries)
        if length:
            self.batcher.add(job.rows)

    def style(self, spec: str | None, seed: int | None) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """The style weights a request asks for (None on a run without styles), and the task
        section that style reads (its record format)."""
        task = self.run.config.get("task") or {}
        if not self.styles:
            if spec is not None:
                raise RequestError("this run was trained without styles; leave style out", param="style")
            return None, task
        try:
            choice = parse_choice(spec, self.styles) if spec else None
        except ConfigError as error:
            raise style_error(error) from None
        choice = choice or drawn_choice(self.run.config, seed)
        style = run_styles(self.run.config)[choice.main]
        return torch.tensor(choice.weights), {**task, "records": style.get("records")}

    def _context(self, ids: np.ndarray, boundary: int | None) -> tuple[torch.Tensor, bytes]:
        context, owed = heal_prime(ids, self.token_bytes) if len(ids) else ([], b"")
        if boundary is not None:
            context = [boundary, *context]
        elif not context:
            context = self.tokenizer.start_ids()
        return torch.as_tensor(np.asarray(context, dtype=np.int64), device=self.device), owed

    def _banned(self, boundary: int | None, fmt: RecordFormat | None) -> torch.Tensor:
        never = list(self.tokenizer.never_sample())
        if boundary is None and self.model.boundary is not None:
            never.append(self.model.boundary)
        if fmt is not None and fmt.spec == "line":
            never += [i for i, data in enumerate(self.token_bytes) if b"\n" in data or b"\r" in data]
        banned = torch.zeros(len(self.token_bytes), dtype=torch.bool, device=self.device)
        banned[never] = True
        return banned

    def _row(self, request: Completion, index: int, context, owed, length, rng, banned, boundary, weights, job) -> Row:  # noqa: ANN001
        row = Row(
            index=index,
            context=context,
            length=length,
            temperature=request.temperature,
            top_k=request.top_k,
            top_p=request.top_p,
            rng=rng,
            stops=request.stop,
            top_logprobs=request.logprobs,
            banned=banned,
            boundary=boundary,
            healing=Healing(self.token_bytes, owed, 1, self.device),
            utf8=Utf8Guard(self.token_bytes, 1, self.device),
            style=weights,
            on_piece=job.piece,
        )
        if weights is not None:
            row.biases = self.batcher.step.row_biases(self.model, weights)
        return row

    def read_text(self, text: str, fmt: RecordFormat | None, param: str = "prompt") -> tuple[list[int], list[str]]:
        """The ids a text to score is read as, and what each stands for in the text.

        A stream's text is its tokens. A record run's may hold several records, read as `charnn eval`
        reads them: each record's tokens, and where a separator stands, the run's boundary (the end of
        the record before it and the start of the next), which spells the separator. What `charnn eval`
        refuses (an empty record, only separators) is refused (RequestError naming ``param``)."""
        if fmt is None:
            return self._spelled(text)
        try:
            split(text, fmt, f"the {param}", minimum=1, corpus=False)
        except CorpusError as error:
            raise RequestError(str(error), param=param) from None
        pieces = cut(text, fmt)
        ids, texts = [], []
        for (record, separator), encoded in zip(
            pieces, self.tokenizer.encode_many([r for r, _ in pieces]), strict=True
        ):
            ids += [int(i) for i in encoded]
            texts += self._spelling(encoded, record)
            if separator is not None:
                ids.append(self.model.boundary)
                texts.append(separator)
        return ids, texts

    def _spelled(self, text: str) -> tuple[list[int], list[str]]:
        ids = [int(i) for i in self.tokenizer.encode(text)]
        return ids, self._spelling(ids, text)

    def _spelling(self, ids: Any, text: str) -> list[str]:
        """What each of ``text``'s tokens ``ids`` stands for in it: a character run's tokens are its characters,
        a character it never saw (read as the unknown token) included. A subword token spells the characters
        its bytes complete: where a character is read as several byte tokens, the last spells it and the others
        nothing, so that the tokens spell the text (as generated tokens do); a token it cannot place spells itself."""
        if self.tokenizer.kind == "char" and len(ids) == len(text):
            return list(text)
        pieces = spelled([self.token_bytes[int(i)] for i in ids])
        if "".join(pieces) == text:
            return pieces
        return [self.token_text[int(i)] for i in ids]

    def prompt_entries(
        self, ids: np.ndarray, boundary: int | None, weights, k: int, texts: list[str] | None = None,
    ) -> list[dict[str, Any]]:  # noqa: ANN001 # fmt: skip
        """Each prompt token's log-probability given the tokens before it, and the ``k`` most
        likely alternatives; a stream's first token is only context (None). ``texts``: what each
        token stands for in the text (``read_text``), where not its own spelling."""
        return drain(self.scoring(ids, boundary, weights, k, texts))

    def scoring(
        self, ids: np.ndarray, boundary: int | None, weights, k: int, texts: list[str] | None = None,
    ) -> Iterator[None]:  # noqa: ANN001 # fmt: skip
        """``prompt_entries``, SCORE_CHUNK tokens a chunk: yields between two, returns the entries."""
        context = ([boundary] if boundary is not None else []) + [int(i) for i in ids]
        entries: list[dict[str, Any]] = [] if boundary is not None else [{"logprob": None, "top": None}]
        tokens = torch.as_tensor(context, dtype=torch.long, device=self.device)[None]
        state = self.model.initial_state(1, self.device)
        style = None if weights is None else weights[None]
        for start in range(0, len(context) - 1, SCORE_CHUNK):
            if start:
                yield
            with torch.inference_mode():
                logits, state = self.model(tokens[:, start : start + SCORE_CHUNK], state, style=style)
                logprobs = torch.log_softmax(logits[0].float(), dim=-1)  # (C, V)
                targets = tokens[0, start + 1 : start + 1 + SCORE_CHUNK]
                logprobs = logprobs[: len(targets)]
                chosen = logprobs.gather(1, targets[:, None])[:, 0].tolist()
                top = torch.topk(logprobs, min(max(k, 1), logprobs.shape[1]), dim=-1)
            for lp, ids_, values in zip(chosen, top.indices.tolist(), top.values.tolist()):
                entries.append({"logprob": lp, "top": list(zip(ids_[:k], values[:k]))})
        for entry, token in zip(entries, ids):
            entry["token"], entry["text"] = int(token), self.token_text[int(token)]
        for entry, token in zip(entries, ids):  # separators a record text begins with bound no record: charnn eval
            if boundary is None or int(token) != boundary:  # trims them, so they are context here, not scored
                break
            entry["logprob"], entry["top"] = None, None
        if texts is not None:
            for entry, text in zip(entries, texts):
                entry["text"] = text
        return entries[: len(ids)]


def _format(task: dict[str, Any]) -> RecordFormat | None:
    spec = task.get("records")
    return RecordFormat.from_dict(spec) if spec else None


def _described(fmt: RecordFormat | None) -> dict[str, Any]:
    """A record format as /v1/models describes it (the page words and counts a score by it): its records and its
    separator's expression, None for a stream."""
    return {"records": fmt.describe() if fmt else None, "separator": fmt.pattern if fmt else None}


def _record_start(prompt: str, fmt: RecordFormat | None) -> str:
    """A record run's prompt is a record's start: separators around it are dropped (line breaks alone are no
    prompt), one inside it is refused."""
    if fmt is None:
        return prompt
    if not prompt.strip("\r\n"):
        return ""
    prompt = trim_separators(prompt, fmt)
    if re.search(fmt.pattern, prompt):
        raise RequestError(
            f"the prompt holds a record separator, but on this run ({fmt.describe()}) a prompt begins one record; "
            "give the start of a single record",
            param="prompt",
        )
    return prompt
