"""Sentence classification on sentiment-mr (../shared/datasets): charnn against a bigram
logistic regression, warm starts against scratch, and prediction speed.

Checkpoints are chosen on a held-out 10% of train.tsv (stratified, the classifier's
default split); dev.tsv is scored once per configuration and never tuned on. Every
`charnn` call is a fresh process, as a user's would be. Run it alone: time budgets
on a shared 2-core machine mean nothing with another job beside them.

    python -m bench classify [--parts default,baseline,warm,predict,probe] [--time 10m] [--seeds 1337,1338,1339]
        [--lm-time 10m] [--lm-embed-init cooccurrence] [--few-time 2m] [--rows 500] [--draws 3] [--reuse]
        [-- EXTRA classify train ARGS]

  default    `charnn classify train train.tsv --time 10m --seed S` with its defaults, for each of --seeds
             (1337,1338,1339), and the regression on each seed's split: held-out and dev accuracy, medians
  baseline   unigram+bigram bag-of-words logistic regression on seed 1337's split (C chosen on held-out)
  warm       language models (forward and reverse) on the text of all 8,528 training rows; then
             --rows labelled rows, --draws draws: warm-started against from scratch (its own tokenizer,
             and the language models' tokenizer: which part of the gain is whose), same budget
  predict    `charnn classify predict` on 10,000 lines with the default run, start-up included
  probe      what the unlabelled text teaches, measured without fine-tuning: a logistic regression on
             the same --rows rows over frozen features (a random encoder, the warm part's language
             models, word vectors of sentence co-occurrence in the same text, bag of words)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, charnn, record

DATASETS = Path(os.environ.get("CHARNN_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
SEED, VAL_FRACTION = 1337, 0.1  # the classifier's defaults: the baseline holds out the same rows


def data(name: str) -> Path:
    path = DATASETS / "sentiment-mr" / name
    if not path.is_file():
        sys.exit(f"bench: {path} not found; set CHARNN_SHARED_DATASETS to the folder holding sentiment-mr/")
    return path


def classify_train(out: Path, tsv: Path, budget: str, *extra: str) -> dict:
    started = time.perf_counter()
    # --overwrite: the folders are the bench's own (its --work), which a second run with --reuse trains again.
    charnn("classify", "train", tsv, "--out", out, "--time", budget, *extra, "--overwrite", capture=False)
    wall = time.perf_counter() - started
    results = json.loads((out / "config.json").read_text())["results"]
    dev = json.loads(charnn("classify", "eval", data("dev.tsv"), "-m", out, "--json").stdout)
    return {
        "heldout_accuracy": results["val_accuracy"],
        "dev_accuracy": dev["accuracy"],
        "dev_macro_f1": dev["macro_f1"],
        "steps": results["steps"],
        "best_step": results["best_step"],
        "wall_seconds": round(wall, 1),
    }


def part_default(work: Path, args: argparse.Namespace) -> dict:
    """The defaults with each of --seeds (which also draws the held-out rows), and the regression on each
    seed's split: per seed, then the medians and the margin issue #30 asks for."""
    extra = " " + " ".join(args.extra) if args.extra else ""
    runs, baselines = [], []
    for seed in args.seeds:
        name = "default" if seed == args.seeds[0] else f"default-{seed}"  # the predict part reads "default"
        result = classify_train(work / name, data("train.tsv"), args.time, "--seed", str(seed), *args.extra)
        baseline = _regression(seed)
        print(
            f"seed {seed}: charnn classify train (defaults{extra}, --time {args.time}): "
            f"held-out {result['heldout_accuracy']:.4f}, dev {result['dev_accuracy']:.4f} "
            f"(macro-F1 {result['dev_macro_f1']:.4f}), {result['steps']} steps, best at {result['best_step']}; "
            f"bigram logistic regression on the same split: held-out {baseline['heldout_accuracy']:.4f}, "
            f"dev {baseline['dev_accuracy']:.4f} (C={baseline['C']:g})",
            flush=True,
        )
        record("classify", {"part": "default", "time": args.time, "extra": args.extra, "seed": seed}, result)
        runs.append(result)
        baselines.append(baseline)
    charnn_dev = statistics.median(r["dev_accuracy"] for r in runs)
    regression_dev = statistics.median(b["dev_accuracy"] for b in baselines)
    summary = {
        "seeds": args.seeds,
        "dev": [r["dev_accuracy"] for r in runs],
        "heldout": [r["heldout_accuracy"] for r in runs],
        "regression_dev": [b["dev_accuracy"] for b in baselines],
        "median_dev": charnn_dev,
        "median_heldout": statistics.median(r["heldout_accuracy"] for r in runs),
        "regression_median_dev": regression_dev,
    }
    print(
        f"median of {len(runs)} seeds: charnn dev {charnn_dev:.4f} (target >= 0.80), held-out "
        f"{summary['median_heldout']:.4f}; regression dev {regression_dev:.4f}; "
        f"charnn ahead by {100 * (charnn_dev - regression_dev):+.1f} points (target >= +2)",
        flush=True,
    )
    record("classify", {"part": "default-median", "time": args.time, "extra": args.extra}, summary)
    return summary


def _regression(seed: int, rows=None) -> dict:  # noqa: ANN001
    """The unigram+bigram logistic regression on ``rows`` (all of train.tsv) split as the classifier splits
    them with ``seed``, C chosen on the held-out part, scored on dev."""
    from bench.bow import logistic_regression
    from charnn.text.labelled import read_labelled, stratified_split

    train, held = stratified_split(rows or read_labelled([data("train.tsv")]), VAL_FRACTION, seed)
    return logistic_regression(train, held, read_labelled([data("dev.tsv")]))


def part_baseline(work: Path, args: argparse.Namespace) -> dict:
    result = _regression(SEED)
    print(
        f"bigram bag-of-words logistic regression: held-out {result['heldout_accuracy']:.4f}, "
        f"dev {result['dev_accuracy']:.4f} (C={result['C']:g}, {result['features']:,} features)",
        flush=True,
    )
    record("classify", {"part": "baseline"}, result)
    return result


def part_warm(work: Path, args: argparse.Namespace) -> dict:
    from charnn.text.labelled import Labelled, read_labelled

    rows = read_labelled([data("train.tsv")])
    text = work / "unlabelled.txt"
    text.write_text("\n".join(rows.texts) + "\n", encoding="utf-8")
    # The classifier's shape; heavy dropout and tied weights, as 1M characters overfit a language
    # model within a minute: its best held-out loss and the warm start both gain (docs/classifying.md).
    tokenizer = ["--tokenizer", "bpe", "--vocab-size", "4000"]  # the reverse model borrows the forward one's
    shape = ["--layers", "1", "--hidden", "256", "--embed", "128"]
    shape += ["--dropout", "0.5", "--tie-weights", "--embed-init", args.lm_embed_init]
    fwd, bwd = work / "lm-fwd", work / "lm-bwd"
    reused = True
    for lm, own in (fwd, tokenizer), (bwd, ["--reverse", "--tokenizer-from", fwd]):
        if args.reuse and reused and _made_so(lm, args):  # the reverse one only beside the same forward one
            print(f"reusing the language model in {lm}", flush=True)
            continue
        reused = False
        charnn("train", text, "--out", lm, "--time", args.lm_time, *own, *shape, "--overwrite", capture=False)
    lm = [json.loads((f / "config.json").read_text())["results"]["val_bits_per_char"] for f in (fwd, bwd)]
    print(
        f"language models, {args.lm_time} each, --embed-init {args.lm_embed_init}: "
        f"held-out {lm[0]:.3f} / {lm[1]:.3f} bits/char (forward / reverse)"
    )
    warm, scratch, lmtok, regression = [], [], [], []
    for draw in range(args.draws):
        chosen = random.Random(draw).sample(range(len(rows)), args.rows)
        few = Labelled(tuple(rows.texts[i] for i in chosen), tuple(rows.labels[i] for i in chosen), rows.sources)
        tsv = work / f"few-{draw}.tsv"
        tsv.write_text(few.to_tsv(), encoding="utf-8")
        small = ["--batch-size", "16", "--eval-every", "25"]
        w = classify_train(work / f"warm-{draw}", tsv, args.few_time, "--init-from", fwd, "--init-from", bwd, *small)
        s = classify_train(work / f"scratch-{draw}", tsv, args.few_time, *small)
        # From scratch, but with the language models' tokenizer (learnt on all the unlabelled text):
        # what the tokenizer alone gives, apart from what the language models learnt.
        t = classify_train(work / f"scratch-lmtok-{draw}", tsv, args.few_time, "--tokenizer-from", fwd, *small)
        warm.append(w["dev_accuracy"])
        scratch.append(s["dev_accuracy"])
        lmtok.append(t["dev_accuracy"])
        regression.append(_regression(SEED, few)["dev_accuracy"])
        print(
            f"  draw {draw}: warm start dev {w['dev_accuracy']:.4f}, from scratch dev {s['dev_accuracy']:.4f}, "
            f"from scratch with the language models' tokenizer dev {t['dev_accuracy']:.4f}, "
            f"bigram logistic regression on the same rows dev {regression[-1]:.4f}",
            flush=True,
        )
    result = {
        "rows": args.rows,
        "draws": args.draws,
        "lm_time": args.lm_time,
        "lm_embed_init": args.lm_embed_init,
        "few_time": args.few_time,
        "lm_bits_per_char": lm,
        "warm_encoder_lr_scale": json.loads((work / "warm-0" / "config.json").read_text())["training"].get(
            "encoder_lr_scale", 1.0
        ),
        "warm_dev": warm,
        "scratch_dev": scratch,
        "scratch_lm_tokenizer_dev": lmtok,
        "regression_dev": regression,
        "warm_mean": statistics.mean(warm),
        "scratch_mean": statistics.mean(scratch),
        "scratch_lm_tokenizer_mean": statistics.mean(lmtok),
        "regression_mean": statistics.mean(regression),
    }
    gain = 100 * (result["warm_mean"] - result["scratch_mean"])
    tokenizer_part = 100 * (result["scratch_lm_tokenizer_mean"] - result["scratch_mean"])
    ahead = 100 * (result["warm_mean"] - result["regression_mean"])
    print(
        f"{args.rows} labelled rows, mean of {args.draws} draws: warm start {result['warm_mean']:.4f}, "
        f"from scratch {result['scratch_mean']:.4f}: {gain:+.1f} points (target >= +5); from scratch with the "
        f"language models' tokenizer {result['scratch_lm_tokenizer_mean']:.4f}: {tokenizer_part:+.1f} of them are "
        f"the tokenizer's, {gain - tokenizer_part:+.1f} the language models'; bigram logistic regression on the "
        f"same rows {result['regression_mean']:.4f} (the warm start {ahead:+.1f}; target > 0)",
        flush=True,
    )
    record("classify", {"part": "warm"}, result)
    return result


def _made_so(lm: Path, args: argparse.Namespace) -> bool:
    """Whether the run in ``lm`` is a language model made with this run's budget and --embed-init."""
    if not (lm / "model.safetensors").is_file():
        return False
    from charnn.config import parse_duration

    training = json.loads((lm / "config.json").read_text())["training"]
    same_budget = training["time_budget"] == parse_duration(args.lm_time)
    return same_budget and training.get("embed_init", "random") == args.lm_embed_init


def part_predict(work: Path, args: argparse.Namespace) -> dict:
    run = work / "default"
    if not (run / "model.safetensors").is_file():
        classify_train(run, data("train.tsv"), "1m")
    texts = [line.split("\t", 1)[1] for line in data("dev.tsv").read_text(encoding="utf-8").splitlines()]
    lines = (texts * math.ceil(10_000 / len(texts)))[:10_000]
    source = work / "lines.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    times = []
    for _ in range(3):
        with open(source, "rb") as stdin:
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "charnn", "classify", "predict", "-m", str(run)],
                stdin=stdin, stdout=subprocess.PIPE, check=True,
            )  # fmt: skip
            times.append(time.perf_counter() - started)
        assert len(out.stdout.splitlines()) == 10_000
    best = statistics.median(times)
    result = {"lines": 10_000, "seconds": [round(t, 2) for t in times], "lines_per_second": 10_000 / best}
    print(
        f"charnn classify predict, 10,000 lines end to end: median {best:.2f}s of 3 = "
        f"{result['lines_per_second']:,.0f} lines/s (target >= 1,000)",
        flush=True,
    )
    record("classify", {"part": "predict"}, result)
    return result


def part_probe(work: Path, args: argparse.Namespace) -> dict:
    from bench.probe import probes

    fwd, bwd = work / "lm-fwd", work / "lm-bwd"
    if not (fwd / "model.safetensors").is_file() or not (bwd / "model.safetensors").is_file():
        sys.exit(f"bench: the probe part reads the warm part's language models; run --parts warm --work {work} first")
    result = probes(data("train.tsv"), data("dev.tsv"), [fwd, bwd], args.rows, args.draws)
    record("classify", {"part": "probe"}, result)
    return result


PARTS = {
    "default": part_default,
    "baseline": part_baseline,
    "warm": part_warm,
    "predict": part_predict,
    "probe": part_probe,
}


def main(argv: list[str]) -> None:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m bench classify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="default,predict,warm")
    parser.add_argument("--time", default="10m")
    parser.add_argument(
        "--seeds", default="1337,1338,1339", type=lambda text: [int(x) for x in text.split(",")],
        help="default: one run a seed (the seed draws the held-out rows too), and the medians",
    )  # fmt: skip
    parser.add_argument("--lm-time", default="10m")
    parser.add_argument("--lm-embed-init", default="cooccurrence", help="the language models' --embed-init")
    parser.add_argument("--few-time", default="2m")
    parser.add_argument(
        "--reuse", action="store_true", help="warm: keep language models already in --work made with these settings"
    )
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    args.extra = extra
    with tempfile.TemporaryDirectory(prefix="charnn-bench-classify-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for part in args.parts.split(","):
            PARTS[part](work, args)


if __name__ == "__main__":
    main(sys.argv[1:])
