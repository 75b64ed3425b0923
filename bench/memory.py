"""Memory on a large corpus: `charnn train` on a 1 GB text file, peak resident memory.

The corpus is tinyshakespeare repeated to --gigabytes, written once to a temporary
folder. Training runs a few steps (the validation split is kept small so that the
final exact evaluation stays short); the peak RSS of the whole process is reported,
with the time the run took to read, check and encode the corpus.

    python -m bench memory [--gigabytes 1.0] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, corpus, machine, record


def big_corpus(gigabytes: float) -> Path:
    path = Path(tempfile.gettempdir()) / f"charnn-bench-{gigabytes:g}gb.txt"
    target = int(gigabytes * 1e9)
    if path.is_file() and path.stat().st_size >= target:
        return path
    base = corpus("tinyshakespeare.txt").read_bytes()
    with open(path, "wb") as f:
        written = 0
        while written < target:
            f.write(base)
            written += len(base)
    return path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench memory")
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    text = big_corpus(args.gigabytes)
    size = text.stat().st_size
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "charnn", "train", str(text), "--out", str(run), "--steps", str(args.steps)]
        cmd += ["--val-fraction", "0.0002", "--eval-every", "1000000"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        scan, encode = pipeline_seconds(text, Path(tmp))
    print(f"machine: {machine()}")
    print(f"corpus: {size / 1e9:.2f} GB ({text}), {args.steps} training steps with the default model")
    print(f"peak RSS of `charnn train`: {peak_kib / 1024**2:.2f} GiB (target < 1.5 GB); whole run {wall:.0f} s")
    print(
        f"data pipeline: checking pass {size / 1e6 / scan:.0f} MB/s ({scan:.1f} s), encoding pass with the "
        f"character tokenizer, writing the token files, {size / 1e6 / encode:.0f} MB/s ({encode:.1f} s) (target >= 50)"
    )
    record(
        "memory",
        vars(args),
        {
            "bytes": size,
            "peak_rss_gib": peak_kib / 1024**2,
            "scan_mb_per_sec": size / 1e6 / scan,
            "encode_mb_per_sec": size / 1e6 / encode,
            "wall_seconds": wall,
        },
    )


def pipeline_seconds(text: Path, tmp: Path) -> tuple[float, float]:
    """The two passes `charnn train` makes over a corpus, timed in this process."""
    import numpy as np

    from charnn.tasks.lm.encoding import encode_corpus as _encode
    from charnn.text.corpus import read_corpus
    from charnn.tokenizers.char import CharTokenizer

    start = time.perf_counter()
    corpus = read_corpus([text])
    scanned = time.perf_counter()
    tokenizer = CharTokenizer.build(corpus.stats.alphabet)
    n_train = corpus.stats.chars - int(round(corpus.stats.chars * 0.0002))
    out = tmp / "encode"
    out.mkdir()
    _encode(corpus, n_train, None, tokenizer, np.dtype(np.uint8), out, None)
    return scanned - start, time.perf_counter() - scanned
