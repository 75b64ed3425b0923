"""Word tagging on pos-ewt and ner-wnut17 (../shared/datasets): charnn against the usual
baselines, and tagging speed.

Checkpoints are chosen on a held-out 10% of each training file (the tagger's default
split); the dev file is scored once per configuration and never tuned on. Every `charnn`
call is a fresh process, as a user's would be. Run it alone: time budgets on a shared
2-core machine mean nothing with another job beside them.

    python -m bench tag [--parts pos,ner,predict] [--time 15m] [--work DIR] [-- EXTRA tag train ARGS]

  pos      `charnn tag train en_ewt-ud-train.conllu --time 15m` with its defaults: dev UPOS accuracy,
           beside each word's most frequent training tag (unseen words: the most frequent open-class tag)
  ner      `charnn tag train wnut17train.conll --time 15m`: dev entity F1, beside tagging every span
           seen in training with its training type
  predict  `charnn tag predict` on the EWT dev sentences as raw text, one a line, with the pos run,
           start-up included: words/s
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import ROOT, charnn, record

DATASETS = Path(os.environ.get("CHARNN_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
SEED, VAL_FRACTION = 1337, 0.1  # the tagger's defaults: the baselines learn from the same sentences
FILES = {
    "pos": ("pos-ewt", "en_ewt-ud-train.conllu", "en_ewt-ud-dev.conllu"),
    "ner": ("ner-wnut17", "wnut17train.conll", "emerging.dev.conll"),
}
OPEN_CLASS = ("NOUN", "PROPN", "VERB", "ADJ", "ADV", "INTJ")


def data(task: str, which: str) -> Path:
    folder, train, dev = FILES[task]
    path = DATASETS / folder / (train if which == "train" else dev)
    if not path.is_file():
        sys.exit(f"bench: {path} not found; set CHARNN_SHARED_DATASETS to the folder holding {folder}/")
    return path


def tag_train(task: str, out: Path, budget: str, *extra: str) -> dict:
    started = time.perf_counter()
    charnn("tag", "train", data(task, "train"), "--out", out, "--time", budget, *extra, capture=False)
    wall = time.perf_counter() - started
    results = json.loads((out / "config.json").read_text())["results"]
    dev = json.loads(charnn("tag", "eval", data(task, "dev"), "-m", out, "--json").stdout)
    return {
        "heldout_accuracy": results["val_accuracy"],
        "heldout_entity_f1": results.get("val_f1"),
        "dev_accuracy": dev["accuracy"],
        "dev_entity_f1": dev.get("entity_f1"),
        "dev_entity_precision": dev.get("entity_precision"),
        "dev_entity_recall": dev.get("entity_recall"),
        "steps": results["steps"],
        "best_step": results["best_step"],
        "wall_seconds": round(wall, 1),
    }


def _split(task: str):  # noqa: ANN202
    from charnn.text.tagged import read_tagged, split_sentences

    train, _ = split_sentences(read_tagged([data(task, "train")]), VAL_FRACTION, SEED)
    return train, read_tagged([data(task, "dev")])


def most_frequent_tag_baseline() -> float:
    """Dev accuracy of each word's most frequent training tag; unseen words get the most frequent open-class tag."""
    train, dev = _split("pos")
    counts: dict[str, Counter] = {}
    for words, tags in zip(train.sentences, train.tags, strict=True):
        for word, tag in zip(words, tags, strict=True):
            counts.setdefault(word, Counter())[tag] += 1
    overall = Counter(tag for tags in train.tags for tag in tags)
    unseen = max(OPEN_CLASS, key=lambda tag: overall[tag])
    best = {word: c.most_common(1)[0][0] for word, c in counts.items()}
    right = sum(
        best.get(word, unseen) == tag
        for words, tags in zip(dev.sentences, dev.tags, strict=True)
        for word, tag in zip(words, tags, strict=True)
    )
    return right / dev.words


def memorised_spans_baseline() -> dict:
    """Dev entity figures of tagging every span seen as an entity in training with its most frequent type
    (longest match first, left to right)."""
    import numpy as np

    from charnn.tasks.tag.task import entity_scores
    from charnn.text.tagged import entities

    train, dev = _split("ner")
    seen: dict[tuple[str, ...], Counter] = {}
    for words, tags in zip(train.sentences, train.tags, strict=True):
        for start, end, kind in entities(tags):
            seen.setdefault(tuple(words[start:end]), Counter())[kind] += 1
    types = {span: c.most_common(1)[0][0] for span, c in seen.items()}
    longest = max(map(len, types))
    names = sorted({t for tags in train.tags + dev.tags for t in tags})
    index = {t: i for i, t in enumerate(names)}
    gold, guess = [], []
    for words, tags in zip(dev.sentences, dev.tags, strict=True):
        out, i = ["O"] * len(words), 0
        while i < len(words):
            for n in range(min(longest, len(words) - i), 0, -1):
                kind = types.get(tuple(words[i : i + n]))
                if kind is not None:
                    out[i : i + n] = [f"B-{kind}"] + [f"I-{kind}"] * (n - 1)
                    i += n
                    break
            else:
                i += 1
        gold.append(np.asarray([index[t] for t in tags]))
        guess.append(np.asarray([index[t] for t in out]))
    figures = entity_scores(gold, guess, names)
    return {k: figures[k] for k in ("entity_precision", "entity_recall", "entity_f1")}


def part_pos(work: Path, args: argparse.Namespace) -> dict:
    result = tag_train("pos", work / "pos", args.time, *args.extra)
    result["baseline_accuracy"] = most_frequent_tag_baseline()
    print(
        f"charnn tag train en_ewt-ud-train.conllu (defaults{' ' + ' '.join(args.extra) if args.extra else ''}, "
        f"--time {args.time}): held-out {result['heldout_accuracy']:.4f}, dev UPOS accuracy "
        f"{result['dev_accuracy']:.4f} (target >= 0.93); most-frequent-tag baseline {result['baseline_accuracy']:.4f}; "
        f"{result['steps']} steps, best at {result['best_step']}",
        flush=True,
    )
    record("tag", {"part": "pos", "time": args.time, "extra": args.extra}, result)
    return result


def part_ner(work: Path, args: argparse.Namespace) -> dict:
    result = tag_train("ner", work / "ner", args.time, *args.extra)
    result["baseline"] = memorised_spans_baseline()
    base = result["baseline"]
    print(
        f"charnn tag train wnut17train.conll (defaults{' ' + ' '.join(args.extra) if args.extra else ''}, "
        f"--time {args.time}): held-out entity F1 {result['heldout_entity_f1']:.4f}; dev entity F1 "
        f"{result['dev_entity_f1']:.4f} (P {result['dev_entity_precision']:.4f}, R {result['dev_entity_recall']:.4f}; "
        f"target >= 0.20); memorised-spans baseline F1 {base['entity_f1']:.4f} (P {base['entity_precision']:.4f}, "
        f"R {base['entity_recall']:.4f}); {result['steps']} steps, best at {result['best_step']}",
        flush=True,
    )
    record("tag", {"part": "ner", "time": args.time, "extra": args.extra}, result)
    return result


def part_predict(work: Path, args: argparse.Namespace) -> dict:
    from charnn.text.tagged import read_tagged

    run = work / "pos"
    if not (run / "model.safetensors").is_file():
        sys.exit(f"bench: {run} holds no tagger; run the pos part first (or pass --work with one)")
    dev = read_tagged([data("pos", "dev")])
    source = work / "sentences.txt"
    source.write_text("".join(" ".join(words) + "\n" for words in dev.sentences), encoding="utf-8")
    times = []
    for _ in range(3):
        with open(source, "rb") as stdin:
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "charnn", "tag", "predict", "-m", str(run)],
                stdin=stdin, stdout=subprocess.PIPE, check=True,
            )  # fmt: skip
            times.append(time.perf_counter() - started)
        assert out.stdout.count(b"\n") == dev.words + len(dev)
    best = statistics.median(times)
    result = {"sentences": len(dev), "words": dev.words, "seconds": [round(t, 2) for t in times]}
    result["words_per_second"] = dev.words / best
    print(
        f"charnn tag predict, the {len(dev):,} EWT dev sentences ({dev.words:,} words) as raw text, end to end: "
        f"median {best:.2f}s of 3 = {result['words_per_second']:,.0f} words/s (target >= 2,000)",
        flush=True,
    )
    record("tag", {"part": "predict"}, result)
    return result


PARTS = {"pos": part_pos, "ner": part_ner, "predict": part_predict}


def main(argv: list[str]) -> None:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m bench tag", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="pos,predict,ner")
    parser.add_argument("--time", default="15m")
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    args.extra = extra
    with tempfile.TemporaryDirectory(prefix="charnn-bench-tag-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for part in args.parts.split(","):
            PARTS[part](work, args)


if __name__ == "__main__":
    main(sys.argv[1:])
