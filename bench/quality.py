"""Quality at a time budget: `charnn train tinyshakespeare.txt --time 5m` with the defaults,
then the exact validation loss over the whole held-out last 10%, against references measured in
the same run on the same split (bench/references.py): a plain torch.nn.LSTM loop of the same size,
precision and schedule trained for the same time, and an interpolated Kneser-Ney 6-gram.

    python -m bench quality [--time 5m] [--repeat 1] [--corpus tinyshakespeare.txt] [--keep DIR]
        [--label NAME] [--no-references] [-- extra train args]

The references run when no extra `charnn train` arguments are given (they are the defaults'
comparison; a sweep row changes charnn's settings only), unless --no-references.

On a GPU: `python -m bench quality --time 3m -- --device cuda` (the issue's 3-minute budget);
the result records the device. `--keep DIR` keeps each run folder (DIR/LABEL-N) for its curves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, charnn, corpus, device_name, eval_json, machine


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench quality")
    parser.add_argument("--time", default="5m")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--corpus", default="tinyshakespeare.txt")
    parser.add_argument("--label", default="defaults")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    parser.add_argument("--no-references", action="store_true", help="skip the nn.LSTM loop and the KN n-gram")
    parser.add_argument("extra", nargs="*", help="extra `charnn train` arguments (after --)")
    args = parser.parse_args(argv)
    device = args.extra[args.extra.index("--device") + 1] if "--device" in args.extra else "cpu"
    text = corpus(args.corpus)
    print(f"machine: {machine()}; device: {device_name(device)}")
    print(f"command: charnn train {args.corpus} --time {args.time} {' '.join(args.extra)}")
    rows = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run" if args.keep is None else args.keep / f"{args.label}-{i + 1}"
            start = time.perf_counter()
            charnn("train", text, "--time", args.time, "--out", run, *args.extra)
            wall = time.perf_counter() - start
            metrics = eval_json(run, device=device)
            config = json.loads((run / "config.json").read_text())
        rows.append((metrics["nll_per_token"], metrics["bits_per_char"], config["results"]["steps"], wall))
        print(
            f"run {i + 1}: val {metrics['nll_per_token']:.4f} nats/char ({metrics['bits_per_char']:.4f} bits), "
            f"{config['results']['steps']} steps, {wall:.0f}s wall incl. start-up and final evaluation"
        )
    median = statistics.median(r[0] for r in rows)
    print(f"median validation loss over {len(rows)} run(s): {median:.4f} nats/char")
    references = {} if args.no_references or args.extra else _references(text, args.time, device)
    record = {
        "benchmark": "quality",
        "label": args.label,
        "corpus": args.corpus,
        "time": args.time,
        "extra": args.extra,
        "machine": machine(),
        "device": device_name(device),
        "val_nats_per_char": [r[0] for r in rows],
        "steps": [r[2] for r in rows],
        "median": median,
        **references,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    with open(ROOT / "bench" / "results" / "quality.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def _references(path: Path, budget: str, device: str) -> dict:
    """The plain nn.LSTM loop and the KN 6-gram, on the same text and split (bench/references.py)."""
    from bench.references import kneser_ney, lstm_reference
    from charnn.config import parse_duration

    text = path.read_text(encoding="utf-8")
    lstm = lstm_reference(text, parse_duration(budget), device)
    print(
        f"reference, plain nn.LSTM loop (same size, precision, batch, window, dropout and schedule, {budget}): "
        f"{lstm['val_nats_per_char']:.4f} nats/char, {lstm['steps']} steps, bf16 autocast {lstm['bf16']}"
    )
    kn = kneser_ney(text, order=6)
    print(f"reference, interpolated Kneser-Ney 6-gram: {kn['val_nats_per_char']:.4f} nats/char")
    return {"reference_lstm": lstm, "reference_kn6": kn}
