"""One step of a 2x512 LSTM's stepper (the sampler's and the server's), by arithmetic and batch size.

    python -m bench steps [--hidden 512] [--repeat 3]

Microseconds a step for 1, 8 and 64 rows in fp32, bf16, int8 weights (what `charnn sample`
steps one sample with, where the CPU runs it fast) and "exact" (what `charnn serve` steps every
batch with there: int8 weights and inputs, each row's logits the same in any company, timed as
the server runs it, with oneDNN off but for its integer products); median of --repeat timings of
300 steps each, an untrained model (speed does not depend on the weights). docs/benchmarks.md,
"Serving", reads it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone

from bench.common import ROOT, machine


def step_us(model, dtype, rows: int, steps: int = 300, exact: bool = False) -> float:  # noqa: ANN001
    import torch

    step, state = model.stepper(dtype, exact_rows=exact), model.initial_state(rows)
    assert step.exact == exact
    token = torch.zeros(rows, dtype=torch.long)
    for _ in range(20):
        _, state = step(token, state)
    start = time.perf_counter()
    for _ in range(steps):
        _, state = step(token, state)
    return (time.perf_counter() - start) / steps * 1e6


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench steps")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    from charnn.config import ModelConfig
    from charnn.model import RecurrentLM, int8_available

    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(vocab_size=65, embed=64, hidden=args.hidden, layers=2, cell="lstm")).eval()
    kinds = {"fp32": (None, False), "bf16": (torch.bfloat16, False)}
    if int8_available():
        kinds["int8"] = (torch.int8, False)
        kinds["exact"] = (torch.int8, True)
    print(f"machine: {machine()}; LSTM 2x{args.hidden}, embed 64, vocabulary 65; median of {args.repeat}")
    rows = {}
    for name, (dtype, exact) in kinds.items():
        torch.backends.mkldnn.enabled = not exact  # as `charnn serve` runs (charnn.serve.server.limit_caches)
        for batch in (1, 8, 64):
            us = statistics.median(step_us(model, dtype, batch, exact=exact) for _ in range(args.repeat))
            rows[f"{name}_{batch}"] = us
            print(f"{name:>5}, {batch:>2} rows: {us:7,.0f} us a step, {batch / us * 1e6:9,.0f} rows x steps a second")
    result = {"benchmark": "steps", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine()}
    result.update(hidden=args.hidden, repeat=args.repeat, us_per_step=rows)
    with (ROOT / "bench" / "results" / "steps.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(result) + "\n")
