"""Record training speed: the column layout against the stream layout, on the same record corpus.

A record run restarts its model at every record. With the records laid end to end in each
row (the stream layout, runs made before 2026-11-24) a window is cut wherever *some* row
restarts, and short records make a cell loop of it; the column layout deals records of one
length side by side so that all rows restart together. Both lay out the same run folder,
with the same model and settings; each is timed from its 10th step to its last, the two
alternate, and the ratio of each pair is quoted (a neighbour slowing the machine slows both).

    python -m bench records [--corpus paint-names.txt] [--records line] [--steps 150] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import corpus, machine, record
from charnn.tasks import load_run

WARMUP = 10


def timed(folder: Path, columns: bool, steps: int) -> float:
    """Training chars/s of a run made in ``folder``, laid out one way, from step WARMUP on."""
    import torch

    from charnn.config import TrainConfig
    from charnn.device import resolve_bf16
    from charnn.tasks import make_task
    from charnn.training.distributed import World

    run = load_run(folder)
    config = TrainConfig(**{**run.config["training"], "device": "cpu"})
    cpu = torch.device("cpu")
    described = dict(run.config["task"])
    if not columns:
        described.pop("record_layout")  # as a record run made before columns: records end to end
    task = make_task({**run.config, "task": described}, folder, run.model, config, World(), cpu)
    model = run.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    bf16 = resolve_bf16(config.precision, cpu)
    carry = task.initial_carry()
    started = 0.0
    for step in range(steps):
        if step == WARMUP:
            started = time.perf_counter()
        loss, carry = task.loss(model, step, carry, lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        carry = [tuple(s.detach() for s in layer) for layer in carry]
    return task.chars_per_step * (steps - WARMUP) / (time.perf_counter() - started)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench records")
    parser.add_argument("--corpus", default="paint-names.txt")
    parser.add_argument("--records", default="line")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from charnn.config import TrainConfig
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus

    print(f"machine: {machine()}")
    text = corpus(args.corpus).read_text(encoding="utf-8")
    ratios, rates = [], {"stream": [], "columns": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        made = Corpus(text=text, name=args.corpus, sources=(args.corpus,))
        train(made, folder, {}, TrainConfig(steps=1, device="cpu"), records=args.records)  # charnn's default shapes
        for _ in range(args.repeat):
            stream = timed(folder, False, args.steps)
            columns = timed(folder, True, args.steps)
            rates["stream"].append(stream)
            rates["columns"].append(columns)
            ratios.append(columns / stream)
            print(
                f"stream layout {stream:,.0f} chars/s, columns {columns:,.0f} chars/s: {columns / stream:.2f}x",
                flush=True,
            )
    result = {k: statistics.median(v) for k, v in rates.items()} | {
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }
    what = f"{args.corpus}, --records {args.records}"
    print(f"median of {args.repeat}: columns {result['ratio']:.2f}x the stream layout's chars/s ({what})")
    record("records", vars(args), result)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
