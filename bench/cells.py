"""Can the cell view find a quote cell? A run's units ranked by selections of quoted speech, as the
playground's span selection ranks them, and the top unit judged over a whole held-out passage.

    python -m bench cells RUN [--chars 3000] [--draws 20]

RUN: a language-model run (the figures quoted in docs/benchmarks.md are for `charnn train
fantasy-prose.txt --time 10m`). The passage is the stretch of the run's held-out text with the most
quoted speech. Selections of its quotations (of at least 20 characters) are ranked against the
characters around them (charnn.tasks.lm.cells.rank_units): the one quotation nearest the passage's
middle, the five nearest it, and every quotation of the passage; and, to show how much rests on
which quotations a person picks, ``--draws`` random picks (seeded) of one, three and five. The top
unit of each ranking (over every layer; hidden state h and, for an LSTM, cell c and tanh(c), as the
page offers them) is then measured over the whole passage: its mean inside all quotations and
outside them, in pooled standard deviations (each side's spread about its own mean). The check:
two standard deviations, either sign.

Quotations are found as a reader finds them in hard-wrapped prose (the corpora map typographic
quotes to ASCII): within each paragraph, double quotes alternate open and close, a quotation may run
across line breaks, and one left open at a paragraph's end (speech that goes on in the next
paragraph, which opens it again) ends there. Single quotes are not read: they are apostrophes too.
(Before 2026-12-07 quotations were found one line at a time, which missed every quotation broken
across lines and read the narration between two of them on one line as a quotation.)
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.common import ROOT, machine

PARAGRAPH = re.compile(r"\r?\n[ \t\r]*\n")


def quotations(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each double-quoted stretch of ``text``, both quote marks included: within a
    paragraph quotes alternate open and close (across line breaks); one open at the paragraph's end
    closes there. “curly” quotes open and close as they say. ``text`` starts a paragraph."""
    spans: list[tuple[int, int]] = []
    starts = [0] + [m.end() for m in PARAGRAPH.finditer(text)]
    ends = [m.start() for m in PARAGRAPH.finditer(text)] + [len(text)]
    for start, end in zip(starts, ends):
        opened = None
        for i in range(start, end):
            c = text[i]
            if opened is None and c in '"“':
                opened = i
            elif opened is not None and c in '"”':
                spans.append((opened, i + 1))
                opened = None
        if opened is not None and end > opened + 1:
            spans.append((opened, end))
    return spans


def passage(text: str, chars: int) -> tuple[str, np.ndarray, tuple[int, int]]:
    """The stretch of ``text`` (from a paragraph's start, ``chars`` long) with the most quoted speech,
    its inside-quotes mask, and the selection: its quotation of at least 20 characters nearest its
    middle (so that neither the text's start nor its end stands in for "inside a quotation")."""
    found = quotations(text)
    quoted = np.zeros(len(text), dtype=bool)
    for a, b in found:
        quoted[a:b] = True
    starts = [0] + [m.end() for m in PARAGRAPH.finditer(text) if m.end() + chars <= len(text)]
    totals = np.concatenate([[0], np.cumsum(quoted)])
    start = max(starts, key=lambda i: totals[min(i + chars, len(text))] - totals[i])
    body = text[start : start + chars]
    inside = quoted[start : start + chars]
    candidates = [(a - start, b - start) for a, b in found if a >= start and b <= start + chars and b - a >= 20]
    selected = min(candidates, key=lambda span: abs(sum(span) / 2 - len(body) / 2))
    return body, inside, selected


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench cells")
    parser.add_argument("run", type=Path)
    parser.add_argument("--chars", type=int, default=3000)
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args(argv)

    from charnn.tasks import load_run
    from charnn.tasks.base import Limits
    from charnn.tasks.lm.cells import cell_values, effect_sizes, rank_units
    from charnn.tasks.lm.serving import CompletionService
    from charnn.tasks.worker import Worker

    run = load_run(args.run)
    text, inside, _ = passage(run.validation_path.read_text(encoding="utf-8"), args.chars)
    service = CompletionService(run, Limits(max_cells=len(text)), "lm", Worker())
    config = run.model.config
    views = {}
    for layer in range(config.layers):
        views[(layer, "hidden")] = np.asarray(cell_values(service, {"input": text, "layer": layer})["values"])
        if config.cell == "lstm":
            cell = np.asarray(cell_values(service, {"input": text, "layer": layer, "state": "cell"})["values"])
            views[(layer, "cell")], views[(layer, "tanh")] = cell, np.tanh(cell)
    settings, results = run.config.get("training") or {}, run.config.get("results") or {}
    trained = {
        "time_budget": settings.get("time_budget"), "steps_budget": settings.get("steps"),
        "seq_len": settings.get("seq_len"), "seed": settings.get("seed"), "steps": results.get("steps"),
        "elapsed_seconds": results.get("elapsed_seconds"), "val_bits_per_char": results.get("val_bits_per_char"),
    }  # fmt: skip
    budget = f"{settings['time_budget']:.0f} s" if settings.get("time_budget") else f"{settings.get('steps')} steps"
    bits = results.get("val_bits_per_char", float("nan"))
    print(f"run: {budget} budget, {results.get('steps', 0):,} steps, {bits:.3f} held-out bits/char")
    every = quotations(text)
    spans = [(a, b) for a, b in every if b - a >= 20]
    by_middle = sorted(spans, key=lambda span: abs(sum(span) / 2 - len(text) / 2))
    picks = {"one": by_middle[:1], "five": by_middle[:5], "every": every}
    rng = np.random.default_rng(0)
    draws = {
        k: [[spans[i] for i in rng.choice(len(spans), k, replace=False)] for _ in range(args.draws)] for k in (1, 3, 5)
    }

    def mask(selected: list[tuple[int, int]]) -> np.ndarray:
        out = np.zeros(len(text), dtype=bool)
        for a, b in selected:
            out[a:b] = True
        return out

    results = {}
    print(
        f"passage: {len(text):,} held-out characters, {int(inside.sum()):,} inside {len(every)} "
        f"quotations ({len(spans)} of 20 characters or more)\n"
        f"the top unit of a selection, over the passage in pooled sd (inside quotes - outside); random picks whose "
        f"top unit reaches 2 sd (of {args.draws})\n"
        f"{'layer, values':16} {'one quotation':>22} {'five':>22} {'every quotation':>22} {'1':>3} {'3':>3} {'5':>3}"
        f" {'strongest unit':>20}"
    )
    for (layer, state), values in views.items():
        whole = effect_sizes(values, inside)

        def top(selected: list[tuple[int, int]], values=values, whole=whole) -> dict:
            unit, gap = rank_units(values, mask(selected))[0]
            column = values[:, unit]
            return {
                "unit": unit, "selection_gap_sd": round(gap, 3), "passage_gap_sd": round(float(whole[unit]), 3),
                "mean_inside_quotes": round(float(column[inside].mean()), 4),
                "mean_outside": round(float(column[~inside].mean()), 4),
            }  # fmt: skip

        tops = {name: top(selected) for name, selected in picks.items()}
        found = {str(k): sum(abs(top(pick)["passage_gap_sd"]) >= 2 for pick in chosen) for k, chosen in draws.items()}
        strongest = int(np.argmax(np.abs(whole)))
        best = {"unit": strongest, "gap_sd": round(float(whole[strongest]), 3)}
        results[f"{layer + 1} {state}"] = {**tops, "draws_at_2_sd": found, "strongest": best}
        cells = [f"unit {t['unit']} {t['passage_gap_sd']:+6.2f} sd" for t in tops.values()]
        print(
            f"{f'{layer + 1} {state}':16} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22} "
            + " ".join(f"{found[k]:>3}" for k in ("1", "3", "5"))
            + f" {f'unit {strongest} {whole[strongest]:+6.2f} sd':>20}"
        )
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine(), "run": str(args.run),
        "shape": config.to_dict(), "training": trained, "passage_chars": len(text), "quoted_chars": int(inside.sum()),
        "quotations": len(every), "quotations_of_20_or_more": len(spans), "quotes": "by paragraph",
        "draws": args.draws, "views": results,
    }  # fmt: skip
    with (ROOT / "bench" / "results" / "cells.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(result) + "\n")
