"""Every kind of run charnn trains, described once for the tests that every kind must pass.

tests/test_resume.py kills runs at every instant that matters and resumes them; it takes its
runs from ``KINDS``. A new kind of run (a classifier, a tagger, a style model) adds one entry
here and is covered by those tests without writing them again.

A kind says how to start a run in process (``start``) and on the command line (``command``).
``start(folder, resume=True)`` and ``command(...) + ["--resume", folder]`` are "the same
command plus --resume": they go on from wherever a first, killed call stopped. ``variant``
starts an older run, for the tests of --overwrite: "settings" differs in its settings,
"budget" only in its budget.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import CORPORA, TINY_MODEL, tiny_train_config

TEXT = (CORPORA / "fantasy.txt").read_text(encoding="utf-8")[:6000]
NAMES = "".join((CORPORA / "paint-names.txt").read_text(encoding="utf-8").splitlines(keepends=True)[:40])
"""40 records, about 7 windows a pass: a run of 30 steps reads them in 5 orders."""
MODEL = {**TINY_MODEL, "dropout": 0.1}  # dropout makes the RNG state matter
STEPS, EVAL_EVERY, LOG_EVERY = 30, 10, 5


@dataclass(frozen=True)
class RunKind:
    name: str
    start: Callable[..., Any]
    """start(folder, *, variant=None, resume=False, overwrite=False, on_event=None) -> Finished"""
    command: Callable[[Path, Path], list[str]]
    """command(workdir, folder): the `charnn` arguments that start the run (its data written into workdir)."""

    def __str__(self) -> str:
        return self.name


VARIANTS = {None: {}, "settings": {"seed": 99, "steps": 10}, "budget": {"steps": 10}}


def _language_model(  # noqa: ANN001
    folder: Path, *, variant=None, resume=False, overwrite=False, on_event=None, records: str | None = None
):
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus

    # A short warm-up, so that the schedule (and so the weights) depends on the budget early on.
    settings = {"steps": STEPS, "eval_every": EVAL_EVERY, "log_every": LOG_EVERY, "warmup_steps": 5}
    if records is not None:  # the record kind also starts its embedding from the counts
        settings["embed_init"] = "cooccurrence"
    config = tiny_train_config(**{**settings, **VARIANTS[variant]})
    text, name = (TEXT, "t") if records is None else (NAMES, "n")
    corpus = Corpus(text=text, name=name, sources=(f"{name}.txt",))
    events = {"on_event": on_event} if on_event is not None else {}
    return train(corpus, folder, MODEL, config, resume=resume, overwrite=overwrite, records=records, **events)


def _language_model_command(workdir: Path, folder: Path, records: str | None = None) -> list[str]:
    text, name = (TEXT, "t") if records is None else (NAMES, "n")
    corpus = workdir / f"{name}.txt"
    if not corpus.exists():
        corpus.write_text(text, encoding="utf-8")
    c, m = tiny_train_config(steps=STEPS, eval_every=EVAL_EVERY), MODEL
    return [
        *("train", str(corpus), "--out", str(folder)),
        *(("--records", records, "--embed-init", "cooccurrence") if records is not None else ()),
        *("--steps", str(c.steps), "--eval-every", str(c.eval_every), "--seq-len", str(c.seq_len)),
        *("--batch-size", str(c.batch_size), "--seed", str(c.seed), "--precision", c.precision),
        *("--hidden", str(m["hidden"]), "--embed", str(m["embed"]), "--dropout", str(m["dropout"])),
        *("--device", "cpu", "--warmup", "5"),
    ]


def _labelled():
    """200 short texts in two labels that a tiny model can start to tell apart."""
    from charnn.text.labelled import Labelled

    lines = [line.strip() for line in TEXT.split("\n") if len(line.strip()) > 20][:100]
    texts = tuple(lines + [line.upper() for line in lines])
    return Labelled(texts, tuple(["lower"] * len(lines) + ["upper"] * len(lines)), ("t.tsv",))


CLASSIFIER = dict(cell="lstm", layers=1, hidden=16, embed=8, dropout=0.1, bidirectional=True)


def _classifier(folder: Path, *, variant=None, resume=False, overwrite=False, on_event=None):  # noqa: ANN001
    from charnn.tasks.classify.classifier import train_classifier

    settings = {"steps": STEPS, "eval_every": EVAL_EVERY, "log_every": LOG_EVERY, "warmup_steps": 5, "batch_size": 8}
    settings["encoder_lr_scale"] = 0.5  # two rates: the encoder's and the head's
    config = tiny_train_config(**{**settings, **VARIANTS[variant]})
    events = {"on_event": on_event} if on_event is not None else {}
    return train_classifier(
        _labelled(), folder, CLASSIFIER, config, resume=resume, overwrite=overwrite, tokenizer_kind="char", **events
    )


def _classifier_command(workdir: Path, folder: Path) -> list[str]:
    data = workdir / "t.tsv"
    if not data.exists():
        data.write_text(_labelled().to_tsv(), encoding="utf-8")
    c, m = tiny_train_config(steps=STEPS, eval_every=EVAL_EVERY, batch_size=8), CLASSIFIER
    return [
        *("classify", "train", str(data), "--out", str(folder), "--tokenizer", "char"),
        *("--steps", str(c.steps), "--eval-every", str(c.eval_every), "--batch-size", str(c.batch_size)),
        *("--seed", str(c.seed), "--precision", c.precision, "--layers", "1", "--hidden", str(m["hidden"])),
        *("--embed", str(m["embed"]), "--dropout", str(m["dropout"]), "--device", "cpu", "--warmup", "5"),
        *("--encoder-lr-scale", "0.5"),
    ]


def _tagged():
    """40 sentences whose words are tagged by their case: UP, LOW, or a BIO entity of capitalised runs."""
    from charnn.text.tagged import Tagged

    lines = [line.split() for line in TEXT.split("\n") if len(line.split()) > 3][:40]
    tags = []
    for words in lines:
        row, inside = [], False
        for word in words:
            capital = word[:1].isupper()
            row.append(("I-name" if inside else "B-name") if capital else "O")
            inside = capital
        tags.append(tuple(row))
    return Tagged(tuple(tuple(words) for words in lines), tuple(tags), ("t.tags",))


TAGGER = dict(cell="lstm", layers=1, hidden=16, embed=8, dropout=0.1, bidirectional=True)


def _tagger(folder: Path, *, variant=None, resume=False, overwrite=False, on_event=None):  # noqa: ANN001
    from charnn.tasks.tag.tagger import train_tagger

    settings = {"steps": STEPS, "eval_every": EVAL_EVERY, "log_every": LOG_EVERY, "warmup_steps": 5, "batch_size": 4}
    config = tiny_train_config(**{**settings, **VARIANTS[variant]})
    events = {"on_event": on_event} if on_event is not None else {}
    return train_tagger(
        _tagged(), folder, TAGGER, config, resume=resume, overwrite=overwrite, tokenizer_kind="char", **events
    )


def _tagger_command(workdir: Path, folder: Path) -> list[str]:
    data = workdir / "t.tags"
    if not data.exists():
        data.write_text(_tagged().to_text(), encoding="utf-8")
    c, m = tiny_train_config(steps=STEPS, eval_every=EVAL_EVERY, batch_size=4), TAGGER
    return [
        *("tag", "train", str(data), "--out", str(folder)),
        *("--steps", str(c.steps), "--eval-every", str(c.eval_every), "--batch-size", str(c.batch_size)),
        *("--seed", str(c.seed), "--precision", c.precision, "--layers", "1", "--hidden", str(m["hidden"])),
        *("--embed", str(m["embed"]), "--dropout", str(m["dropout"]), "--device", "cpu", "--warmup", "5"),
    ]


def _styled(folder: Path, *, variant=None, resume=False, overwrite=False, on_event=None):  # noqa: ANN001
    """Two styles, prose and names (records), two rows of the batch each: their passes end at different steps."""
    from charnn.tasks.lm.style_runs import StyleData, train_styles
    from charnn.text.corpus import Corpus

    settings = {"steps": STEPS, "eval_every": EVAL_EVERY, "log_every": LOG_EVERY, "warmup_steps": 5}
    config = tiny_train_config(**{**settings, **VARIANTS[variant]})
    styles = [
        StyleData("prose", Corpus(text=TEXT, name="t", sources=("t.txt",))),
        StyleData("names", Corpus(text=NAMES, name="n", sources=("n.txt",)), records="line"),
    ]
    events = {"on_event": on_event} if on_event is not None else {}
    return train_styles(styles, folder, MODEL, config, resume=resume, overwrite=overwrite, **events)


def _styled_command(workdir: Path, folder: Path) -> list[str]:
    for name, text in (("t", TEXT), ("n", NAMES)):
        if not (workdir / f"{name}.txt").exists():
            (workdir / f"{name}.txt").write_text(text, encoding="utf-8")
    command = _language_model_command(workdir, folder)
    at = command.index(str(workdir / "t.txt"))
    styles = [
        "--style",
        f"prose={workdir / 't.txt'}",
        "--style",
        f"names={workdir / 'n.txt'}",
        "--records",
        "names=line",
    ]
    return command[:at] + styles + command[at + 1 :]


KINDS = [
    RunKind("language-model", _language_model, _language_model_command),
    RunKind("classifier", _classifier, _classifier_command),
    RunKind("tagger", _tagger, _tagger_command),
    RunKind(
        "record-model",
        functools.partial(_language_model, records="line"),
        functools.partial(_language_model_command, records="line"),
    ),
    RunKind("style-model", _styled, _styled_command),
]
