"""Sampling speed, in process and through `charnn sample`, side by side, and start-up.

All from the same 2x512 LSTM (embed 64) at temperature 0.8:

- in process: `charnn.tasks.lm.sample.stream`, one sample and 256 as one batch; against a plain
  torch nn.LSTM + nn.Linear of the same shape stepped one character at a time with its state
  carried (what most char-rnn code does), over the same number of characters;
- which path each takes here (int8 weights, bf16 or fp32: charnn.tasks.lm.sample.stepping_dtype);
- through the command line, as a user runs it: marginal rates, so start-up does not count:
  (time of `--length L` - time of `--length 1`) / characters, for one sample and for `-n 256`;
- records: 1,000 paint names (`-n 1000`) from a record run (trained briefly here on
  ../shared/corpora/paint-names.txt, or `--records-run RUN`), records per second, CLI and in
  process; finished rows leave the batch;
- time to first character of a fresh `charnn sample` against a bare `import torch`;
- precision: the held-out loss with the sampler's arithmetic (where the CPU has bf16 units:
  bf16 for large batches, int8 weights for small ones) against fp32, on the same text.

    python -m bench sampling [--hidden 512] [--cell lstm] [--tokenizer char] [--length 20000] [--repeat 3]
        [--records-run RUN] [--device cpu|cuda]

On CUDA (`--device cuda --hidden 1024`) the models are trained there, every sampler runs
there, and the targets quoted are the GPU's: one sample >= 5,000 chars/s, 256 >= 200,000.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import ROOT, corpus, device_name, machine, record, synchronize


def charnn_rate(run, length: int, n: int) -> float:  # noqa: ANN001
    from charnn.config import SampleConfig
    from charnn.tasks.lm.sample import stream

    synchronize(str(run.model.embed.weight.device))
    start = time.perf_counter()
    chars = sum(len(p.text) for p in stream(run, SampleConfig(length=length, num_samples=n, seed=0)))
    return chars / (time.perf_counter() - start)


def records_rate(run, n: int) -> float:  # noqa: ANN001
    from charnn.config import SampleConfig
    from charnn.tasks.lm.sample import stream
    from charnn.text.records import record_cap

    start = time.perf_counter()
    done = sum(p.done for p in stream(run, SampleConfig(length=record_cap(run), num_samples=n, seed=0)))
    return done / (time.perf_counter() - start)


def reference_rate(model, length: int) -> float:  # noqa: ANN001
    """A plain torch.nn.LSTM (or GRU, RNN) and nn.Linear of charnn's model's shape, stepped one character
    at a time with its state carried, as a user would write a char-rnn sampler (their own weights: the
    speed is what is compared)."""
    from torch import nn

    c = model.config
    module = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[c.cell]
    device = model.embed.weight.device
    embed = nn.Embedding(c.vocab_size, c.embed).to(device).eval()
    rnn = module(c.embed, c.hidden, num_layers=c.layers, batch_first=True).to(device).eval()
    head = nn.Linear(c.hidden, c.vocab_size).to(device).eval()
    token = torch.zeros(1, 1, dtype=torch.long, device=device)
    state = None
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(length):
            out, state = rnn(embed(token), state)  # (1, 1, H)
            logits = head(out[:, -1])  # (1, V)
            token = torch.multinomial(torch.softmax(logits / 0.8, -1), 1)  # (1, 1)
            int(token)  # a sampler hands each character over as it comes
    return length / (time.perf_counter() - start)


def arithmetic(run, n: int, device: str) -> str:  # noqa: ANN001
    """Which stepping path `charnn sample -n N` takes on this machine: int8 weights, bf16 or fp32."""
    from charnn.tasks.lm.sample import stepping_dtype

    step = run.model.stepper(stepping_dtype(n, torch.device(device)))
    if step.int8:
        return "int8 weights, bf16 products"
    return "bf16" if step.dtype == torch.bfloat16 else "fp32"


DEVICE = ["--device", "cpu"]
"""The `charnn sample` option every command of the benchmark passes (set from --device)."""


def cli_seconds(run: Path, *args: str) -> tuple[float, int]:
    """Wall time of a fresh `charnn sample` process and the characters it printed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "charnn", "sample", "-m", str(run), "--seed", "1", *DEVICE, *args]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return time.perf_counter() - start, len(out)


def cli_rate(run: Path, long: list[str], short: list[str]) -> float:
    """Marginal characters per second between two commands: start-up cancels out."""
    t_long, c_long = cli_seconds(run, *long)
    t_short, c_short = cli_seconds(run, *short)
    return (c_long - c_short) / max(t_long - t_short, 1e-9)


def first_char_seconds(run: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "charnn", "sample", "-m", str(run), "--length", "200", "--seed", "1", *DEVICE]
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


def record_run(folder: Path, shape: dict, device: str) -> Path:
    from charnn.config import TrainConfig
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import read_corpus

    config = TrainConfig(steps=150, batch_size=32, eval_every=150, device=device)
    train(read_corpus([corpus("paint-names.txt")]), folder, {**shape, "dropout": 0.3}, config, records="line")
    return folder


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench sampling")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--length", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--records-run", type=Path, default=None)
    parser.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    parser.add_argument("--tokenizer", default="char", help="char, or a subword kind (bpe, unigram)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the models train and sample")
    parser.add_argument("--no-records", action="store_true", help="skip the paint-name records")
    args = parser.parse_args(argv)
    DEVICE[1] = args.device

    from charnn.config import TrainConfig
    from charnn.tasks import load_run
    from charnn.tasks.lm.evaluate import evaluate_text
    from charnn.tasks.lm.prepare import train
    from charnn.tasks.lm.sample import stepped_nll
    from charnn.text.corpus import Corpus

    text = corpus("tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]
    print(f"machine: {machine()}; device: {device_name(args.device)}")
    print(
        f"settings: {args.cell.upper()} 2x{args.hidden}, embed 64, {args.tokenizer} tokenizer, temperature 0.8, "
        f"median of {args.repeat}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        config = TrainConfig(steps=300, batch_size=32, eval_every=300, device=args.device)
        shape = {"hidden": args.hidden, "cell": args.cell}
        train(Corpus(text, "bench", ("bench",)), folder, shape, config, tokenizer_kind=args.tokenizer)
        run = load_run(folder, device=args.device)
        names = None if args.no_records else args.records_run or record_run(Path(tmp) / "names", shape, args.device)
        names_run = load_run(names, device=args.device) if names is not None else None
        # Characters per sample in the batch of 256: on a GPU, enough that the batch takes seconds
        # (at 200 each it took 0.2 s, less than the noise of the two processes' start-ups).
        n_long = max(1, args.length // (100 if args.device == "cpu" else 10))
        rows = {key: [] for key in ("one", "batch", "ref", "ratio", "cli_one", "cli_batch", "rec", "cli_rec")}
        for _ in range(args.repeat):
            rows["one"].append(charnn_rate(run, args.length, 1))
            rows["ref"].append(reference_rate(run.model, args.length))
            rows["ratio"].append(rows["one"][-1] / rows["ref"][-1])
            rows["batch"].append(charnn_rate(run, n_long, 256))
            rows["rec"].append(records_rate(names_run, 1000) if names_run is not None else math.nan)
            rows["cli_one"].append(cli_rate(folder, ["--length", str(args.length + 1)], ["--length", "1"]))
            batch = ["-n", "256", "--no-echo"]
            rows["cli_batch"].append(cli_rate(folder, [*batch, "--length", str(n_long)], [*batch, "--length", "1"]))
            if names is None:
                rows["cli_rec"].append(math.nan)
                continue
            t_long, _ = cli_seconds(names, "-n", "1000")
            t_short, _ = cli_seconds(names, "-n", "1")
            rows["cli_rec"].append(999 / max(t_long - t_short, 1e-9))
        first = statistics.median(first_char_seconds(folder) for _ in range(args.repeat))
        torch_import = statistics.median(command_seconds(sys.executable, "-c", "import torch") for _ in range(3))
        help_time = statistics.median(command_seconds(sys.executable, "-m", "charnn", "--help") for _ in range(5))
        held_out = run.tokenizer.encode(run.validation_path.read_text(encoding="utf-8"))
        exact = evaluate_text(run, run.validation_path.read_text(encoding="utf-8")).nll_per_token
        fp32, bf16 = stepped_nll(run.model, held_out), stepped_nll(run.model, held_out, torch.bfloat16)
        int8 = stepped_nll(run.model, held_out, torch.int8) if args.device == "cpu" else math.nan
    result = {key: statistics.median(values) for key, values in rows.items()}
    paths = {"one": arithmetic(run, 1, args.device), "batch": arithmetic(run, 256, args.device)}
    result.update(
        path_one=paths["one"], path_batch=paths["batch"], shape=run.model.config.to_dict(),
        threads=torch.get_num_threads(),
    )  # fmt: skip
    result.update(
        first_char_seconds=first, import_torch_seconds=torch_import, help_seconds=help_time,
        eval_nll=exact, stepped_fp32_nll=fp32, stepped_bf16_nll=bf16, stepped_int8_nll=int8,
    )  # fmt: skip
    print(f"paths taken here: one sample {paths['one']}; 256 samples {paths['batch']}")
    print(
        f"one sample:  in process {result['one']:,.0f} chars/s, `charnn sample` {result['cli_one']:,.0f} chars/s "
        f"(target >= 5,000); a plain nn.{args.cell.upper()} + nn.Linear stepped per character with its state "
        f"carried {result['ref']:,.0f} chars/s (both over {args.length:,} characters), ratio {result['ratio']:.1f}x"
    )
    print(
        f"256 samples: in process {result['batch']:,.0f} chars/s, `charnn sample -n 256` "
        f"{result['cli_batch']:,.0f} chars/s in all (target >= {30_000 if args.device == 'cpu' else 200_000:,})"
    )
    print(
        f"1,000 paint-name records: in process {result['rec']:,.0f} records/s, `charnn sample -n 1000` "
        f"{result['cli_rec']:,.0f} records/s"
    )
    print(
        f"time to first character: {first:.2f} s; bare `import torch`: {torch_import:.2f} s; "
        f"difference {first - torch_import:.2f} s (target <= 0.3 s); `charnn --help` {help_time:.2f} s"
    )
    print(
        f"held-out loss with the sampler's arithmetic: fp32 {fp32:.4f}, bf16 (batches) {bf16:.4f} "
        f"({100 * (bf16 / fp32 - 1):+.2f}%), int8 weights (one sample) {int8:.4f} ({100 * (int8 / fp32 - 1):+.2f}%) "
        f"nats/token (target within 0.5%); `charnn eval` {exact:.4f}"
    )
    record("sampling", vars(args) | {"records_run": str(args.records_run)}, result)
