"""The three-style gallery: train on each named corpus, score it, sample it, check novelty.

For each style: `charnn corpus get NAME` (from --mirror, default ../shared/corpora/upstream),
`charnn train` for --time (15 minutes by default), the exact held-out bits per character
(`charnn eval`), 100 sampled records and the fraction of them that are not verbatim in the
training text (`charnn sample --json`), and a few samples to show. Prints the commands and
their real output, ready for the README gallery.

    python -m bench gallery [--time 15m] [--only paint-names ...] [--mirror DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench.common import ROOT, SHARED_CORPORA, charnn, eval_json, machine, record

STYLES = {
    "paint-names": {
        # 0.7 MB of short lines, seen 30 times in 15 minutes: a 2x384 LSTM learns it by heart
        # unless dropout is well above the default.
        "train": ["--dropout", "0.3"],
        "sample": ["--stop", "\\n", "--prime", "\\n", "--no-echo", "--temp", "0.8"],
        "show": ["-n", "12"],
    },
    "recipes": {
        "train": ["--dropout", "0.2"],  # 1.3 MB, seen 20 times in 15 minutes
        "sample": ["--stop", "\\n\\n\\n", "--prime", "Title:", "--temp", "0.7", "--length", "1500"],
        "show": ["-n", "2"],
    },
    "fantasy": {
        "sample": ["--stop", "\\n\\n", "--prime", "\\n\\n", "--no-echo", "--temp", "0.7", "--length", "800"],
        "show": ["-n", "3"],
    },
}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench gallery")
    parser.add_argument("--time", default="15m")
    parser.add_argument("--only", nargs="*", choices=sorted(STYLES))
    parser.add_argument("--mirror", default=str(SHARED_CORPORA / "upstream"))
    parser.add_argument("--keep", help="keep the runs in this folder")
    parser.add_argument("--records", type=int, default=100)
    args = parser.parse_args(argv)
    os.environ.setdefault("CHARNN_CACHE", str(Path(tempfile.gettempdir()) / "charnn-bench-cache"))
    print(f"machine: {machine()}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        for style in args.only or STYLES:
            results[style] = one_style(style, base / style, args)
    record("gallery", {"time": args.time, "records": args.records}, {"styles": results})


def one_style(style: str, run: Path, args) -> dict:  # noqa: ANN001
    settings = STYLES[style]
    text = charnn("corpus", "get", style, "--mirror", args.mirror).stdout.strip()
    train = settings.get("train", [])
    charnn("train", text, "--time", args.time, *train, "--out", run, "--overwrite", capture=True)
    metrics = eval_json(run)
    checked = json.loads(
        charnn("sample", "-m", run, "-n", str(args.records), "--json", "--seed", "1", *settings["sample"]).stdout
    )
    novel = sum(s["novel"] for s in checked["samples"]) / len(checked["samples"])
    longest = sorted(s["longest_shared_span"] for s in checked["samples"])
    shown = charnn("sample", "-m", run, "--seed", "7", *settings["show"], *settings["sample"]).stdout
    print(f"\n## {style}\n")
    print(f'$ charnn train "$(charnn corpus get {style})" --time {args.time} {" ".join(train)}'.rstrip())
    print(
        f"$ charnn eval    # held-out last 10%: {metrics['bits_per_char']:.3f} bits/char "
        f"({metrics['nll_per_token']:.3f} nats)"
    )
    print(f"$ charnn sample {' '.join(settings['show'] + settings['sample'])} --seed 7")
    print(shown)
    print(
        f"novel records: {novel:.0%} of {len(checked['samples'])}; median longest span shared with the "
        f"training text {longest[len(longest) // 2]} characters"
    )
    return {
        "bits_per_char": metrics["bits_per_char"],
        "novel_fraction": novel,
        "median_longest_shared_span": longest[len(longest) // 2],
        "sample": shown,
    }


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
