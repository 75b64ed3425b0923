"""The three-style gallery: train on each named corpus, score it, sample it, check the samples.

For each style: `charnn corpus get NAME` (from --mirror, default ../shared/corpora/upstream),
`charnn train` for --time (15 minutes by default), the exact held-out bits per character
(`charnn eval`), sampled records checked against the training text (`charnn sample --json`),
and a few samples to show. Paint names and recipes are record corpora (the catalogue says
so): they are trained, sampled and scored as whole records with no extra flags, and their
samples are checked for form. Prints the commands and their real output, ready for the
the gallery (docs/gallery.md).

    python -m bench gallery [--time 15m] [--only paint-names ...] [--mirror DIR] [--keep DIR [--reuse]]

Checks (issue 15): paint names, 1,000 records at --temp 0.8: well formed (a name, then three
integers 0-255), novel, and colours that fit their names: for samples whose name holds
exactly one basic colour word, how often the RGB is nearest to that word's usual colour,
against the same rate with the RGB values shuffled between those samples (and, as one seed's
300-odd names move it by several points, the same rate at seeds 1-6). Recipes, 100
records: a Title/Categories/Yield header, at least one ingredient line and a method paragraph.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
from pathlib import Path

from bench.common import ROOT, SHARED_CORPORA, charnn, eval_json, machine, record

STYLES = {
    "paint-names": {
        # 0.7 MB of short lines, seen 30 times in 15 minutes: a 2x384 LSTM learns it by heart
        # unless dropout is well above the default.
        "train": ["--dropout", "0.3"],
        "sample": ["--temp", "0.8"],
        "check": 1000,
        "show": ["-n", "12"],
    },
    "recipes": {
        "train": ["--dropout", "0.2"],  # 1.3 MB, seen 20 times in 15 minutes
        "sample": ["--temp", "0.7"],
        "check": 100,
        "show": ["-n", "2"],
    },
    "fantasy": {
        "sample": ["--stop", "\\n\\n", "--prime", "\\n\\n", "--no-echo", "--temp", "0.7", "--length", "800"],
        "check": 100,
        "show": ["-n", "3"],
    },
}
TAIL_SPLIT_ROW = "2026-11-22 06:57"
"""The bench/results/gallery.jsonl row (its date) of this command before records: held out on the last 10%."""


def tail_split() -> dict[str, float]:
    """Held-out bits/char per style of the TAIL_SPLIT_ROW run (not measured in this run), or {} without it."""
    path = ROOT / "bench" / "results" / "gallery.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    row = next((r for r in rows if r.get("date") == TAIL_SPLIT_ROW), {"styles": {}})
    return {style: got["bits_per_char"] for style, got in row["styles"].items() if style != "fantasy"}


COLOURS = {
    "red": (229, 0, 0),
    "green": (21, 176, 26),
    "blue": (3, 67, 223),
    "yellow": (255, 255, 20),
    "orange": (249, 115, 6),
    "purple": (126, 30, 156),
    "pink": (255, 129, 192),
    "brown": (101, 55, 0),
    "grey": (146, 149, 145),
    "gray": (146, 149, 145),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
_PAINT = re.compile(r"(.*\S) (\d{1,3}) (\d{1,3}) (\d{1,3})")


def paint_name(text: str) -> tuple[str, tuple[int, int, int]] | None:
    """(name, rgb) of a well-formed paint-name record, else None."""
    match = _PAINT.fullmatch(text)
    if not match or not re.search(r"[^\W\d_]", match.group(1)):  # a name has a letter: "0 155 20 30" is no name
        return None
    rgb = tuple(int(v) for v in match.groups()[1:])
    return (match.group(1), rgb) if max(rgb) <= 255 else None


def colour_fit(names: list[tuple[str, tuple[int, int, int]]], seed: int = 7) -> dict:
    """How often a name's one basic colour word is the colour nearest its RGB; and with RGB shuffled."""
    chosen = []
    for name, rgb in names:
        words = {COLOURS[w] for w in re.findall(r"[a-z]+", name.lower()) if w in COLOURS}
        if len(words) == 1:
            chosen.append((words.pop(), rgb))

    def nearest(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
        return min(COLOURS.values(), key=lambda c: sum((a - b) ** 2 for a, b in zip(c, rgb)))

    def rate(pairs) -> float:  # noqa: ANN001
        return sum(nearest(rgb) == colour for colour, rgb in pairs) / max(1, len(pairs))

    shuffled = [rgb for _, rgb in chosen]
    random.Random(seed).shuffle(shuffled)
    return {
        "samples": len(chosen),
        "fit": rate(chosen),
        "shuffled": rate([(colour, rgb) for (colour, _), rgb in zip(chosen, shuffled)]),
    }


def _names(run: Path, count: int, seed: int, sample: list[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """The well-formed paint names of ``count`` records sampled at ``seed``."""
    out = charnn("sample", "-m", run, "-n", str(count), "--json", "--seed", str(seed), *sample).stdout
    return [p for p in (paint_name(s["text"]) for s in json.loads(out)["samples"]) if p is not None]


def recipe_ok(text: str) -> bool:
    """A Title/Categories/Yield header, then an ingredients block, then a method paragraph."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    if len(blocks) < 3:
        return False
    head = blocks[0].split("\n")
    prefixes = ("Title: ", "Categories: ", "Yield: ")
    if len(head) != 3 or not all(line.startswith(p) and line[len(p) :].strip() for line, p in zip(head, prefixes)):
        return False
    return bool(blocks[1].strip()) and any(len(b) >= 40 for b in blocks[2:])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench gallery")
    parser.add_argument("--time", default="15m")
    parser.add_argument("--only", nargs="*", choices=sorted(STYLES))
    parser.add_argument("--mirror", default=str(SHARED_CORPORA / "upstream"))
    parser.add_argument("--keep", help="keep the runs in this folder")
    parser.add_argument("--reuse", action="store_true", help="sample and score the runs already in --keep")
    args = parser.parse_args(argv)
    os.environ.setdefault("CHARNN_CACHE", str(Path(tempfile.gettempdir()) / "charnn-bench-cache"))
    print(f"machine: {machine()}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        for style in args.only or STYLES:
            results[style] = one_style(style, base / style, args)
    record("gallery", {"time": args.time}, {"styles": results})


def one_style(style: str, run: Path, args) -> dict:  # noqa: ANN001
    settings = STYLES[style]
    text = charnn("corpus", "get", style, "--mirror", args.mirror).stdout.strip()
    train = settings.get("train", [])
    if not (args.reuse and (run / "model.safetensors").is_file()):
        charnn("train", text, "--time", args.time, *train, "--out", run, "--overwrite", capture=True)
    metrics = eval_json(run)
    count = settings["check"]
    checked = json.loads(
        charnn("sample", "-m", run, "-n", str(count), "--json", "--seed", "7", *settings["sample"]).stdout
    )
    samples = [s["text"] for s in checked["samples"]]
    novel = sum(s["novel"] for s in checked["samples"]) / len(samples)
    longest = sorted(s["longest_shared_span"] for s in checked["samples"])
    shown = charnn("sample", "-m", run, "--seed", "7", *settings["show"], *settings["sample"]).stdout
    result = {
        "bits_per_char": metrics["bits_per_char"],
        "records_scored": metrics.get("records"),
        "novel_fraction": novel,
        "median_longest_shared_span": longest[len(longest) // 2],
        "sample": shown,
    }
    print(f"\n## {style}\n")
    print(f'$ charnn train "$(charnn corpus get {style})" --time {args.time} {" ".join(train)}'.rstrip())
    split = "random 10% of the records" if metrics.get("records") else "last 10%"
    earlier = tail_split()
    before = (
        f"; before records, the last 10%: {earlier[style]:.3f} (quoted, not measured in this run: "
        f"bench/results/gallery.jsonl, the row of {TAIL_SPLIT_ROW})"
        if style in earlier
        else ""
    )
    print(
        f"$ charnn eval    # held-out {split}: {metrics['bits_per_char']:.3f} bits/char "
        f"({metrics['nll_per_token']:.3f} nats){before}"
    )
    print(f"$ charnn sample {' '.join(settings['show'] + settings['sample'])} --seed 7")
    print(shown)
    print(
        f"novel records: {novel:.1%} of {len(samples)}; median longest span shared with the "
        f"training text {longest[len(longest) // 2]} characters"
    )
    if style == "paint-names":
        names = [p for p in map(paint_name, samples) if p is not None]
        fit = colour_fit(names)
        corpus_names = [p for p in map(paint_name, Path(text).read_text(encoding="utf-8").splitlines()) if p]
        data = colour_fit(corpus_names)  # what the names people gave reach: the ceiling of a faithful model
        result.update(well_formed=len(names) / len(samples), colour_fit=fit, corpus_colour_fit=data)
        print(
            f"well formed: {len(names) / len(samples):.1%} of {len(samples)} (target >= 99%); "
            f"novel {novel:.1%} (target >= 95%)"
        )
        print(
            f"colours that fit their names: {fit['fit']:.0%} of {fit['samples']} one-colour-word names, "
            f"{fit['shuffled']:.0%} with the RGB shuffled (target >= 45% and >= 3x shuffled); the corpus itself: "
            f"{data['fit']:.1%} of {data['samples']:,}, {data['shuffled']:.0%} shuffled"
        )
        # One seed's 300-odd names move the figure by several points: the spread over six more seeds.
        spread = [colour_fit(_names(run, count, seed, settings["sample"]))["fit"] for seed in range(1, 7)]
        result["colour_fit_seeds_1_6"] = spread
        print(f"the same at seeds 1-6: {', '.join(f'{f:.1%}' for f in spread)} (mean {sum(spread) / len(spread):.1%})")
    if style == "recipes":
        ok = sum(map(recipe_ok, samples)) / len(samples)
        result["well_formed"] = ok
        print(f"whole recipes (header, ingredients, method): {ok:.0%} of {len(samples)} (target >= 95%)")
    return result


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
