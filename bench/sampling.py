"""Sampling speed and start-up: charnn's stepped generation against stepping torch.nn.LSTM.

Both generate from the same 2x512 LSTM weights one character at a time with the
state carried; the reference feeds each character to the fused nn.LSTM as a
length-1 sequence (what most char-rnn code does). Time to first character is a
fresh `charnn sample` process until its first byte on stdout, against a bare
`python -c "import torch"`; `charnn --help` is timed too.

    python -m bench sampling [--hidden 512] [--length 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import ROOT, corpus, machine, record


def charnn_rate(run, length: int, n: int) -> float:  # noqa: ANN001
    from charnn.config import SampleConfig
    from charnn.sample import stream

    start = time.perf_counter()
    chars = sum(len(p.text) for p in stream(run, SampleConfig(length=length, num_samples=n, seed=0)))
    return chars / (time.perf_counter() - start)


def reference_rate(model, length: int) -> float:  # noqa: ANN001
    """Step the fused modules one character at a time (the common char-rnn loop)."""
    token = torch.zeros(1, 1, dtype=torch.long)
    state = None
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(length):
            logits, state = model(token, state)
            token = torch.multinomial(torch.softmax(logits[:, -1] / 0.8, -1), 1)
    return length / (time.perf_counter() - start)


def first_char_seconds(run: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "charnn", "sample", "-m", str(run), "--length", "200", "--seed", "1"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    proc.stdout.read(1)
    elapsed = time.perf_counter() - start
    proc.kill()
    proc.wait()
    return elapsed


def command_seconds(*cmd: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench sampling")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from charnn.checkpoint import load_run
    from charnn.config import TrainConfig
    from charnn.data import Corpus
    from charnn.train import train

    text = corpus("tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]
    print(f"machine: {machine()}")
    print(f"settings: LSTM 2x{args.hidden}, embed 64, {args.length} characters per sample, temperature 0.8")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        config = TrainConfig(steps=1, batch_size=8, eval_every=10, device="cpu")
        train(Corpus(text, "bench", ("bench",)), folder, {"hidden": args.hidden}, config)
        run = load_run(folder)
        reference = run.model  # the same weights, stepped through the fused modules
        one, batch, ref, ratios = [], [], [], []
        for _ in range(args.repeat):
            one.append(charnn_rate(run, args.length, 1))
            ref.append(reference_rate(reference, min(args.length, 500)))
            ratios.append(one[-1] / ref[-1])
            batch.append(charnn_rate(run, args.length // 4, 64))
        first = statistics.median(first_char_seconds(folder) for _ in range(args.repeat))
        torch_import = statistics.median(
            command_seconds(sys.executable, "-c", "import torch") for _ in range(args.repeat)
        )
        help_time = statistics.median(
            command_seconds(sys.executable, "-m", "charnn", "--help") for _ in range(max(5, args.repeat))
        )
    result = {
        "one_sample_chars_per_sec": statistics.median(one),
        "reference_chars_per_sec": statistics.median(ref),
        "ratio": statistics.median(ratios),
        "batch64_chars_per_sec": statistics.median(batch),
        "first_char_seconds": first,
        "import_torch_seconds": torch_import,
        "help_seconds": help_time,
    }
    print(
        f"one sample: {result['one_sample_chars_per_sec']:,.0f} chars/s (target >= 2,000); stepped nn.LSTM "
        f"{result['reference_chars_per_sec']:,.0f} chars/s; median ratio {result['ratio']:.1f}x"
    )
    print(f"64 samples as one batch: {result['batch64_chars_per_sec']:,.0f} chars/s in all")
    print(
        f"time to first character: {first:.2f} s; bare `import torch`: {torch_import:.2f} s; "
        f"difference {first - torch_import:.2f} s (target <= 0.5 s)"
    )
    print(f"`charnn --help`: {help_time:.2f} s (target <= 0.3 s)")
    record("sampling", vars(args), result)
