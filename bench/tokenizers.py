"""Tokenizers at a time budget: char, BPE 1k, BPE 4k and unigram 4k trained on the same
corpus for the same time, with hidden sizes chosen so that every model has about as many
parameters as the char model with the defaults; then the exact held-out bits per
character and per byte (`charnn eval --json`) and the training characters per second.

    python -m bench tokenizers [--time 10m] [--corpus fantasy-prose.txt] [--only bpe-1024 ...]
                               [--char-hidden 384] [--slice CHARS] [--no-record] [-- extra train args]

Quick check that it works: python -m bench tokenizers --time 10s --slice 300000 --no-record
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import charnn, corpus, eval_json, machine, record

CONFIGS = (("char", None), ("bpe", 1024), ("bpe", 4096), ("unigram", 4096))
"""(tokenizer, vocabulary size) pairs compared; None: the corpus's alphabet."""
TOLERANCE = 0.10
"""Parameter counts must lie within this fraction of the char model's."""
EVAL_ARGS = ("--eval-every", "1000")
"""Validation time counts in the budget, and a char model has ~3x more held-out tokens to
score than a subword one: rare periodic evaluations keep that from deciding the comparison.
Extra arguments after -- come later and win."""


def label(kind: str, vocab: int | None) -> str:
    return kind if vocab is None else f"{kind}-{vocab}"


def parameters(vocab_size: int, hidden: int) -> int:
    from charnn.config import ModelConfig
    from charnn.model import RecurrentLM, count_parameters

    return count_parameters(RecurrentLM(ModelConfig(vocab_size=vocab_size, hidden=hidden)))


def matching_hidden(vocab_size: int, target: int) -> tuple[int, int]:
    """The hidden width (a multiple of 8) whose model comes closest to ``target`` parameters."""
    best = min(range(8, 2049, 8), key=lambda h: abs(_estimate(vocab_size, h) - target))
    candidates = [h for h in (best - 8, best, best + 8) if h >= 8]
    hidden = min(candidates, key=lambda h: abs(parameters(vocab_size, h) - target))
    return hidden, parameters(vocab_size, hidden)


def _estimate(vocab: int, hidden: int, embed: int = 64) -> int:
    """Parameters of the default 2-layer LSTM, without building it (the search tries many widths)."""
    lstm = 4 * hidden * (embed + hidden + 2) + 4 * hidden * (2 * hidden + 2)
    return vocab * embed + lstm + vocab * (hidden + 1)


def mean_chars_per_sec(run: Path) -> float:
    speeds = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry.get("event") == "train":
            speeds.append(entry["chars_per_sec"])
    return statistics.fmean(speeds) if speeds else math.nan


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench tokenizers")
    parser.add_argument("--time", default="10m", help="training budget per model")
    parser.add_argument("--corpus", default="fantasy-prose.txt")
    parser.add_argument("--char-hidden", type=int, default=None, help="hidden width of the char model [default: 384]")
    parser.add_argument("--only", nargs="*", help="run only these, e.g. char bpe-1024")
    parser.add_argument("--slice", type=int, default=None, help="use only the corpus's first CHARS (a quick check)")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/results/tokenizers.jsonl")
    parser.add_argument("extra", nargs="*", help="extra `charnn train` arguments (after --)")
    args = parser.parse_args(argv)
    from charnn.config import ModelConfig

    source = corpus(args.corpus)
    configs = [c for c in CONFIGS if not args.only or label(*c) in args.only]
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        text_path = source
        text = source.read_text(encoding="utf-8")
        if args.slice:
            text = text[: args.slice]
            text_path = Path(tmp) / source.name
            text_path.write_text(text, encoding="utf-8")
        char_vocab = len(set(text)) + 1  # the char tokenizer: the alphabet and the unknown token
        char_hidden = args.char_hidden or ModelConfig(vocab_size=2).hidden
        target = parameters(char_vocab, char_hidden)
        print(f"corpus: {args.corpus} ({len(text):,} chars, last 10% held out); budget {args.time} per model")
        print(f"target: {target:,} parameters (char model, hidden {char_hidden}); each within {TOLERANCE:.0%}")
        rows = [
            train_and_score(kind, vocab, text_path, Path(tmp), char_hidden, target, args) for kind, vocab in configs
        ]
    print()
    print(table(rows))
    best = min(rows, key=lambda r: r["bits_per_char"])
    print(f"\nlowest held-out bits/char: {best['tokenizer']} (vocab {best['vocab']}), {best['bits_per_char']:.4f}")
    if args.no_record:
        return
    settings = {"corpus": args.corpus, "slice": args.slice, "time": args.time, "extra": args.extra}
    record("tokenizers", settings, {"target_params": target, "rows": rows})


def train_and_score(
    kind: str, vocab: int | None, text: Path, tmp: Path, char_hidden: int, target: int, args: argparse.Namespace
) -> dict:
    """Train one model at the budget through the CLI, then score its held-out text exactly."""
    hidden, params = (char_hidden, target) if vocab is None else matching_hidden(vocab, target)
    assert abs(params - target) <= TOLERANCE * target, f"{label(kind, vocab)}: {params} parameters"
    run = tmp / label(kind, vocab)
    vocab_args = [] if vocab is None else ["--vocab-size", vocab]
    command = ["train", text, "--tokenizer", kind, *vocab_args, "--hidden", hidden]
    command += ["--val-fraction", "0.1", "--time", args.time, "--out", run, *EVAL_ARGS, *args.extra]
    print(f"{label(kind, vocab)}: charnn {' '.join(map(str, command))}", flush=True)
    start = time.perf_counter()
    charnn(*command)
    wall = time.perf_counter() - start
    metrics = eval_json(run)
    config = json.loads((run / "config.json").read_text())
    data = config.get("data", {})
    return {
        "tokenizer": kind,
        "vocab": config["model"]["vocab_size"],
        "hidden": hidden,
        "params": params,
        "bits_per_char": metrics["bits_per_char"],
        "bits_per_byte": metrics["bits_per_byte"],
        "chars_per_token": data.get("train_chars", math.nan) / data.get("train_tokens", math.nan),
        "train_chars_per_sec": mean_chars_per_sec(run),
        "steps": config["results"]["steps"],
        "wall_seconds": round(wall, 1),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| tokenizer | vocab | params | held-out bits/char | bits/byte | training chars/s | steps |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        speed = r["train_chars_per_sec"]
        speed_text = "n/a" if math.isnan(speed) else f"{speed / 1000:.1f}k"  # n/a: too few steps to log one
        lines.append(
            f"| {r['tokenizer']} | {r['vocab']:,} | {r['params'] / 1e6:.2f}M (hidden {r['hidden']}) "
            f"| {r['bits_per_char']:.3f} | {r['bits_per_byte']:.3f} | {speed_text} | {r['steps']:,} |"
        )
    return "\n".join(lines)
