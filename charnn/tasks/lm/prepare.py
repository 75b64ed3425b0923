"""A new language-model run from a corpus: a stream of text, or records (a name a line, a recipe a block).

``train`` checks everything it can, makes the run folder whole (charnn.runs.folder) and
trains it with the one loop (charnn.training); ``resume=True`` goes on with a run already
there. The data is encoded once, into the run folder: resuming needs no corpus.
"""

from __future__ import annotations

__all__ = ["train"]

import hashlib
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charnn.config import ModelConfig, TrainConfig
from charnn.errors import ConfigError, CorpusError
from charnn.events import Event, Finished
from charnn.files import FolderLock
from charnn.model import RecurrentLM
from charnn.runs import folder as runfolder
from charnn.runs import names
from charnn.tasks.base import kind_to_train, load_run
from charnn.tasks.lm.encoding import Counts, encode_corpus, encode_records, write_records
from charnn.text import records as records_module
from charnn.text.corpus import Corpus, corpus_stats, split_point, token_dtype, training_sample
from charnn.tokenizers import tokenizer_for
from charnn.training.start import complete_new_run, new_run_config, request_digest, start_run

KIND = "lm"
SUBWORD_SAMPLE_CHARS = 100_000_000
"""A subword vocabulary is learnt from at most this much of the training split (its start)."""


def train(
    corpus: Corpus,
    folder: Path,
    model_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    *,
    tokenizer_kind: str = "char",
    tokenizer_options: dict[str, Any] | None = None,
    val_text: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    budget_given: bool = True,
    init_from: Path | None = None,
    reverse: bool = False,
    tokenizer_from: Path | None = None,
    records: str | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> Finished:
    """Train a new model on ``corpus``, keeping the best one in the run folder ``folder``.

    ``records`` ('line', 'blank' or a separator regex; see charnn.text.records) trains on the
    corpus as records: validation is a random sample of them, each pass reads them in a
    fresh order, and the model learns where each starts and ends.

    ``reverse`` trains a right-to-left model (it reads every text backwards: a warm start
    for the backward direction of classifiers); ``tokenizer_from`` takes another run's
    tokenizer, which must cover the corpus. ``init_from`` fine-tunes: the new run starts
    from that run's best weights, with its model settings and tokenizer (which must cover
    the corpus), and a fresh optimizer.
    ``resume`` continues the run in ``folder`` when it is this one (the same corpus; with
    ``overwrite``, the same settings too) and starts it otherwise, so that the same call
    with ``resume=True`` goes on from any instant a first call was killed at; the budget
    of ``config`` then replaces the run's if ``budget_given``. Everything that can be
    checked is checked before the folder is touched. Setting ``stop`` ends training after
    the current step with a resumable checkpoint.
    """

    config = config or TrainConfig()
    if init_from is not None and tokenizer_from is not None:  # fine-tuning keeps its run's tokenizer
        raise ConfigError(
            "--tokenizer-from and --init-from do not go together: fine-tuning reads text with the tokenizer of "
            "the run it fine-tunes; drop --tokenizer-from"
        )
    stats = corpus_stats(corpus)
    if records is not None:
        records_module.parse_format(records)  # a bad separator is refused before anything else
    request = request_digest(
        corpus_sha256=stats.sha256,
        val_sha256=hashlib.sha256(val_text.encode("utf-8")).hexdigest() if val_text is not None else None,
        model=model_options or {},
        tokenizer=[tokenizer_kind, tokenizer_options or {}],
        training=config,
        init_from=str(init_from) if init_from is not None else None,
        reverse=reverse,
        tokenizer_from=str(tokenizer_from) if tokenizer_from is not None else None,
        **({"records": records} if records is not None else {}),
    )
    plan = _Plan(corpus, stats, model_options, config, tokenizer_kind, tokenizer_options, val_text, init_from,
                 request, reverse, tokenizer_from)  # fmt: skip

    def make(folder: Path, overwrite: bool) -> FolderLock:
        runfolder.check_target(folder, overwrite)
        if records is not None:
            return _make_record_run(plan, folder, overwrite, records)
        return _make_stream_run(plan, folder, overwrite)

    return start_run(
        folder, config, stats.sha256, request, make, overwrite=overwrite, resume=resume,
        budget_given=budget_given, on_event=on_event, stop=stop, task_of=kind_to_train(folder, KIND),
    )  # fmt: skip


class _Plan:
    """What a new run is asked to be, as ``train`` was given it."""

    def __init__(
        self, corpus, stats, model_options, config, tokenizer_kind, tokenizer_options, val_text, init_from, request,
        reverse, tokenizer_from,
    ) -> None:  # noqa: ANN001  # fmt: skip
        self.corpus, self.stats, self.model_options, self.config = corpus, stats, model_options or {}, config
        self.tokenizer_kind, self.tokenizer_options, self.val_text = tokenizer_kind, tokenizer_options, val_text
        self.init_from, self.request, self.reverse, self.tokenizer_from = init_from, request, reverse, tokenizer_from
        self.covered_by = init_from if init_from is not None else tokenizer_from
        """The run whose vocabulary the new run borrows, if any."""

    def sources(self, records: bool) -> tuple[Any, Any]:
        """(the run fine-tuned from, the run whose vocabulary is borrowed), each None where not asked for."""
        source = load_run(self.init_from, kind=KIND) if self.init_from is not None else None
        refuse_styled_source(source, self.init_from)
        if source is not None and source.model.config.records and not records:
            raise ConfigError(
                f"{self.init_from} was trained on records ({records_module.record_format(source).describe()}); "
                "fine-tune it on records too: drop --records none, or pass --records"
            )
        if source is not None and records and not source.model.config.records:
            raise ConfigError(
                f"{self.init_from} was not trained on records, so it has no record boundary; "
                "fine-tune from a record run, or train afresh with --records"
            )
        if source is not None and bool((source.config.get("task") or {}).get("reverse")) != self.reverse:
            way = {False: "left to right", True: "right to left"}
            raise ConfigError(
                f"{self.init_from} reads {way[not self.reverse]}, and this run would read {way[self.reverse]}: "
                f"fine-tuning goes on in the run's direction; {'drop' if self.reverse else 'pass'} --reverse"
            )
        if source is None and self.tokenizer_from is not None:
            return None, load_run(self.tokenizer_from, kind=KIND)
        return source, source

    def tokenizer(self, vocabulary: Any, sample: Callable[[], str]) -> Any:
        if vocabulary is not None:
            return vocabulary.tokenizer
        return tokenizer_for(
            self.tokenizer_kind,
            self.tokenizer_options,
            alphabet=lambda: self.stats.alphabet + (self.val_text or ""),
            sample=sample,
        )

    def model(self, source: Any, vocab_size: int, records: bool) -> Any:
        torch.manual_seed(self.config.seed)
        if source is not None:
            return source.model
        return RecurrentLM(
            ModelConfig(vocab_size=vocab_size, **({"records": True} if records else {}), **self.model_options)
        )

    def complete(self, pending: Path, model: Any, task: dict[str, Any], tokenizer: Any, dtype: np.dtype,
                 counts: Counts, data: dict[str, Any], val_source: str) -> None:  # fmt: skip
        """Write the new run's step-0 state and config.json (charnn.training.start)."""
        data = {
            "sources": list(self.corpus.sources),
            "corpus_sha256": self.stats.sha256,
            "validation": val_source,
            **data,
        }
        complete_run(pending, model, self.config, self.request, task, tokenizer, dtype, data, counts, self.init_from)


def complete_run(pending, model, config, request, task, tokenizer, dtype, data, counts, init_from) -> None:  # noqa: ANN001
    """A new language-model run's embedding start (--embed-init), step-0 state and config.json.

    ``data`` says what the run was trained on (its first keys: sources, corpus_sha256, validation)."""
    head = {k: data[k] for k in ("sources", "corpus_sha256", "validation")}
    rest = {k: v for k, v in data.items() if k not in head}
    data = {
        **head,
        "token_dtype": dtype.name,
        **rest,
        "train_tokens": counts.train_tokens,
        "val_tokens": counts.val_tokens,
    }
    run_config = new_run_config(request, task, model, tokenizer, config, data, str(init_from) if init_from else None)
    if init_from is None and config.embed_init == "cooccurrence":
        _start_embedding(pending, model, tokenizer, dtype)
    complete_new_run(pending, model, config, model.initial_state(config.batch_size, torch.device("cpu")), run_config)


def _make_stream_run(plan: _Plan, folder: Path, overwrite: bool) -> FolderLock:
    """Make a new stream run whole beside ``folder`` and switch it in (charnn.runs.folder); returns its held lock."""
    config, stats, val_text = plan.config, plan.stats, plan.val_text
    if val_text is None:
        n_train = split_point(stats.chars, config.val_fraction)
        val_source = f"last {config.val_fraction:g} of the corpus"
    else:
        n_train, val_source = stats.chars, "--val file"
    if n_train == 0:
        raise CorpusError("the training split holds no text; lower --val-fraction or give a longer corpus")
    source, vocabulary = plan.sources(records=False)
    tokenizer = plan.tokenizer(vocabulary, lambda: training_sample(plan.corpus, n_train, SUBWORD_SAMPLE_CHARS))
    dtype = token_dtype(tokenizer.vocab_size)
    model = plan.model(source, tokenizer.vocab_size, records=False)
    with runfolder.new_run(folder, overwrite) as (pending, lock):
        counts = encode_corpus(plan.corpus, n_train, val_text, tokenizer, dtype, pending, plan.covered_by)
        counts.check(config, val_file=plan.val_text is not None)
        tokenizer.save(pending)
        data = {"train_chars": n_train, "val_chars": stats.chars - n_train if val_text is None else len(val_text)}
        data["val_first_chars"] = counts.val_first_chars  # left out of the figure, as charnn eval leaves it
        task = {"kind": KIND, "reverse": plan.reverse}
        plan.complete(pending, model, task, tokenizer, dtype, counts, data, val_source)
    return lock


def _make_record_run(plan: _Plan, folder: Path, overwrite: bool, spec: str) -> FolderLock:
    """``_make_stream_run`` for a record corpus (charnn.text.records): records are split, held out and encoded whole.

    A ``reverse`` run keeps its tokens in reading order, as a stream run does; its task reads
    each record right to left (charnn.tasks.lm.task)."""
    config = plan.config
    text = "".join(plan.corpus.chunks())
    fmt = records_module.with_joiner(records_module.parse_format(spec), text)
    train_records, val_records, val_source = records_module.split_held_out(
        text, fmt, ", ".join(plan.corpus.sources), plan.val_text, "the --val file", config.val_fraction, config.seed
    )
    source, vocabulary = plan.sources(records=True)
    tokenizer = plan.tokenizer(vocabulary, lambda: fmt.joiner.join(train_records)[:SUBWORD_SAMPLE_CHARS])
    boundary = tokenizer.vocab_size
    dtype = token_dtype(boundary + 1)
    model = plan.model(source, boundary + 1, records=True)
    with runfolder.new_run(folder, overwrite) as (pending, lock):
        counts = Counts(source=plan.covered_by)
        train_ids, starts = encode_records(train_records, tokenizer, boundary, dtype, counts)
        val_ids, _ = encode_records(val_records, tokenizer, boundary, dtype, counts)
        counts.train_tokens, counts.val_tokens = len(train_ids), len(val_ids)
        counts.check(config, val_file=plan.val_text is not None)
        write_records(pending, train_ids, starts, val_ids, fmt.joiner.join(val_records) + "\n")
        tokenizer.save(pending)
        data = {
            "train_chars": records_module.record_chars(train_records),
            "val_chars": records_module.record_chars(val_records),
            "train_records": len(train_records),
            "val_records": len(val_records),
            "longest_record": max(len(r) for r in train_records),
        }
        task = {"kind": KIND, "reverse": plan.reverse, "records": fmt.to_dict(), "record_layout": "columns"}
        plan.complete(pending, model, task, tokenizer, dtype, counts, data, val_source)
    return lock


def _start_embedding(pending: Path, model: RecurrentLM, tokenizer: Any, dtype: np.dtype) -> None:
    """--embed-init cooccurrence: the embedding starts from the training tokens' co-occurrence
    (charnn.tasks.lm.cooccurrence), contexts bounded by lines and records."""
    from charnn.tasks.lm.cooccurrence import MAX_TOKENS, cooccurrence_embedding

    ids = np.fromfile(pending / names.TRAIN_TOKENS_FILE, dtype=dtype, count=MAX_TOKENS)
    with warnings.catch_warnings(record=True):  # a corpus without line breaks: the tokenizer may not know one
        newline = [int(i) for i in tokenizer.encode("\n")]
    breaks = tuple(newline) if len(newline) == 1 and tokenizer.decode(newline) == "\n" else ()
    if model.config.records:
        breaks += (model.boundary,)
    cooccurrence_embedding(ids, model.embed.weight.data, breaks)


def refuse_styled_source(source: Any, init_from: Path | None) -> None:
    if source is not None and source.model.config.styles:
        from charnn.tasks.lm.styles import style_names

        raise ConfigError(
            f"{init_from} is conditioned on styles ({', '.join(style_names(source.config))}); fine-tune it with "
            "--style NAME=FILE (a new name adds a style)"
        )
