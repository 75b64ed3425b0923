"""Quality at a time budget: `charnn train tinyshakespeare.txt --time 5m` with the defaults,
then the exact validation loss over the whole held-out last 10%.

    python -m bench quality [--time 5m] [--repeat 1] [--corpus tinyshakespeare.txt] [-- extra train args]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, charnn, corpus, eval_json, machine


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench quality")
    parser.add_argument("--time", default="5m")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--corpus", default="tinyshakespeare.txt")
    parser.add_argument("--label", default="defaults")
    parser.add_argument("extra", nargs="*", help="extra `charnn train` arguments (after --)")
    args = parser.parse_args(argv)
    text = corpus(args.corpus)
    print(f"machine: {machine()}")
    print(f"command: charnn train {args.corpus} --time {args.time} {' '.join(args.extra)}")
    rows = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            start = time.perf_counter()
            charnn("train", text, "--time", args.time, "--out", run, *args.extra)
            wall = time.perf_counter() - start
            metrics = eval_json(run)
            config = json.loads((run / "config.json").read_text())
        rows.append((metrics["nll_per_token"], metrics["bits_per_char"], config["results"]["steps"], wall))
        print(
            f"run {i + 1}: val {metrics['nll_per_token']:.4f} nats/char ({metrics['bits_per_char']:.4f} bits), "
            f"{config['results']['steps']} steps, {wall:.0f}s wall incl. start-up and final evaluation"
        )
    nats = sorted(r[0] for r in rows)
    median = nats[len(nats) // 2]
    print(f"median validation loss over {len(rows)} run(s): {median:.4f} nats/char")
    record = {
        "benchmark": "quality",
        "label": args.label,
        "corpus": args.corpus,
        "time": args.time,
        "extra": args.extra,
        "machine": machine(),
        "val_nats_per_char": [r[0] for r in rows],
        "steps": [r[2] for r in rows],
        "median": median,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    with open(ROOT / "bench" / "results" / "quality.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
