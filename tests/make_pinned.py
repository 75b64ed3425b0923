"""Regenerate tests/data/pinned: tiny runs of every kind and what the charnn command line prints for them.

The fixtures pin today's behaviour so that a refactor can be checked to give byte-identical
output (tests/test_pinned.py replays every command). Only the command line is used
(`python -m charnn ...`), never charnn's modules, so the script works before and after the
package layout changes. Regenerate only on purpose, with the code whose behaviour is pinned:

    python tests/make_pinned.py

(or, to pin an older commit's behaviour: ``git worktree add /tmp/pin COMMIT``, then from /tmp/pin
``PYTHONPATH=/tmp/pin python /path/to/tests/make_pinned.py``; it names the charnn it runs.)

Every command runs in a scratch folder holding ``inputs/`` (copied from tests/data/pinned/inputs)
and the run folders it names under ``runs/``, with relative paths, so that what it prints
(which names the run folder) does not depend on where the scratch folder is.
``python tests/make_pinned.py --expected-only`` keeps inputs/ and runs/ and rewrites expected/.
Writes:

- ``inputs/``: the texts the runs are trained on and the texts predicted and scored, cut from
  corpora/ (fantasy.txt, paint-names.txt, recipes.txt) so that no data set is copied in.
- ``runs/``: a language model, a record model, a style model, a sentence classifier and a word
  tagger, each trained for 60 steps of a 60-step budget (resumable to more steps).
- ``expected/<id>.out``: the stdout of each command (stderr holds timings and is not pinned);
  for a command that trains, followed by what it leaves behind (see ``observe``).
- ``manifest.json``: for each case its id, the runs it needs, its argv, its input files and
  its expected file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINNED = ROOT / "tests" / "data" / "pinned"
CORPORA = ROOT / "corpora"
SOURCES = {"v1": "tests/data/v1-run"}
"""Run folders that are not made here: the name they take under runs/, their path in the repository."""

# Keys of metrics.jsonl events and config.json that hold wall-clock times, dates or speeds.
TIMING_KEYS = frozenset({"elapsed", "elapsed_seconds", "chars_per_sec", "tokens_per_sec", "created", "time"})
WEIGHT_FILES = ("model.safetensors",)
STATE_FILES = ("resume.safetensors",)
"""Hashed by their tensors only: their metadata holds the time a run has taken."""

SEED = "7"
LM = [
    *("--steps", "60", "--eval-every", "20", "--seq-len", "32", "--batch-size", "4", "--layers", "2"),
    *("--hidden", "32", "--embed", "16", "--dropout", "0.1", "--warmup", "5", "--seed", SEED),
    *("--device", "cpu", "--precision", "fp32"),
]
ENCODER = [
    *("--steps", "60", "--eval-every", "20", "--layers", "1", "--hidden", "16", "--embed", "8"),
    *("--dropout", "0.1", "--warmup", "5", "--seed", SEED, "--device", "cpu", "--precision", "fp32"),
]
TRAIN = {
    "lm": ["train", "inputs/fantasy.txt", "--out", "runs/lm", *LM],
    "records": [
        *("train", "inputs/names.txt", "--records", "line", "--embed-init", "cooccurrence"),
        *("--out", "runs/records", *LM),
    ],
    "styles": [
        *("train", "--style", "prose=inputs/fantasy.txt", "--style", "names=inputs/names.txt"),
        *("--records", "names=line", "--out", "runs/styles", *LM),
    ],
    "classifier": [
        *("classify", "train", "inputs/labelled.tsv", "--out", "runs/classifier", "--tokenizer", "bpe"),
        *("--vocab-size", "400", "--batch-size", "8", "--encoder-lr-scale", "0.5", *ENCODER, "--no-ngrams"),
    ],
    "tagger": [
        *("tag", "train", "inputs/tagged.tsv", "--out", "runs/tagger", "--batch-size", "4", *ENCODER),
    ],
}
"""How each run in runs/ is made (60 steps of a 60-step budget)."""
RESUME = {
    "lm": ["train"],
    "records": ["train"],
    "styles": ["train"],
    "classifier": ["classify", "train"],
    "tagger": ["tag", "train"],
    "v1": ["train"],
}
"""The verb that resumes each run."""
RESUME_STEPS = {**dict.fromkeys(TRAIN, 80), "v1": 30}
"""The budget each run is resumed to: 20 or 10 (v1) steps more than it was trained for."""


def case(id: str, runs: list[str], argv: list[str], inputs: list[str] = (), *, trains: str | None = None) -> dict:
    """One pinned command: ``trains`` names the run folder (under runs/) whose files it changes."""
    return {
        "id": id,
        "runs": {name: SOURCES.get(name, f"tests/data/pinned/runs/{name}") for name in runs},
        "argv": argv,
        "inputs": [f"inputs/{name}" for name in inputs],
        "trains": trains,
        "expected": f"expected/{id}.out",
    }


def cases() -> list[dict]:
    out = []
    for name in ("lm", "v1"):
        m = ["-m", f"runs/{name}"]
        out += [
            case(f"{name}-sample", [name], ["sample", *m, "--prime", "The ", "--length", "300", "--seed", "1"]),
            case(
                f"{name}-sample-greedy", [name], ["sample", *m, "--prime", "Alice ", "--length", "120", "--temp", "0"]
            ),
            case(
                f"{name}-sample-topk-topp",
                [name],
                ["sample", *m, "--length", "80", "-n", "3", "--top-k", "5", "--top-p", "0.9", "--seed", "2"],
            ),
            case(
                f"{name}-sample-stop",
                [name],
                [
                    "sample",
                    *m,
                    "--prime",
                    "the",
                    "--stop",
                    "e ",
                    "--stop",
                    "\\n",
                    "--no-echo",
                    "-n",
                    "2",
                    "--seed",
                    "3",
                ],
            ),
            case(f"{name}-eval-val", [name], ["eval", *m, "--json"]),
            case(f"{name}-eval-val-text", [name], ["eval", *m]),
            case(f"{name}-info", [name], ["info", f"runs/{name}"]),
            case(f"{name}-info-json", [name], ["info", f"runs/{name}", "--json"]),
            case(f"{name}-plot", [name], ["plot", f"runs/{name}"]),
        ]
    out += [
        case(
            "lm-eval-heldout",
            ["lm"],
            ["eval", "inputs/fantasy-heldout.txt", "-m", "runs/lm", "--json"],
            ["fantasy-heldout.txt"],
        ),
        case("lm-grads", ["lm"], ["grads", "-m", "runs/lm", "-L", "12", "--samples", "4", "--seed", "3", "--json"]),
    ]
    m = ["-m", "runs/records"]
    out += [
        case("records-sample", ["records"], ["sample", *m, "-n", "6", "--seed", "1"]),
        case("records-sample-prime", ["records"], ["sample", *m, "-n", "3", "--prime", "Old ", "--seed", "4"]),
        case("records-sample-json", ["records"], ["sample", *m, "-n", "4", "--seed", "5", "--json"]),
        case("records-sample-novel", ["records"], ["sample", *m, "-n", "3", "--seed", "6", "--novel", "--temp", "0.5"]),
        case(
            "records-eval-heldout",
            ["records"],
            ["eval", "inputs/names-heldout.txt", *m, "--json"],
            ["names-heldout.txt"],
        ),
        case("records-eval-val", ["records"], ["eval", *m, "--json"]),
        case("records-info-json", ["records"], ["info", "runs/records", "--json"]),
    ]
    m = ["-m", "runs/styles"]
    out += [
        case(
            "styles-sample-prose",
            ["styles"],
            ["sample", *m, "--style", "prose", "--prime", "The ", "--length", "200", "--seed", "1"],
        ),
        case("styles-sample-names", ["styles"], ["sample", *m, "--style", "names", "-n", "4", "--seed", "2"]),
        case(
            "styles-sample-blend",
            ["styles"],
            ["sample", *m, "--style", "prose=0.5,names=0.5", "--length", "100", "--seed", "3"],
        ),
        case("styles-eval-val", ["styles"], ["eval", *m, "--json"]),
        case(
            "styles-eval-all",
            ["styles"],
            ["eval", "inputs/fantasy-heldout.txt", *m, "--all-styles", "--json"],
            ["fantasy-heldout.txt"],
        ),
        case("styles-eval-all-text", ["styles"], ["eval", "inputs/names-heldout.txt", *m], ["names-heldout.txt"]),
        case(
            "styles-eval-style",
            ["styles"],
            ["eval", "inputs/fantasy-heldout.txt", *m, "--style", "prose", "--json"],
            ["fantasy-heldout.txt"],
        ),
        case("styles-info-json", ["styles"], ["info", "runs/styles", "--json"]),
    ]
    m = ["-m", "runs/classifier"]
    out += [
        case(
            "classifier-predict", ["classifier"], ["classify", "predict", "inputs/classify.txt", *m], ["classify.txt"]
        ),
        case(
            "classifier-predict-probs",
            ["classifier"],
            ["classify", "predict", "inputs/classify.txt", *m, "--probs"],
            ["classify.txt"],
        ),
        case(
            "classifier-predict-json",
            ["classifier"],
            ["classify", "predict", "inputs/classify.txt", *m, "--json"],
            ["classify.txt"],
        ),
        case(
            "classifier-eval",
            ["classifier"],
            ["classify", "eval", "inputs/labelled-heldout.tsv", *m],
            ["labelled-heldout.tsv"],
        ),
        case(
            "classifier-eval-json",
            ["classifier"],
            ["classify", "eval", "inputs/labelled-heldout.tsv", *m, "--json"],
            ["labelled-heldout.tsv"],
        ),
        case("classifier-info-json", ["classifier"], ["info", "runs/classifier", "--json"]),
    ]
    m = ["-m", "runs/tagger"]
    out += [
        case("tagger-predict", ["tagger"], ["tag", "predict", "inputs/tag.txt", *m], ["tag.txt"]),
        case("tagger-predict-probs", ["tagger"], ["tag", "predict", "inputs/tag.txt", *m, "--probs"], ["tag.txt"]),
        case("tagger-predict-json", ["tagger"], ["tag", "predict", "inputs/tag.txt", *m, "--json"], ["tag.txt"]),
        case(
            "tagger-predict-tokens",
            ["tagger"],
            ["tag", "predict", "inputs/tagged-heldout.tsv", "--tokens", *m],
            ["tagged-heldout.tsv"],
        ),
        case("tagger-eval", ["tagger"], ["tag", "eval", "inputs/tagged-heldout.tsv", *m], ["tagged-heldout.tsv"]),
        case(
            "tagger-eval-json",
            ["tagger"],
            ["tag", "eval", "inputs/tagged-heldout.tsv", *m, "--json"],
            ["tagged-heldout.tsv"],
        ),
        case("tagger-info-json", ["tagger"], ["info", "runs/tagger", "--json"]),
    ]
    for name, verb in RESUME.items():
        out.append(
            case(
                f"{name}-resume",
                [name],
                [*verb, "--resume", f"runs/{name}", "--steps", str(RESUME_STEPS[name])],
                trains=name,
            )
        )
    for name, argv in TRAIN.items():
        inputs = [a.split("=")[-1].removeprefix("inputs/") for a in argv if "inputs/" in a]
        out.append(case(f"{name}-train", [], argv, inputs, trains=name))
    return out


def drop_timings(value):
    """``value`` without the keys (at any depth) that hold times or speeds."""
    if isinstance(value, dict):
        return {k: drop_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [drop_timings(v) for v in value]
    return value


def observe(entry: dict, workdir: Path, stdout: bytes) -> bytes:
    """What a case is checked by: its stdout and, for a command that trains, its run folder's
    tensors (see ``fingerprint``), its metrics.jsonl and config.json, less wall-clock times and speeds."""
    if not entry["trains"]:
        return stdout
    folder = workdir / "runs" / entry["trains"]
    lines = [stdout.decode("utf-8"), "--- weights"]
    for name in (*WEIGHT_FILES, *STATE_FILES):
        lines += [f"{name}  {line}" for line in fingerprint(folder / name)]
    lines.append("--- metrics.jsonl")
    for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        lines.append(json.dumps(drop_timings(json.loads(line)), sort_keys=True))
    lines.append("--- config.json")
    lines.append(
        json.dumps(
            drop_timings(json.loads((folder / "config.json").read_text(encoding="utf-8"))), indent=1, sort_keys=True
        )
    )
    return ("\n".join(lines) + "\n").encode("utf-8")


def fingerprint(path: Path) -> list[str]:
    """One line per tensor of a safetensors file, not its metadata (which holds times): its name,
    dtype and shape, and then, for floating-point tensors, the sums of its absolute values and of
    its squares and its largest magnitude (compared to a relative 1e-4 by ``same``: a different CPU
    rounds a few last bits differently, a change of behaviour moves them by far more); for any
    other tensor (counters, random states) the sha256 of its bytes, compared exactly. The attention
    pooling's bias (and its Adam moments) get dtype and shape only: a softmax ignores a shift, so its
    gradient is zero but for rounding, and Adam turns that rounding into steps whose values are each
    CPU's own (an Intel Xeon's run ends 3e-4 apart from an AMD EPYC's, where every other tensor agrees
    to 1e-9)."""
    import torch
    from safetensors.torch import load_file

    lines = []
    for name, tensor in sorted(load_file(path).items()):
        shape = "x".join(str(size) for size in tensor.shape) or "scalar"
        head = f"{name}  {str(tensor.dtype).removeprefix('torch.')} {shape}"
        if name.endswith("attention.bias") and not name.startswith("optim.step."):
            lines.append(f"{head}  rounding only")
        elif tensor.is_floating_point():
            values = tensor.double().abs()
            largest = values.max().item() if values.numel() else 0.0
            lines.append(f"{head}  abs {values.sum().item()!r}  sq {values.square().sum().item()!r}  max {largest!r}")
        else:
            raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            lines.append(f"{head}  sha256 {hashlib.sha256(raw).hexdigest()}")
    return lines


NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][-+]?\d+)?")
RTOL = 1e-4


def same(got: bytes, expected: bytes) -> bool:
    """Whether a case printed what was pinned: the same bytes, or the same bytes but for numbers
    with a fraction or an exponent that differ by at most a relative RTOL or one unit of their last
    printed digit. Floating-point sums round their last bits differently on different CPUs (AVX-512
    or AVX2, Intel or AMD; the fixtures' machine need not be the one that replays them); integers,
    text and every other byte must match exactly."""
    if got == expected:
        return True
    if NUMBER.sub(b"#", got) != NUMBER.sub(b"#", expected):
        return False
    for a, b in zip(NUMBER.finditer(got), NUMBER.finditer(expected), strict=True):
        if a.group() == b.group():
            continue
        if not (a.group(1) or a.group(2)) or not (b.group(1) or b.group(2)):
            return False  # an integer: a count, a step, a seed
        x, y = float(a.group()), float(b.group())
        decimals = max(len(a.group(1) or b"."), len(b.group(1) or b".")) - 1  # the fraction's digits, less its dot
        last = 0.0 if a.group(2) or b.group(2) else 10.0**-decimals  # one unit of the last printed digit
        if abs(x - y) > max(RTOL * max(abs(x), abs(y)), last):
            return False
    return True


def stage(entry: dict, workdir: Path, pinned: Path = PINNED) -> None:
    """Lay out a case's scratch folder: its inputs and a copy of each run it needs."""
    for name in entry["inputs"]:
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pinned / name, workdir / name)
    for name, source in entry["runs"].items():
        shutil.copytree(ROOT / source, workdir / "runs" / name)


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARNN_")}
    env.update(OMP_NUM_THREADS="1", COLUMNS="100", LINES="40", TERM="dumb")
    return env


def charnn(argv: list[str], cwd: Path, *, module: bool = True) -> bytes:
    """`python -m charnn ARGV` in cwd (with module=False, `python ARGV`); returns its stdout."""
    command = [sys.executable, *(("-m", "charnn") if module else ()), *argv]
    result = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"charnn {' '.join(argv)} failed ({result.returncode}):\n{result.stderr.decode()}")
    return result.stdout


def write_inputs(folder: Path) -> None:
    """Small texts cut from corpora/ (the project's own public-domain or made-up texts)."""
    folder.mkdir(parents=True, exist_ok=True)
    fantasy = (CORPORA / "fantasy.txt").read_text(encoding="utf-8")
    (folder / "fantasy.txt").write_text(fantasy[:6000], encoding="utf-8")
    (folder / "fantasy-heldout.txt").write_text(fantasy[6000:7500], encoding="utf-8")
    names = (CORPORA / "paint-names.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "names.txt").write_text("".join(names[:60]), encoding="utf-8")
    (folder / "names-heldout.txt").write_text("".join(names[60:75]), encoding="utf-8")

    # A sentence classifier: a line of a story or a line of a recipe.
    story = [" ".join(line.split()) for line in fantasy[:40000].split("\n") if len(line.split()) >= 5]
    recipes = (CORPORA / "recipes.txt").read_text(encoding="utf-8").split("\n")
    cooking = [" ".join(line.lstrip("-0123456789. ").split()) for line in recipes if len(line.split()) >= 5]
    rows = [("story", t) for t in story[:120]] + [("recipe", t) for t in cooking[:120]]
    held = [("story", t) for t in story[120:140]] + [("recipe", t) for t in cooking[120:140]]
    rows, held = interleave(rows), interleave(held)
    (folder / "labelled.tsv").write_text("".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
    (folder / "labelled-heldout.tsv").write_text(
        "".join(f"{label}\t{text}\n" for label, text in held), encoding="utf-8"
    )
    (folder / "classify.txt").write_text("".join(f"{text}\n" for _, text in held[:12]), encoding="utf-8")

    # A word tagger: capitalised runs of words are BIO entities (as tests/run_kinds.py tags them).
    sentences = [line.split() for line in fantasy[:40000].split("\n") if len(line.split()) > 3]
    (folder / "tagged.tsv").write_text("".join(tagged(words) for words in sentences[:80]), encoding="utf-8")
    (folder / "tagged-heldout.tsv").write_text("".join(tagged(words) for words in sentences[80:100]), encoding="utf-8")
    (folder / "tag.txt").write_text("".join(" ".join(words) + "\n" for words in sentences[100:108]), encoding="utf-8")


def interleave(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    half = len(rows) // 2
    return [row for pair in zip(rows[:half], rows[half:]) for row in pair]


def tagged(words: list[str]) -> str:
    lines, inside = [], False
    for word in words:
        capital = word[:1].isupper()
        lines.append(f"{word}\t{('I-name' if inside else 'B-name') if capital else 'O'}\n")
        inside = capital
    return "".join(lines) + "\n"


def main() -> None:
    """Remake everything; with --expected-only, keep the inputs and runs and rewrite only what the
    commands print (after a change to ``observe``, or to pin a deliberate change of output)."""
    keep = sys.argv[1:] == ["--expected-only"]
    if sys.argv[1:] and not keep:
        raise SystemExit("usage: python tests/make_pinned.py [--expected-only]")
    for name in ("expected",) if keep else ("inputs", "runs", "expected"):
        shutil.rmtree(PINNED / name, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)  # run from here, as each command is: not from a checkout that holds another charnn
        where = charnn(["-c", "import charnn; print(charnn.__file__)"], work, module=False).decode().strip()
        print(f"pinning the behaviour of {where}", file=sys.stderr)
        if not keep:
            write_inputs(PINNED / "inputs")
            shutil.copytree(PINNED / "inputs", work / "inputs")
            for argv in TRAIN.values():
                charnn(argv, work)
            shutil.copytree(work / "runs", PINNED / "runs")

    manifest = cases()
    (PINNED / "expected").mkdir()
    for entry in manifest:
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            stage(entry, work)
            result = observe(entry, work, charnn(entry["argv"], work))
        (PINNED / entry["expected"]).write_bytes(result)
        print(f"{entry['id']:<28} {len(result):>6} bytes", file=sys.stderr)
    note = "Written by tests/make_pinned.py; replayed by tests/test_pinned.py. Paths are relative to a scratch folder."
    (PINNED / "manifest.json").write_text(
        json.dumps({"note": note, "cases": manifest}, indent=1) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
