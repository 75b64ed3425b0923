"""One model, many styles: a conditional model against four single-style models (issue 16).

Four named corpora (fantasy prose, Beeton's recipes, paint names, tiny shakespeare), each
fetched with `charnn corpus get` (from --mirror, default ../shared/corpora/upstream), so that
recipes and paint names are record styles with no flag. Then, all with charnn's defaults:

- four single-style runs, `charnn train TEXT --steps N`;
- one conditional run, `charnn train --style NAME=TEXT ... --steps 4N`: a quarter of the batch's
  rows reads each style, so it reads as much of each style as each single-style run does;
- held-out bits per character of both on each style's same held-out text (the runs split each
  corpus the same way: checked), `charnn eval --style NAME` against `charnn eval`;
- style fidelity: 100 samples asked in each style (300 characters of prose, or whole records),
  each scored by the four single-style models (the judge); a sample is faithful when its own
  style's model gives it the fewest bits per character;
- blending: 100 samples of `--style fantasy=0.5,shakespeare=0.5`, and the pure ones, placed by
  the judges' log-likelihood ratio (bits/char under shakespeare's model minus under fantasy's).

    python -m bench styles [--steps 1500] [--mirror DIR] [--work DIR [--reuse]]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import warnings
from pathlib import Path

from bench.common import SHARED_CORPORA, charnn, eval_json, machine, record

STYLES = ("fantasy", "recipes", "paint-names", "shakespeare")
PROSE_CHARS = 300
SAMPLES = 100
SEED = 7


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench styles")
    parser.add_argument("--steps", type=int, default=1500, help="steps of each single-style run (the conditional: 4x)")
    parser.add_argument("--mirror", default=str(SHARED_CORPORA / "upstream"))
    parser.add_argument("--work", help="keep the runs in this folder")
    parser.add_argument("--reuse", action="store_true", help="score and sample the runs already in --work")
    args = parser.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="charnn-styles-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["CHARNN_CACHE"] = str(work / "cache")
    texts = {name: Path(charnn("corpus", "get", name, "--mirror", args.mirror).stdout.strip()) for name in STYLES}
    single = {name: work / f"single-{name}" for name in STYLES}
    cond = work / "conditional"
    n = args.steps
    if not args.reuse:
        for name in STYLES:
            print(f"$ charnn train {name}.txt --steps {n}", flush=True)
            charnn("train", texts[name], "--steps", n, "--out", single[name], "--overwrite", capture=False)
        styles = [arg for name in STYLES for arg in ("--style", f"{name}={texts[name]}")]
        print(f"$ charnn train {' '.join(f'--style {s}={s}.txt' for s in STYLES)} --steps {4 * n}", flush=True)
        charnn("train", *styles, "--steps", 4 * n, "--out", cond, "--overwrite", capture=False)

    # Held-out bits per character, on the same held-out text.
    held: dict[str, dict[str, float]] = {}
    config = json.loads((cond / "config.json").read_text(encoding="utf-8"))
    kept = (cond / "validation.txt").read_text(encoding="utf-8")
    for style in config["task"]["styles"]:
        name = style["name"]
        start, end = style["validation_span"]
        if kept[start:end] != (single[name] / "validation.txt").read_text(encoding="utf-8"):
            raise SystemExit(f"bench: {name}: the conditional and single-style runs hold out different text")
        ours = json.loads(charnn("eval", "--json", "-m", cond, "--style", name).stdout)["bits_per_char"]
        alone = eval_json(single[name])["bits_per_char"]
        held[name] = {"single": alone, "conditional": ours, "ratio": ours / alone}

    # Samples: each style, and the fantasy/shakespeare blend.
    samples = {name: _samples(cond, name) for name in STYLES}
    blend = "fantasy=0.5,shakespeare=0.5"
    samples["blend"] = _samples(cond, blend, prose=True)
    judges = _judges(single)
    scores = {
        key: [{j: _bits(run, text) for j, run in judges.items()} for text in texts_] for key, texts_ in samples.items()
    }
    fidelity = {name: sum(min(s, key=s.get) == name for s in scores[name]) / len(scores[name]) for name in STYLES}
    llr = {
        key: sum(s["shakespeare"] - s["fantasy"] for s in scores[key]) / len(scores[key])
        for key in ("fantasy", "blend", "shakespeare")
    }
    between = min(llr["fantasy"], llr["shakespeare"]) < llr["blend"] < max(llr["fantasy"], llr["shakespeare"])

    results = {
        "held_out_bits_per_char": held,
        "worst_ratio": max(h["ratio"] for h in held.values()),
        "lower_on": [name for name, h in held.items() if h["ratio"] < 1],
        "fidelity": fidelity,
        "blend_llr": llr,
        "blend_between": between,
        "examples": {key: texts_[:2] for key, texts_ in samples.items()},
    }
    record("styles", {"steps_single": n, "steps_conditional": 4 * n, "samples": SAMPLES, "seed": SEED}, results)
    _report(results, n)


def _samples(run: Path, style: str, prose: bool | None = None) -> list[str]:
    """SAMPLES samples in ``style``: whole records for a record style, PROSE_CHARS characters of prose."""
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    records = {s["name"]: s.get("records") for s in config["task"]["styles"]}
    length = [] if records.get(style) and not prose else ["--length", PROSE_CHARS]
    out = charnn("sample", "-m", run, "--style", style, "-n", SAMPLES, "--seed", SEED, "--json", *length).stdout
    return [s["text"] for s in json.loads(out)["samples"]]


def _judges(single: dict[str, Path]) -> dict:
    from charnn.tasks import load_run

    return {name: load_run(folder) for name, folder in single.items()}


def _bits(run, text: str) -> float:  # noqa: ANN001
    """Bits per character of ``text`` under a single-style run: as its records on a record run
    (empty ones skipped: any text can be scored), else as a stream from its first character."""
    from charnn.tasks.lm.evaluate import evaluate_records, evaluate_tokens
    from charnn.text.records import record_format

    fmt = record_format(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # characters a judge never saw are its unknown token: costly, as they should be
        if fmt is None:
            return evaluate_tokens(run.model, run.tokenizer, text if len(text) > 1 else text + "\n").bits_per_char
        parts = [r for r in re.split(fmt.pattern, text.strip("\r\n")) if r.strip()] or [text or " "]
        return evaluate_records(run.model, run.tokenizer, parts).bits_per_char


def _report(results: dict, n: int) -> None:
    print(f"\nmachine: {machine()}; single-style runs {n} steps each, the conditional run {4 * n} steps")
    print(f"{'style':<12} {'single':>8} {'conditional':>12} {'ratio':>7} {'fidelity':>9}")
    for name, h in results["held_out_bits_per_char"].items():
        print(
            f"{name:<12} {h['single']:>8.4f} {h['conditional']:>12.4f} {h['ratio']:>7.4f} "
            f"{results['fidelity'][name]:>9.0%}"
        )
    llr = results["blend_llr"]
    print(
        "blend fantasy=0.5,shakespeare=0.5, judges' log-likelihood ratio (bits/char, shakespeare's minus fantasy's): "
        f"fantasy samples {llr['fantasy']:+.3f}, blend {llr['blend']:+.3f}, shakespeare samples "
        f"{llr['shakespeare']:+.3f} ({'between' if results['blend_between'] else 'NOT between'})"
    )
