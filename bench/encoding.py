"""Character tokenizer encoding speed, on tinyshakespeare repeated to --megabytes.

python -m bench encoding [--megabytes 100]
"""

from __future__ import annotations

import argparse
import time

from bench.common import corpus, machine, record


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench encoding")
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args(argv)

    from charnn.tokenizers.char import CharTokenizer

    base = corpus("tinyshakespeare.txt").read_text(encoding="utf-8")
    text = base * max(1, args.megabytes * 1_000_000 // len(base))
    tokenizer = CharTokenizer.build(base)
    start = time.perf_counter()
    ids = tokenizer.encode(text)
    seconds = time.perf_counter() - start
    size = len(text.encode("utf-8")) / 1e6
    print(f"machine: {machine()}")
    print(f"encoding: {size:,.0f} MB in {seconds:.2f} s = {size / seconds:,.0f} MB/s (target >= 50); dtype {ids.dtype}")
    record("encoding", vars(args), {"megabytes": size, "seconds": seconds, "mb_per_sec": size / seconds})
