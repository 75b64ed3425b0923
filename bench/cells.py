"""Can the cell view find a quote cell? A run's units ranked by one span of quoted speech, as the
playground's span selection ranks them, and the top unit judged over a whole held-out passage.

    python -m bench cells RUN [--chars 3000]

RUN: a language-model run (the figure quoted in docs/benchmarks.md is for `charnn train
fantasy-prose.txt --time 10m`). The passage is the stretch of the run's held-out text with the most
quoted speech; the selection is its quotation nearest its middle, ranked against the characters
around it (charnn.tasks.lm.cells.rank_units). The top unit
of that ranking (over every layer, hidden state and, for an LSTM, cell) is then measured over the
whole passage: its mean inside all quotations and outside them, in pooled standard deviations
(each side's spread about its own mean), as the cell view ranks units.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.common import ROOT, machine

QUOTE = re.compile(r'"[^"\n]{1,400}"|“[^”\n]{1,400}”')


def passage(text: str, chars: int) -> tuple[str, np.ndarray, tuple[int, int]]:
    """The stretch of ``text`` (from a line's start, ``chars`` long) with the most quoted speech,
    its inside-quotes mask, and the selection: its quotation of at least 20 characters nearest its
    middle (so that neither the text's start nor its end stands in for "inside a quotation")."""
    quoted = np.zeros(len(text), dtype=bool)
    for m in QUOTE.finditer(text):
        quoted[m.start() : m.end()] = True
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n" and i + chars < len(text)]
    totals = np.concatenate([[0], np.cumsum(quoted)])
    start = max(starts, key=lambda i: totals[min(i + chars, len(text))] - totals[i])
    body = text[start : start + chars]
    inside = quoted[start : start + chars]
    candidates = [m for m in QUOTE.finditer(body) if m.end() - m.start() >= 20]
    selected = min(candidates, key=lambda m: abs((m.start() + m.end()) / 2 - len(body) / 2))
    return body, inside, (selected.start(), selected.end())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench cells")
    parser.add_argument("run", type=Path)
    parser.add_argument("--chars", type=int, default=3000)
    args = parser.parse_args(argv)

    from charnn.tasks import load_run
    from charnn.tasks.base import Limits
    from charnn.tasks.lm.cells import cell_values, effect_sizes, rank_units
    from charnn.tasks.lm.serving import CompletionService
    from charnn.tasks.worker import Worker

    run = load_run(args.run)
    text, inside, (a, b) = passage(run.validation_path.read_text(encoding="utf-8"), args.chars)
    service = CompletionService(run, Limits(max_cells=len(text)), "lm", Worker())
    selection = np.zeros(len(text), dtype=bool)
    selection[a:b] = True
    config = run.model.config
    best, anywhere = None, None
    for layer in range(config.layers):
        for state in ("hidden", "cell") if config.cell == "lstm" else ("hidden",):
            values = np.asarray(cell_values(service, {"input": text, "layer": layer, "state": state})["values"])
            unit, gap = rank_units(values, selection)[0]
            sizes = effect_sizes(values, inside)
            strongest = int(np.argmax(np.abs(sizes)))
            if anywhere is None or abs(sizes[strongest]) > abs(anywhere["gap_sd"]):
                anywhere = {"layer": layer + 1, "state": state, "unit": strongest, "gap_sd": float(sizes[strongest])}
            if best is None or gap > best["selection_gap_sd"]:
                column = values[:, unit]
                whole = effect_sizes(values, inside)
                best = {
                    "layer": layer + 1, "state": state, "unit": unit, "selection_gap_sd": gap,
                    "mean_inside_quotes": float(column[inside].mean()), "mean_outside": float(column[~inside].mean()),
                    "pooled_sd": float((column[inside].std() ** 2 * inside.mean() + column[~inside].std() ** 2
                                        * (1 - inside.mean())) ** 0.5),
                    "passage_gap_sd": float(whole[unit]),
                    "best_unit_over_all_quotes": int(np.argmax(np.abs(whole))),
                    "best_gap_over_all_quotes_sd": float(whole[np.argmax(np.abs(whole))]),
                }  # fmt: skip
    best["strongest_anywhere"] = anywhere
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine(), "run": str(args.run),
        "shape": config.to_dict(), "passage_chars": len(text), "quoted_chars": int(inside.sum()),
        "selection": [a, b], "selected_text": text[a:b], **best,
    }  # fmt: skip
    print(f"passage: {len(text):,} held-out characters, {int(inside.sum()):,} inside quotations")
    print(f"selection: characters {a}-{b}: {text[a:b]!r}")
    print(
        f"top unit: layer {best['layer']} {best['state']} unit {best['unit']}: {best['selection_gap_sd']:+.2f} sd "
        f"on the selection; over the passage, inside quotes {best['mean_inside_quotes']:+.3f}, outside "
        f"{best['mean_outside']:+.3f}, pooled sd {best['pooled_sd']:.3f}: {best['passage_gap_sd']:+.2f} sd"
    )
    print(
        f"(in that layer and state, the unit that best splits all the passage's quotations: unit "
        f"{best['best_unit_over_all_quotes']}, {best['best_gap_over_all_quotes_sd']:+.2f} sd; in any layer and "
        f"state: layer {anywhere['layer']} {anywhere['state']} unit {anywhere['unit']}, {anywhere['gap_sd']:+.2f} sd)"
    )
    with (ROOT / "bench" / "results" / "cells.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(result) + "\n")
