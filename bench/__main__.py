"""python -m bench NAME [ARGS]: run one benchmark; `python -m bench all [--with-quality]` runs
the quick ones (and the 5-minute quality run); `python -m bench` lists them."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "throughput": "training chars/s against a minimal nn.LSTM loop, and MFU",
    "sampling": "generation chars/s (1 and 64 samples), time to first character, --help time",
    "encoding": "character tokenizer encoding MB/s",
    "memory": "peak RSS of `charnn train` on a 1 GB corpus",
    "quality": "validation loss of `charnn train` with the defaults at a time budget (5+ minutes)",
    "gallery": "the three styles trained 15 minutes each: held-out bits/char, novel records, samples (45+ minutes)",
    "tokenizers": "char vs BPE 1k/4k vs unigram 4k at one time budget: held-out bits/char, chars/s (40+ minutes)",
    "classify": "sentiment-mr: charnn classify vs a bigram logistic regression, warm start vs scratch, predict speed",
    "styles": "one conditional model on four styles vs four single-style models at equal steps; fidelity, blend",
    "records": "record-run training chars/s: records in columns against end to end in each row",
    "tag": "pos-ewt and ner-wnut17: charnn tag vs most-frequent-tag / memorised-span baselines, predict speed",
    "serve": "charnn serve under load: one stream vs `charnn sample`, 64 streams, 2,000 mixed requests",
    "steps": "one stepper step of a 2x512 LSTM in fp32, bf16 and int8, for 1, 8 and 64 rows",
    "cells": "can the cell view find a quote cell: units ranked by a quoted span of a run's held-out text",
}
QUICK = ("throughput", "sampling", "encoding", "memory")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        for name, what in BENCHMARKS.items():
            print(f"  {name:<10} {what}")
        return
    name = sys.argv[1]
    if name == "all":
        unknown = [arg for arg in sys.argv[2:] if arg != "--with-quality"]
        if unknown:  # `all --help` started the benchmarks, which write results rows
            print(f"usage: python -m bench all [--with-quality]: runs {', '.join(QUICK)} (and quality)")
            sys.exit(0 if unknown[0] in ("-h", "--help") else 2)
        for each in (*QUICK, *(("quality",) if "--with-quality" in sys.argv else ())):
            print(f"\n## {each}\n", flush=True)
            importlib.import_module(f"bench.{each}").main([])
        return
    if name not in BENCHMARKS:
        sys.exit(f"bench: unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}")
    importlib.import_module(f"bench.{name}").main(sys.argv[2:])


if __name__ == "__main__":
    main()
