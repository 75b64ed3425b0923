"""What each unit of a layer holds as a language model reads a text: `charnn serve`'s /v1/cells,
and `charnn show`'s cell view.

A unit's value after each token is the layer's hidden state (``h``) or, in an LSTM, its cell
(``c``), read one token at a time in the model's own fp32 arithmetic, from the zero state (a
record run's from a record's start), as the model reads when it writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from charnn.errors import ConfigError, RequestError, as_json
from charnn.tasks.base import drain
from charnn.text.records import RecordFormat

TRACE_CHUNK = 256
"""Tokens read between two yields of ``tracing`` (a server's batches step between two)."""
DECIMALS = 4
"""Places a value is rounded to in an answer (what a colour can show, at a fraction of the bytes)."""


def cell_values(service: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The answer to a /v1/cells request: each token of ``input`` and the layer's values after it."""
    return drain(cell_reading(service, body))


def cell_reading(service: Any, body: dict[str, Any]) -> Iterator[None]:
    """``cell_values`` a chunk at a time: the request is checked at once (RequestError), then the
    generator returned reads the text TRACE_CHUNK tokens a chunk and returns the answer."""
    unknown = sorted(set(body) - {"model", "input", "layer", "state", "style", "user"})
    if unknown:
        raise RequestError(
            f"unknown parameter {unknown[0]!r}; /v1/cells reads model, input, layer, state and style", param=unknown[0]
        )
    text, config = body.get("input"), service.model.config
    if not isinstance(text, str) or not text:
        raise RequestError("input must be a non-empty string: the text to read", param="input")
    if len(text) > service.limits.max_cells:
        raise RequestError(
            f"input is {len(text):,} characters; the server's --max-cells allows {service.limits.max_cells:,}",
            param="input",
        )
    layer = body.get("layer") if body.get("layer") is not None else config.layers - 1  # null: the default
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < config.layers:
        raise RequestError(
            f"layer must be a whole number from 0 to {config.layers - 1}, got {as_json(layer)}", param="layer"
        )
    state = body.get("state") if body.get("state") is not None else "hidden"  # null: the default, as elsewhere
    states = ("hidden", "cell") if config.cell == "lstm" else ("hidden",)
    if state not in states:
        raise RequestError(f"state must be one of {', '.join(states)} on this {config.cell} run", param="state")
    if body.get("style") is not None and not isinstance(body.get("style"), str):
        raise RequestError("style must be a style's name or a blend like 'a=0.5,b=0.5'", param="style")
    try:
        weights, task = service.style(body.get("style"), 0)
    except ConfigError as error:
        raise RequestError(str(error), param="style") from None
    fmt = RecordFormat.from_dict(task["records"]) if task.get("records") else None
    ids, texts = service.read_text(text, fmt, "input")  # a record run's separators read as its boundary
    boundary = service.model.boundary if fmt is not None else None
    steps = tracing(service.model, service.reader, ids, layer, state == "cell", weights, boundary)
    return _answer(steps, layer, state, texts)


def _answer(steps: Iterator[None], layer: int, state: str, texts: list[str]) -> Iterator[None]:
    values = yield from steps
    rounded = np.round(values.astype(np.float64), DECIMALS)  # float32 would print 0.1120000034570694
    rows: list[list[float]] = []
    for start in range(0, len(rounded), TRACE_CHUNK):  # as Python lists a chunk a turn too (60,000 x 512: 2 s)
        rows += rounded[start : start + TRACE_CHUNK].tolist()
        yield
    return {"object": "cells", "layer": layer, "state": state, "units": int(values.shape[1]), "tokens": texts,
            "values": rows}  # fmt: skip


def tracing(
    model: Any, step: Any, ids: list[int], layer: int, cell: bool, weights: Any, boundary: int | None
) -> Iterator[None]:
    """Returns (T, H): layer ``layer``'s hidden state (``cell``: the LSTM's cell) after each of ``ids``; a
    record run (``boundary``) starts from its boundary, and restarts from zeros at each one in ``ids``, as it
    trained. Yields every TRACE_CHUNK tokens."""
    with torch.inference_mode():
        device = model.embed.weight.device
        biases = step.row_biases(model, weights) if weights is not None else None
        state = model.initial_state(1, device)
        if boundary is not None:
            _, state = step(torch.tensor([boundary], device=device), state, biases)
        out = torch.empty(len(ids), model.config.hidden)
        tokens = torch.tensor(ids, dtype=torch.long, device=device)
    for start in range(0, len(ids), TRACE_CHUNK):
        with torch.inference_mode():
            for t in range(start, min(start + TRACE_CHUNK, len(ids))):
                if boundary is not None and ids[t] == boundary:
                    state = model.initial_state(1, device)
                _, state = step(tokens[t : t + 1], state, biases)
                out[t] = state[layer][1 if cell else 0][0, 0].float().cpu()
        if start + TRACE_CHUNK < len(ids):
            yield
    return out.numpy()


def rank_units(values: np.ndarray, inside: np.ndarray) -> list[tuple[int, float]]:
    """Units by how clearly they split the selection from the characters around it, clearest first
    (LSTMVis's selection, extended to several spans and to units that are off where the others are
    on; the playground's cell view ranks the same way): the difference of the means inside the
    selected spans and in the characters around them (around each span, as many before it and after
    it as it holds; spans that touch are one), in pooled standard deviations (Cohen's d: each side's
    spread about its own mean), ranked by size whatever its sign. Around, not the whole text: a
    quote unit is on in the text's other quotations too, and a unit that drifts over the text is
    high or low on any short span. Several spans: one short span is matched by chance by some of a
    layer's hundreds of units, several quotations rarely (docs/benchmarks.md#finding-a-quote-cell).
    ``values`` (T, H), ``inside`` (T,) bool. Gaps are signed: a unit off inside the spans has a
    negative one."""
    if not inside.any() or inside.all():
        raise ValueError("the selection must hold some of the text and leave some of it out")
    near = np.zeros(len(inside), dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[False], inside, [False]]).astype(np.int8)))
    for start, end in zip(edges[::2].tolist(), edges[1::2].tolist()):
        near[max(0, 2 * start - end) : min(len(inside), 2 * end - start)] = True
    gaps = effect_sizes(values[near], inside[near]).tolist()
    return sorted(enumerate(gaps), key=lambda pair: -abs(pair[1]))


SPREAD_FLOOR = 10.0**-DECIMALS
"""The least pooled spread a gap is divided by: what an answer's rounding can tell apart. Below it a
unit is flat (a saturated cell's tanh), and its gap would be rounding noise blown up."""


def effect_sizes(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Each unit's (mean inside - mean outside) / pooled standard deviation (at least SPREAD_FLOOR): (H,)."""
    a, b = values[inside], values[~inside]
    pooled = np.sqrt((a.var(axis=0) * len(a) + b.var(axis=0) * len(b)) / len(values))
    return (a.mean(axis=0) - b.mean(axis=0)) / np.maximum(pooled, SPREAD_FLOOR)
