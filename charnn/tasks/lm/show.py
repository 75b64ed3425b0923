"""What `charnn show` puts in its page (charnn.serve.show): one text scored and read by a run."""

from __future__ import annotations

from typing import Any

from charnn.errors import CorpusError
from charnn.tasks.base import Limits
from charnn.tasks.lm.cells import cell_values
from charnn.tasks.lm.serving import CompletionService
from charnn.tasks.worker import Worker
from charnn.text.records import RecordFormat, split


def show_data(
    run: Any, text: str, layer: int | None, state: str, top: int = 5, style: str | None = None
) -> dict[str, Any]:
    """What `charnn show` puts in its page: ``text`` scored (each token's log-probability and the
    ``top`` alternatives, as /v1/completions with echo gives them) and read (a layer's values, as
    /v1/cells gives them). A style run reads it under ``style`` (a name or a blend; default: its first
    style), which the page names; RequestError where the run has no such style, or no styles."""
    service = CompletionService(run, Limits(max_cells=len(text) or 1), "lm", Worker())
    if style is None and service.styles:
        style = service.styles[0]
    body = {"input": text, "state": state}
    if layer is not None:
        body["layer"] = layer
    if style is not None:
        body["style"] = style
    weights, task = service.style(style, 0)
    fmt = RecordFormat.from_dict(task["records"]) if task.get("records") else None
    if fmt is not None:  # what charnn eval refuses (an empty record, only separators), the page refuses too
        split(text, fmt, "the text", minimum=1, corpus=False)
    elif len(text) < 2:
        raise CorpusError("the text is too short to show: it needs at least two characters")
    cells = cell_values(service, body)
    ids, texts = service.read_text(text, fmt)  # a record run's separators read as its boundary
    boundary = service.model.boundary if fmt is not None else None
    entries = service.prompt_entries(ids, boundary, weights, top, texts)
    score = [
        {
            "text": e["text"],
            "logprob": e["logprob"],
            "top": None if e["top"] is None else [[service.token_text[i], lp] for i, lp in e["top"]],
        }
        for e in entries
    ]
    records = fmt.describe() if fmt is not None else None  # the page words its figure as charnn eval scores records
    separator = fmt.pattern if fmt is not None else None  # and counts each separator as one character, as eval does
    return {"model": run.folder.name, "text": text, "score": score, "cells": cells, "records": records,
            "separator": separator, "style": style}  # fmt: skip
