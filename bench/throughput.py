"""Training throughput: charnn's loop against a minimal torch.nn.LSTM loop, side by side.

Both train the same shapes on tinyshakespeare for the same number of steps; each is
timed from its 10th step to its last (start-up and evaluation excluded). They run
alternately, and the ratio of each pair is quoted, so a neighbour slowing the machine
for a minute slows both. Model-FLOP utilisation is against the best fp32 matrix
multiply measured in the same run.

    python -m bench throughput [--steps 60] [--repeat 3] [--hidden H] [--seq-len T] [--precision auto]
        [--device cpu|cuda]

Shapes default to those of `charnn train` on the device. On CUDA the issue's shapes are
`--layers 2 --hidden 1024 --batch-size 128 --seq-len 128`; the matrix-multiply peak is then
the GPU's, at 8192x8192.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import corpus, device_name, machine, record, synchronize

WARMUP = 10


def reference_loop(tokens: torch.Tensor, vocab: int, args, bf16: bool) -> float:  # noqa: ANN001
    """A plain nn.LSTM TBPTT loop (dropout like charnn's): chars/s from step WARMUP to the end."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    embed = nn.Embedding(vocab, args.embed).to(device)
    lstm = nn.LSTM(args.embed, args.hidden, num_layers=args.layers, batch_first=True, dropout=args.dropout)
    lstm = lstm.to(device)
    head = nn.Linear(args.hidden, vocab).to(device)
    drop = nn.Dropout(args.dropout)  # on the embedding and before the head, as charnn does
    params = [*embed.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3, fused=True)  # charnn's optimizer is the fused one too
    b, t = args.batch_size, args.seq_len
    rows = tokens[: len(tokens) // b * b].view(b, -1).to(device)
    hidden = None
    start = 0.0
    for step in range(args.steps):
        if step == WARMUP:
            synchronize(args.device)
            start = time.perf_counter()
        pos = step * t % (rows.shape[1] - t - 1)
        x, y = rows[:, pos : pos + t], rows[:, pos + 1 : pos + t + 1]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out, hidden = lstm(drop(embed(x)), hidden)
            logits = head(drop(out))
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        hidden = tuple(h.detach() for h in hidden)
    synchronize(args.device)
    return (args.steps - WARMUP) * b * t / (time.perf_counter() - start)


def charnn_loop(text: str, args) -> tuple[float, bool, int]:  # noqa: ANN001
    """charnn's own trainer, same shapes: chars/s from step WARMUP to the end."""
    from charnn.config import TrainConfig
    from charnn.events import Progress, Started
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus

    marks: dict[int, float] = {}
    info = {}

    def on_event(event):  # noqa: ANN001, ANN202
        if isinstance(event, Progress):
            marks[event.step] = time.perf_counter()
        elif isinstance(event, Started):
            info["bf16"], info["params"] = event.bf16, event.parameters

    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        eval_every=10**9,
        log_every=WARMUP,
        precision=args.precision,
        device=args.device,
    )
    model = dict(layers=args.layers, hidden=args.hidden, embed=args.embed, dropout=args.dropout)
    with tempfile.TemporaryDirectory() as tmp:
        train(Corpus(text, "bench", ("bench",)), Path(tmp) / "run", model, config, on_event=on_event)
    chars = (args.steps - WARMUP) * args.batch_size * args.seq_len
    return chars / (marks[args.steps] - marks[WARMUP]), info["bf16"], info["params"]


def matmul_peak(dtype: torch.dtype = torch.float32, device: str = "cpu", repeat: int = 5) -> float:
    size = 2048 if device == "cpu" else 8192
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    best = float("inf")
    a @ b
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flops_per_char(args, vocab: int) -> float:  # noqa: ANN001
    """Forward matrix-multiply FLOPs per character, times 3 for forward + backward."""
    forward = 0
    for layer in range(args.layers):
        inputs = args.embed if layer == 0 else args.hidden
        forward += 2 * 4 * args.hidden * (inputs + args.hidden)
    forward += 2 * args.hidden * vocab
    return 3 * forward


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench throughput")
    from charnn.config import ModelConfig, TrainConfig

    model, train = ModelConfig(vocab_size=65), TrainConfig()  # shapes default to `charnn train`'s
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layers", type=int, default=model.layers)
    parser.add_argument("--hidden", type=int, default=model.hidden)
    parser.add_argument("--embed", type=int, default=model.embed)
    parser.add_argument("--batch-size", type=int, default=train.batch_size)
    parser.add_argument("--seq-len", type=int, default=train.seq_len)
    parser.add_argument("--dropout", type=float, default=model.dropout)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the run's device, and the reference's)")
    args = parser.parse_args(argv)

    from charnn.tokenizers.char import CharTokenizer

    text = corpus("tinyshakespeare.txt").read_text(encoding="utf-8")
    tokenizer = CharTokenizer.build(text)
    tokens = torch.from_numpy(tokenizer.encode(text).astype("int64"))
    print(f"machine: {machine()}; device: {device_name(args.device)}")
    print(
        f"settings: LSTM {args.layers}x{args.hidden}, embed {args.embed}, batch {args.batch_size}, "
        f"window {args.seq_len}, dropout {args.dropout}, {args.steps} steps (timed from step {WARMUP}), "
        f"precision {args.precision}"
    )
    ours, refs, ratios = [], [], []
    bf16 = False
    params = 0
    for i in range(args.repeat):
        rate, bf16, params = charnn_loop(text, args)
        ref = reference_loop(tokens, tokenizer.vocab_size, args, bf16)
        ours.append(rate)
        refs.append(ref)
        ratios.append(rate / ref)
        print(f"  pair {i + 1}: charnn {rate:,.0f} chars/s, reference {ref:,.0f} chars/s, ratio {rate / ref:.3f}")
    peak = matmul_peak(device=args.device)
    peak_bf16 = matmul_peak(torch.bfloat16, args.device)
    flops = flops_per_char(args, tokenizer.vocab_size)
    median = statistics.median(ours)
    result = {
        "charnn_chars_per_sec": median,
        "reference_chars_per_sec": statistics.median(refs),
        "ratio": statistics.median(ratios),
        "pairs": [
            {"charnn_chars_per_sec": a, "reference_chars_per_sec": b, "ratio": a / b} for a, b in zip(ours, refs)
        ],
        "bf16": bf16,
        "parameters": params,
        "matmul_peak_gflops_fp32": peak / 1e9,
        "model_gflops_per_sec": median * flops / 1e9,
        "mfu_vs_fp32_peak": median * flops / peak,
        "matmul_peak_gflops_bf16": peak_bf16 / 1e9,
        "mfu_vs_own_precision_peak": median * flops / (peak_bf16 if bf16 else peak),
    }
    print(
        f"throughput: charnn {median:,.0f} chars/s, reference {result['reference_chars_per_sec']:,.0f} chars/s, "
        f"median ratio {result['ratio']:.3f} (target >= 0.95); autocast bf16: {bf16}"
    )
    print(
        f"MFU: {result['model_gflops_per_sec']:.1f} GFLOP/s of model matmuls ({flops / 1e6:.2f} MFLOP/char) = "
        f"{result['mfu_vs_fp32_peak']:.0%} of the measured fp32 matmul peak ({peak / 1e9:.0f} GFLOP/s), "
        f"{result['mfu_vs_own_precision_peak']:.0%} of the peak of the precision used "
        f"({(peak_bf16 if bf16 else peak) / 1e9:.0f} GFLOP/s {'bf16' if bf16 else 'fp32'})"
    )
    record("throughput", vars(args), result)
