"""Training: set a run up (new, resumed or fine-tuned) and run charnn.loop.Loop on it.

Truncated BPTT over a laid-out stream, with clipping, a schedule, validation, the
best model kept, exact resume, and a guard against NaN/Inf. The trainer knows nothing
of terminals: it reports through ``on_event`` with the dataclasses of charnn.events,
and the CLI decides how to show them.
"""

from __future__ import annotations

__all__ = ["clip_gradients", "lr_at", "make_optimizer", "resume", "train"]

import dataclasses
import hashlib
import itertools
import json
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charnn import checkpoint, runfolder, tasks
from charnn import records as records_module
from charnn.config import ModelConfig, TrainConfig
from charnn.data import Corpus, TBPTTStream, corpus_stats, split_pieces, split_point, token_dtype, training_sample
from charnn.device import resolve_device
from charnn.distributed import init_world
from charnn.errors import CheckpointError, ConfigError, CorpusError, RunFolderError
from charnn.events import Event, Finished, Notice
from charnn.files import FolderLock
from charnn.loop import Loop, clip_gradients, lr_at, make_optimizer
from charnn.model import RecurrentLM
from charnn.resume import Position, save_resume
from charnn.tokenizers import build_tokenizer, load_tokenizer


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

    ``records`` ('line', 'blank' or a separator regex; see charnn.records) trains on the
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

    def make(folder: Path, overwrite: bool) -> FolderLock:
        return _make_run(
            corpus, stats, folder, model_options, config, tokenizer_kind, tokenizer_options,
            val_text, overwrite, init_from, request, reverse, tokenizer_from, records,
        )  # fmt: skip

    return start_run(
        folder, config, stats.sha256, request, make, overwrite=overwrite, resume=resume,
        budget_given=budget_given, on_event=on_event, stop=stop,
    )  # fmt: skip


def start_run(
    folder: Path,
    config: TrainConfig,
    data_sha256: str,
    request: str,
    make: Callable[[Path, bool], FolderLock],
    *,
    overwrite: bool,
    resume: bool,
    budget_given: bool,
    on_event: Callable[[Event], None],
    stop: threading.Event | None,
) -> Finished:
    """Start (or, asked to ``resume``, continue) a run of any kind, then train it.

    ``make(folder, overwrite)`` makes a new run's folder whole (charnn.runfolder.new_run)
    and returns its held lock; ``request`` is the digest of what the run is asked to be
    and ``data_sha256`` that of its data (see ``train``).
    """
    folder = _unlinked(Path(folder))
    world, device = init_world(resolve_device(config.device))
    world.rows(config.batch_size)  # fails early if the batch does not split over the processes
    going_on = replace = False
    if world.main:
        going_on, replace = _continue_or_start(folder, data_sha256, request, config, overwrite, resume, on_event)
    going_on = bool(world.max(float(going_on))[0])  # rank 0 decides for all
    lock = None
    try:
        if world.main:
            lock = runfolder.hold(folder) if going_on else make(folder, overwrite or replace)
        world.barrier()
        budget = (config.steps, config.time_budget) if budget_given or not going_on else None
        return _train_in(folder, world, device, budget, on_event, stop, resumed=going_on)
    finally:
        if lock is not None:
            lock.release()


_LATER_SETTINGS = {"embed_init": "random", "encoder_lr_scale": 1.0}
"""Settings added after runs were first made: at these defaults they stay out of a request's
digest, so that a run which leaves them alone keeps the digest an older version gave it."""


def request_digest(*, training: TrainConfig, **request: Any) -> str:
    """A digest of what a new run is asked to be (its budget and device aside): it tells a run from an older one."""
    request["training"] = {
        k: v
        for k, v in training.to_dict().items()
        if k not in ("steps", "time_budget", "device") and _LATER_SETTINGS.get(k, object()) != v
    }
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _continue_or_start(folder, corpus_sha256, request, config, overwrite, resume, on_event) -> tuple[bool, bool]:  # noqa: ANN001
    """(continue the run in ``folder``, replace what it holds) for a train call asked to ``resume``."""
    runfolder.recover(folder)
    state = runfolder.folder_state(folder)
    if not resume:
        runfolder.check_target(folder, overwrite)
        return False, False
    if state != "run":
        runfolder.check_target(folder, overwrite=True)  # debris of a killed run may go; a user's files may not
        on_event(Notice(f"{folder} holds no run to resume yet; starting it afresh"))
        return False, state == "unfinished"
    existing = checkpoint.check_run_folder(folder, for_resume=True, recover=False)
    same_corpus = existing.get("data", {}).get("corpus_sha256") == corpus_sha256
    started = existing.get("training", {})
    same_budget = (started.get("steps"), started.get("time_budget")) == (config.steps, config.time_budget)
    if existing.get("request") == request and (same_budget or not overwrite):
        return True, False
    if overwrite:
        return False, True  # an older run (its settings or budget differ): --overwrite replaces it
    if not same_corpus:
        raise ConfigError(
            f"the corpus differs from the one {folder} was trained on; "
            "pass --overwrite to start a new run there, or --out to choose another folder"
        )
    if "request" in existing:  # runs made before requests were recorded have none to compare
        on_event(
            Notice(
                f"{folder} goes on with the settings it was started with, not those given here "
                "(pass --overwrite to start it over with them)"
            )
        )
    return True, False


def _make_run(
    corpus, stats, folder, model_options, config, tokenizer_kind, tokenizer_options, val_text, overwrite, init_from,
    request, reverse=False, tokenizer_from=None, records=None,
) -> FolderLock:  # noqa: ANN001  # fmt: skip
    """Make the new run whole beside ``folder`` and switch it in (charnn.runfolder); returns its held lock."""
    runfolder.check_target(folder, overwrite)
    if records is not None:
        return _make_record_run(
            corpus, stats, folder, model_options, config, tokenizer_kind, tokenizer_options, val_text, overwrite,
            init_from, request, tokenizer_from, records, reverse,
        )  # fmt: skip
    if val_text is None:
        n_train = split_point(stats.chars, config.val_fraction)
        val_source = f"last {config.val_fraction:g} of the corpus"
    else:
        n_train, val_source = stats.chars, "--val file"
    if n_train == 0:
        raise CorpusError("the training split holds no text; lower --val-fraction or give a longer corpus")
    source = checkpoint.load_run(init_from, kind="lm") if init_from is not None else None
    _refuse_styled_source(source, init_from)
    if source is not None and source.model.config.records:
        raise ConfigError(
            f"{init_from} was trained on records ({records_module.record_format(source).describe()}); "
            "fine-tune it on records too: drop --records none, or pass --records"
        )
    vocabulary = source or (checkpoint.load_run(tokenizer_from, kind="lm") if tokenizer_from is not None else None)
    tokenizer = (
        vocabulary.tokenizer
        if vocabulary is not None
        else _build_tokenizer(tokenizer_kind, tokenizer_options or {}, corpus, stats, n_train, val_text)
    )
    covered_by = init_from if init_from is not None else tokenizer_from
    dtype = token_dtype(tokenizer.vocab_size)
    torch.manual_seed(config.seed)
    if source is not None:
        model = source.model
    else:
        model = RecurrentLM(ModelConfig(vocab_size=tokenizer.vocab_size, **(model_options or {})))
    with runfolder.new_run(folder, overwrite) as (pending, lock):
        counts = _encode(corpus, n_train, val_text, tokenizer, dtype, pending, covered_by)
        _check_counts(counts, config)
        tokenizer.save(pending)
        data = {
            "train_chars": n_train,
            "val_chars": stats.chars - n_train if val_text is None else len(val_text),
        }
        task = {"kind": "lm", "reverse": reverse}
        _complete_run(
            pending, model, config, request, task, tokenizer, corpus.sources, stats.sha256, val_source, dtype, counts,
            data, init_from,
        )  # fmt: skip
    return lock


def _complete_run(
    pending, model, config, request, task, tokenizer, sources, sha256, val_source, dtype, counts, data, init_from,
) -> None:  # noqa: ANN001  # fmt: skip
    """Write a new language-model run's step-0 resume state, then its config.json (which marks it complete)."""
    run_config = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "request": request,
        "task": task,
        "model": model.config.to_dict(),
        "tokenizer": {"kind": tokenizer.kind, "file": tokenizer.file_name},
        "training": config.to_dict(),
        "data": {
            "sources": list(sources),
            "corpus_sha256": sha256,
            "validation": val_source,
            "token_dtype": dtype.name,
            **data,
            "train_tokens": counts.train_tokens,
            "val_tokens": counts.val_tokens,
        },
    }
    if init_from is not None:
        run_config["init_from"] = str(init_from)
    elif config.embed_init == "cooccurrence":
        _start_embedding(pending, model, tokenizer, dtype)
    # The step-0 state, with the RNG as initialisation left it: the run starts by resuming it.
    carry = model.initial_state(config.batch_size, torch.device("cpu"))
    save_resume(pending, model, make_optimizer(model, config), carry, Position())
    checkpoint.write_config(pending, run_config)  # last: it marks the pending run complete


def _start_embedding(pending: Path, model: RecurrentLM, tokenizer: Any, dtype: np.dtype) -> None:
    """--embed-init cooccurrence: the embedding starts from the training tokens' co-occurrence
    (charnn.cooccurrence), contexts bounded by lines and records."""
    from charnn.cooccurrence import MAX_TOKENS, cooccurrence_embedding

    ids = np.fromfile(pending / checkpoint.TRAIN_TOKENS_FILE, dtype=dtype, count=MAX_TOKENS)
    with warnings.catch_warnings(record=True):  # a corpus without line breaks: the tokenizer may not know one
        newline = [int(i) for i in tokenizer.encode("\n")]
    breaks = tuple(newline) if len(newline) == 1 and tokenizer.decode(newline) == "\n" else ()
    if model.config.records:
        breaks += (model.boundary,)
    cooccurrence_embedding(ids, model.embed.weight.data, breaks)


def _make_record_run(
    corpus, stats, folder, model_options, config, tokenizer_kind, tokenizer_options, val_text, overwrite, init_from,
    request, tokenizer_from, spec, reverse=False,
) -> FolderLock:  # noqa: ANN001  # fmt: skip
    """``_make_run`` for a record corpus (charnn.records): records are split, held out and encoded whole.

    A ``reverse`` run keeps its tokens in reading order, as a stream run does; its task reads
    each record right to left (charnn.tasks.lm)."""
    text = "".join(corpus.chunks())
    fmt = records_module.with_joiner(records_module.parse_format(spec), text)
    every = records_module.split(text, fmt, ", ".join(corpus.sources))
    if val_text is None:
        chosen = set(records_module.held_out(len(every), config.val_fraction, config.seed).tolist())
        train_records = [r for i, r in enumerate(every) if i not in chosen]
        val_records = [r for i, r in enumerate(every) if i in chosen]
        val_source = f"a random {config.val_fraction:g} of the records (seed {config.seed})"
    else:
        train_records, val_source = every, "--val file"
        val_records = records_module.split(val_text, fmt, "the --val file", minimum=1)
    source = checkpoint.load_run(init_from, kind="lm") if init_from is not None else None
    _refuse_styled_source(source, init_from)
    if source is not None and not source.model.config.records:
        raise ConfigError(
            f"{init_from} was not trained on records, so it has no record boundary; "
            "fine-tune from a record run, or train afresh with --records"
        )
    vocabulary = source or (checkpoint.load_run(tokenizer_from, kind="lm") if tokenizer_from is not None else None)
    if vocabulary is not None:
        tokenizer = vocabulary.tokenizer
    elif tokenizer_kind == "char":
        tokenizer = build_tokenizer("char", stats.alphabet + (val_text or ""), **(tokenizer_options or {}))
    else:
        sample = fmt.joiner.join(train_records)[:SUBWORD_SAMPLE_CHARS]
        tokenizer = build_tokenizer(tokenizer_kind, sample, **(tokenizer_options or {}))
    boundary = tokenizer.vocab_size
    dtype = token_dtype(boundary + 1)
    torch.manual_seed(config.seed)
    if source is not None:
        model = source.model
    else:
        model = RecurrentLM(ModelConfig(vocab_size=boundary + 1, records=True, **(model_options or {})))
    covered_by = init_from if init_from is not None else tokenizer_from
    with runfolder.new_run(folder, overwrite) as (pending, lock):
        counts = _Counts(source=covered_by)
        train_ids, starts = _encode_records(train_records, tokenizer, boundary, dtype, counts)
        val_ids, _ = _encode_records(val_records, tokenizer, boundary, dtype, counts)
        counts.train_tokens, counts.val_tokens = len(train_ids), len(val_ids)
        _check_counts(counts, config)
        (pending / checkpoint.TRAIN_TOKENS_FILE).write_bytes(train_ids.tobytes())
        (pending / checkpoint.TRAIN_RECORDS_FILE).write_bytes(starts.tobytes())
        (pending / checkpoint.VAL_TOKENS_FILE).write_bytes(val_ids.tobytes())
        (pending / checkpoint.VALIDATION_FILE).write_text(fmt.joiner.join(val_records) + "\n", encoding="utf-8")
        tokenizer.save(pending)
        data = {
            "train_chars": records_module.record_chars(train_records),
            "val_chars": records_module.record_chars(val_records),
            "train_records": len(train_records),
            "val_records": len(val_records),
            "longest_record": max(len(r) for r in train_records),
        }
        task = {"kind": "lm", "reverse": reverse, "records": fmt.to_dict(), "record_layout": "columns"}
        _complete_run(
            pending, model, config, request, task, tokenizer, corpus.sources, stats.sha256, val_source, dtype, counts,
            data, init_from,
        )  # fmt: skip
    return lock


@dataclass(frozen=True)
class StyleData:
    """One style of a conditional run, as ``train_styles`` takes it."""

    name: str
    corpus: Corpus
    records: str | None = None
    """Its record format ('line', 'blank', a separator regex), or None: a stream."""
    val_text: str | None = None


def train_styles(
    styles: list[StyleData],
    folder: Path,
    model_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    *,
    tokenizer_kind: str = "char",
    tokenizer_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    budget_given: bool = True,
    init_from: Path | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> Finished:
    """Train one conditional model on several styles (charnn.styles); ``train``'s other options
    mean what they mean there. Each style keeps its own split and record format."""
    config = config or TrainConfig()
    if len(styles) < 1:
        raise ConfigError("name at least one style: --style NAME=FILE")
    for style in styles:
        if style.records is not None:
            records_module.parse_format(style.records)  # a bad separator is refused before anything is read
    from charnn.styles import rows_per_style

    rows_per_style(config.batch_size, len(styles))
    shas = []
    for style in styles:
        try:
            shas.append(corpus_stats(style.corpus).sha256)
        except CorpusError as exc:
            raise ConfigError(f"style {style.name}: {exc}") from None
    data_sha256 = hashlib.sha256("\n".join(f"{s.name}={h}" for s, h in zip(styles, shas)).encode()).hexdigest()
    request = request_digest(
        styles=[
            {
                "name": s.name,
                "corpus_sha256": h,
                "records": s.records,
                "val_sha256": None if s.val_text is None else hashlib.sha256(s.val_text.encode()).hexdigest(),
            }
            for s, h in zip(styles, shas)
        ],
        model=model_options or {},
        tokenizer=[tokenizer_kind, tokenizer_options or {}],
        training=config,
        init_from=str(init_from) if init_from is not None else None,
    )

    def make(folder: Path, overwrite: bool) -> FolderLock:
        return _make_style_run(
            styles, data_sha256, folder, model_options, config, tokenizer_kind, tokenizer_options, overwrite,
            init_from, request,
        )  # fmt: skip

    return start_run(
        folder, config, data_sha256, request, make, overwrite=overwrite, resume=resume,
        budget_given=budget_given, on_event=on_event, stop=stop,
    )  # fmt: skip


def _make_style_run(
    styles, data_sha256, folder, model_options, config, tokenizer_kind, tokenizer_options, overwrite, init_from,
    request,
) -> FolderLock:  # noqa: ANN001  # fmt: skip
    """Split each style, build one tokenizer over all, encode, and make the run whole beside ``folder``."""
    from charnn.styles import rows_per_style

    runfolder.check_target(folder, overwrite)
    splits = [_split_style(style, config) for style in styles]
    source = checkpoint.load_run(init_from, kind="lm") if init_from is not None else None
    if source is not None:
        tokenizer = source.tokenizer
    elif tokenizer_kind == "char":
        alphabet = "".join(corpus_stats(s.corpus).alphabet + (s.val_text or "") for s in styles)
        tokenizer = build_tokenizer("char", alphabet, **(tokenizer_options or {}))
    else:
        share = SUBWORD_SAMPLE_CHARS // len(styles)
        sample = "\n".join(split.train_text()[:share] for split in splits)
        tokenizer = build_tokenizer(tokenizer_kind, sample, **(tokenizer_options or {}))
    with_records = any(split.fmt is not None for split in splits)
    boundary = tokenizer.vocab_size
    dtype = token_dtype(boundary + with_records)
    torch.manual_seed(config.seed)
    shape = source.model.config.to_dict() if source is not None else dict(model_options or {})
    shape.update(vocab_size=boundary + with_records, records=with_records, styles=len(styles))
    model = RecurrentLM(ModelConfig(**shape))
    if source is not None:
        _transplant(source, model, [s.name for s in styles], init_from)
    rows = rows_per_style(config.batch_size, len(styles))
    with runfolder.new_run(folder, overwrite) as (pending, lock):
        counts = _Counts(source=init_from)
        train_parts, val_parts, starts_parts, val_texts, described = [], [], [], [], []
        text_at = 0
        for style, split, n_rows in zip(styles, splits, rows):
            if split.fmt is not None:
                train_ids, starts = _encode_records(split.train, tokenizer, boundary, dtype, counts)
                val_ids, _ = _encode_records(split.val, tokenizer, boundary, dtype, counts)
                starts_parts.append(starts)
                val_text = split.fmt.joiner.join(split.val) + "\n"
                chars = {
                    "train_chars": records_module.record_chars(split.train),
                    "val_chars": records_module.record_chars(split.val),
                    "train_records": len(split.train),
                    "val_records": len(split.val),
                    "longest_record": max(len(r) for r in split.train),
                }
            else:
                train_ids = _encode_text(split.train[0], tokenizer, dtype, counts)
                val_ids = _encode_text(split.val[0], tokenizer, dtype, counts)
                val_text = split.val[0]
                chars = {"train_chars": len(split.train[0]), "val_chars": len(split.val[0])}
            _check_unknown(counts)
            if len(val_ids) < 2:
                raise ConfigError(
                    f"style {style.name}: its validation split has {len(val_ids)} token(s), too few to measure; "
                    f"raise --val-fraction, or pass --val {style.name}=FILE"
                )
            if len(train_ids) // n_rows < config.seq_len + 1:
                raise ConfigError(
                    f"style {style.name}: its training text has {len(train_ids)} tokens, too few for its {n_rows} "
                    f"rows of windows of {config.seq_len}; give it more text, or a smaller --batch-size or --seq-len"
                )
            train_parts.append(train_ids)
            val_parts.append(val_ids)
            val_texts.append(val_text)
            described.append(
                {
                    "name": style.name,
                    "sources": list(style.corpus.sources),
                    "corpus_sha256": corpus_stats(style.corpus).sha256,
                    "rows": n_rows,
                    "records": split.fmt.to_dict() if split.fmt is not None else None,
                    "validation": split.val_source,
                    "validation_span": [text_at, text_at + len(val_text)],
                    "train_tokens": len(train_ids),
                    "val_tokens": len(val_ids),
                    **chars,
                }
            )
            text_at += len(val_text)
        counts.train_tokens = sum(len(p) for p in train_parts)
        counts.val_tokens = sum(len(p) for p in val_parts)
        (pending / checkpoint.TRAIN_TOKENS_FILE).write_bytes(np.concatenate(train_parts).tobytes())
        (pending / checkpoint.VAL_TOKENS_FILE).write_bytes(np.concatenate(val_parts).tobytes())
        if starts_parts:
            (pending / checkpoint.TRAIN_RECORDS_FILE).write_bytes(np.concatenate(starts_parts).tobytes())
        (pending / checkpoint.VALIDATION_FILE).write_text("".join(val_texts), encoding="utf-8", newline="")
        tokenizer.save(pending)
        data = {
            "train_chars": sum(d["train_chars"] for d in described),
            "val_chars": sum(d["val_chars"] for d in described),
        }
        task = {"kind": "lm", "reverse": False, "records": None, "styles": described, "record_layout": "columns"}
        sources = [f"{d['name']}={src}" for d in described for src in d["sources"]]
        _complete_run(
            pending, model, config, request, task, tokenizer, sources, data_sha256, "each style's own",
            dtype, counts, data, init_from,
        )  # fmt: skip
    return lock


@dataclass
class _StyleSplit:
    fmt: records_module.RecordFormat | None
    train: list[str]
    """A record style's training records; a stream style's training text (one item)."""
    val: list[str]
    val_source: str

    def train_text(self) -> str:
        return (self.fmt.joiner if self.fmt is not None else "").join(self.train)


def _split_style(style: StyleData, config: TrainConfig) -> _StyleSplit:
    """A style's training and held-out parts, cut as a one-style run would cut them."""
    text = "".join(style.corpus.chunks())
    what = f"style {style.name} ({', '.join(style.corpus.sources)})"
    if style.records is None:
        if style.val_text is not None:
            return _StyleSplit(None, [text], [style.val_text], "--val file")
        n_train = split_point(len(text), config.val_fraction)
        return _StyleSplit(None, [text[:n_train]], [text[n_train:]], f"last {config.val_fraction:g} of the text")
    fmt = records_module.with_joiner(records_module.parse_format(style.records), text)
    every = records_module.split(text, fmt, what)
    if style.val_text is not None:
        val = records_module.split(style.val_text, fmt, f"the --val file of style {style.name}", minimum=1)
        return _StyleSplit(fmt, every, val, "--val file")
    chosen = set(records_module.held_out(len(every), config.val_fraction, config.seed).tolist())
    train = [r for i, r in enumerate(every) if i not in chosen]
    val = [r for i, r in enumerate(every) if i in chosen]
    return _StyleSplit(fmt, train, val, f"a random {config.val_fraction:g} of the records (seed {config.seed})")


def _encode_text(text: str, tokenizer, dtype, counts: _Counts) -> np.ndarray:  # noqa: ANN001
    """A stream style's text as tokens; with a borrowed vocabulary, characters it lacks are counted."""
    with warnings.catch_warnings(record=counts.source is not None):
        ids = tokenizer.encode(text).astype(dtype, copy=False)
    _count_unknown(ids, text, np.asarray(tokenizer.never_sample()), counts)
    return ids


def _count_unknown(ids: np.ndarray, text: str, banned: np.ndarray, counts: _Counts) -> None:
    """With a borrowed vocabulary (``counts.source``), count the characters of ``text`` it lacks."""
    if counts.source is not None and len(banned):
        unknown = np.isin(ids, banned)
        if unknown.any():
            counts.unknown += int(unknown.sum())
            seen = {text[i] for i in np.flatnonzero(unknown)[:100] if i < len(text)}
            counts.unknown_chars = "".join(sorted(set(counts.unknown_chars) | seen))[:10]


def _transplant(source: Any, model: RecurrentLM, names: list[str], init_from: Path) -> None:
    """Start ``model`` from ``source``'s weights: every tensor they share; a boundary row the source
    lacks keeps its fresh value; each style the source knows by name keeps its vector, a new one starts at 0."""
    from charnn.styles import style_names

    old_names = style_names(source.config)
    if source.model.config.records and not model.config.records:
        raise ConfigError(
            f"{init_from} was trained on records, but none of these styles is; give a record style, "
            "or fine-tune from a run without records"
        )
    theirs = source.model.state_dict()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name == "style_vectors":
                for i, style in enumerate(names):
                    if style in old_names:
                        tensor[i] = theirs[name][old_names.index(style)]
                continue
            if name not in theirs:
                continue
            old = theirs[name]
            if old.shape == tensor.shape:
                tensor.copy_(old)
            elif old.shape[1:] == tensor.shape[1:] and old.shape[0] + 1 == tensor.shape[0]:
                tensor[: old.shape[0]] = old  # the embedding or head of a vocabulary that gained a boundary
            else:
                raise ConfigError(f"{init_from}: its {name} does not fit the new model; train afresh instead")


def _refuse_styled_source(source: Any, init_from: Path | None) -> None:
    if source is not None and source.model.config.styles:
        from charnn.styles import style_names

        raise ConfigError(
            f"{init_from} is conditioned on styles ({', '.join(style_names(source.config))}); fine-tune it with "
            "--style NAME=FILE (a new name adds a style)"
        )


def _encode_records(texts, tokenizer, boundary: int, dtype, counts: _Counts) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """[boundary, record 1, boundary, record 2, ..., boundary] and each record's boundary offset (and the last)."""
    banned = np.asarray(tokenizer.never_sample())
    pieces, starts, at = [], [], 0
    mark = np.asarray([boundary], dtype=dtype)
    with warnings.catch_warnings(record=counts.source is not None):
        for text in texts:
            ids = tokenizer.encode(text).astype(dtype, copy=False)
            _count_unknown(ids, text, banned, counts)
            starts.append(at)
            pieces += [mark, ids]
            at += 1 + len(ids)
    starts.append(at)
    return np.concatenate([*pieces, mark]), np.asarray(starts, dtype=np.int64)


SUBWORD_SAMPLE_CHARS = 100_000_000
"""A subword vocabulary is learnt from at most this much of the training split (its start)."""


def _build_tokenizer(kind, options, corpus, stats, n_train, val_text):  # noqa: ANN001, ANN202
    if kind == "char":
        # The alphabet of the whole corpus (and of a --val file): a character first met in
        # validation is an ordinary, untrained token rather than an unknown one.
        return build_tokenizer(kind, stats.alphabet + (val_text or ""), **options)
    return build_tokenizer(kind, training_sample(corpus, n_train, SUBWORD_SAMPLE_CHARS), **options)


@dataclass
class _Counts:
    train_tokens: int = 0
    val_tokens: int = 0
    unknown: int = 0
    unknown_chars: str = ""
    source: Path | None = None


def _encode(corpus, n_train, val_text, tokenizer, dtype, where: Path, init_from) -> _Counts:  # noqa: ANN001
    """Encode the corpus chunk by chunk into the token files and the validation text."""
    counts = _Counts(source=init_from)
    banned = np.asarray(tokenizer.never_sample())
    files = {
        True: open(where / checkpoint.TRAIN_TOKENS_FILE, "wb"),
        False: open(where / checkpoint.VAL_TOKENS_FILE, "wb"),
    }
    val_file = open(where / checkpoint.VALIDATION_FILE, "wb")
    pieces = split_pieces(corpus, n_train)
    if val_text is not None:
        pieces = itertools.chain(pieces, [(False, val_text)])
    try:
        with warnings.catch_warnings(record=init_from is not None):
            for is_train, piece in pieces:
                ids = tokenizer.encode(piece).astype(dtype, copy=False)
                files[is_train].write(ids.tobytes())
                if is_train:
                    counts.train_tokens += len(ids)
                else:
                    counts.val_tokens += len(ids)
                    val_file.write(piece.encode("utf-8"))
                if init_from is not None and len(banned):
                    unknown = np.isin(ids, banned)
                    if unknown.any():
                        counts.unknown += int(unknown.sum())
                        seen = {piece[i] for i in np.flatnonzero(unknown)[:100] if i < len(piece)}
                        counts.unknown_chars = "".join(sorted(set(counts.unknown_chars) | seen))[:10]
    finally:
        for f in (*files.values(), val_file):
            f.close()
    return counts


def _check_counts(counts: _Counts, config: TrainConfig) -> None:
    _check_unknown(counts)
    if counts.val_tokens < 2:
        raise CorpusError(
            f"the validation split has {counts.val_tokens} token(s), too few to measure; "
            "raise --val-fraction, give a longer corpus, or pass --val FILE"
        )
    TBPTTStream.check_length(counts.train_tokens, config.batch_size, config.seq_len)


def _check_unknown(counts: _Counts) -> None:
    if counts.unknown:
        raise CorpusError(
            f"the corpus has {counts.unknown} character(s) that {counts.source}'s vocabulary lacks "
            f"(e.g. {counts.unknown_chars!r}); fine-tuning needs a vocabulary that covers the text: "
            "train a new run instead"
        )


def resume(
    folder: Path,
    *,
    steps: int | None = None,
    time_budget: float | None = None,
    corpus: Corpus | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
    kind: str | None = None,
    device: str | None = None,
) -> Finished:
    """Continue the run in ``folder`` exactly where its last checkpoint left it.

    ``steps`` / ``time_budget`` replace the run's budget; ``corpus``, when given,
    must be the text the run was trained on; ``kind`` ('lm', 'classify', 'tag'), when given,
    refuses a run of another kind. ``device``, when given and not 'auto', replaces the run's (a
    run started on a GPU goes on on the CPU: not bit for bit what the GPU would have done).
    """
    folder = _unlinked(Path(folder))
    main = os.environ.get("RANK", "0") == "0"  # under torchrun, the first process alone recovers
    state = runfolder.folder_state(folder) if not main else _recovered_state(folder)
    if state in ("absent", "empty", "unfinished"):
        what = (
            "does not exist"
            if state == "absent"
            else "holds no run to resume yet (it stopped before its data was ready)"
        )
        start = {"classify": "charnn classify train DATA", "tag": "charnn tag train DATA"}.get(
            kind or "", "charnn train CORPUS"
        )
        data = {"classify": "labelled data", "tag": "tagged data"}.get(kind or "", "corpus")
        raise RunFolderError(
            f"run folder {folder} {what}; pass the {data} to start it: {start} --out {folder} --resume {folder}"
        )
    run_config = checkpoint.check_run_folder(folder, for_resume=True, recover=False)
    checkpoint.check_kind(folder, run_config, kind)
    if corpus is not None and corpus_stats(corpus).sha256 != run_config.get("data", {}).get("corpus_sha256"):
        raise ConfigError(
            f"the corpus differs from the one {folder} was trained on; "
            "pass --overwrite to start a new run there, or --out to choose another folder"
        )
    stored = _run_device(folder, run_config)
    device = None if device == "auto" else device  # what `--device` defaults to: the run's own
    try:
        chosen = resolve_device(device or stored)
    except ConfigError:
        if device is not None:
            raise
        raise ConfigError(
            f"{folder} was trained with --device {stored}, which this machine does not have; "
            f"pass --device cpu to go on here"
        ) from None
    world, chosen = init_world(chosen)
    lock = runfolder.hold(folder) if world.main else None
    try:
        budget = (steps, time_budget) if steps is not None or time_budget is not None else None
        return _train_in(folder, world, chosen, budget, on_event, stop, resumed=True)
    finally:
        if lock is not None:
            lock.release()


def _recovered_state(folder: Path) -> str:
    runfolder.recover(folder)
    return runfolder.folder_state(folder)


def _unlinked(folder: Path) -> Path:
    """The folder a symbolic link names: a new run is renamed into place, which would replace the link."""
    return folder.resolve() if folder.is_symlink() else folder


def _run_device(folder: Path, run_config: dict[str, Any]) -> str:
    try:
        return TrainConfig.from_dict(run_config["training"]).device
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc}") from None


def _train_in(folder, world, device, budget, on_event, stop, *, resumed: bool) -> Finished:  # noqa: ANN001
    """Train the run in ``folder`` from its resume state: a new run's step 0, or where a stopped one stopped.

    ``budget`` (steps, seconds), when given, replaces the run's.
    """
    run_config = checkpoint.check_run_folder(folder, for_resume=True, recover=False)
    try:
        config = TrainConfig.from_dict(run_config["training"])
        if budget is not None:
            config = dataclasses.replace(config, steps=budget[0], time_budget=budget[1])
        model_config = ModelConfig.from_dict(run_config["model"])
        tokens = load_tokenizer(folder, run_config["tokenizer"]).vocab_size + model_config.records
        if tokens != model_config.vocab_size:
            raise CheckpointError(f"{folder}: the tokenizer does not fit the model in config.json")
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc}") from None
    model = tasks.build_model(run_config, model_config).to(device)
    task = tasks.make_task(run_config, folder, model, config, world, device)
    loop = Loop(model, task, config, folder, device, run_config, on_event, stop, world)
    loop.restore()
    if not resumed:
        loop.resumed_from = None
    p = loop.position
    finished = loop.already_complete() if p.finished and loop.fraction(p.elapsed) >= 1.0 else loop.run()
    world.close()
    return finished
