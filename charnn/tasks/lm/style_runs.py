"""A new style run: one conditional model trained on several styles (charnn.tasks.lm.styles).

Each style keeps its own split and record format; one tokenizer covers them all, and their
tokens lie one after another in the run's token files (the layout charnn.tasks.lm.styles draws).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
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
from charnn.tasks.lm.encoding import Counts, encode, encode_records, first_token_chars
from charnn.tasks.lm.prepare import KIND, SUBWORD_SAMPLE_CHARS, complete_run
from charnn.tasks.lm.styles import rows_per_style, style_names
from charnn.text import records as records_module
from charnn.text.corpus import Corpus, corpus_stats, split_point, token_dtype
from charnn.tokenizers import tokenizer_for
from charnn.training.start import request_digest, start_run


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
    """Train one conditional model on several styles (charnn.tasks.lm.styles); charnn.tasks.lm.prepare.train's
    other options mean what they mean there. Each style keeps its own split and record format."""

    config = config or TrainConfig()
    if len(styles) < 1:
        raise ConfigError("name at least one style: --style NAME=FILE")
    for style in styles:
        if style.records is not None:
            records_module.parse_format(style.records)  # a bad separator is refused before anything is read
    rows_per_style(config.batch_size, len(styles))
    shas = []
    for style in styles:
        try:
            shas.append(corpus_stats(style.corpus).sha256)
        except CorpusError as exc:
            raise CorpusError(f"style {style.name}: {exc}") from None
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
        runfolder.check_target(folder, overwrite)
        splits = [_split_style(style, config) for style in styles]
        source = load_run(init_from, kind=KIND) if init_from is not None else None
        tokenizer = (
            source.tokenizer if source is not None else _tokenizer(styles, splits, tokenizer_kind, tokenizer_options)
        )
        model = _model(styles, splits, source, tokenizer, model_options, config, init_from)
        with runfolder.new_run(folder, overwrite) as (pending, lock):
            _write_styles(pending, styles, splits, tokenizer, model, config, request, data_sha256, init_from)
        return lock

    return start_run(
        folder, config, data_sha256, request, make, overwrite=overwrite, resume=resume,
        budget_given=budget_given, on_event=on_event, stop=stop, task_of=kind_to_train(folder, KIND),
    )  # fmt: skip


def _tokenizer(styles: list[StyleData], splits: list[_StyleSplit], kind: str, options: dict[str, Any] | None) -> Any:
    """One tokenizer over every style: their alphabets, or an equal share of each style's training text."""
    share = SUBWORD_SAMPLE_CHARS // len(styles)
    return tokenizer_for(
        kind,
        options,
        alphabet=lambda: "".join(corpus_stats(s.corpus).alphabet + (s.val_text or "") for s in styles),
        sample=lambda: "\n".join(split.train_text()[:share] for split in splits),
    )


def _model(styles, splits, source, tokenizer, model_options, config, init_from) -> RecurrentLM:  # noqa: ANN001
    with_records = any(split.fmt is not None for split in splits)
    torch.manual_seed(config.seed)
    shape = source.model.config.to_dict() if source is not None else dict(model_options or {})
    shape.update(vocab_size=tokenizer.vocab_size + with_records, records=with_records, styles=len(styles))
    model = RecurrentLM(ModelConfig(**shape))
    if source is not None:
        _transplant(source, model, [s.name for s in styles], init_from)
    return model


@dataclass
class _Encoded:
    """One style's tokens and what its config.json entry says of them."""

    train: np.ndarray
    val: np.ndarray
    starts: np.ndarray | None
    val_text: str
    chars: dict[str, Any]


def _encode_style(split: _StyleSplit, tokenizer: Any, boundary: int, dtype: np.dtype, counts: Counts) -> _Encoded:
    if split.fmt is None:
        train, val = encode(split.train[0], tokenizer, dtype, counts), encode(split.val[0], tokenizer, dtype, counts)
        chars = {"train_chars": len(split.train[0]), "val_chars": len(split.val[0])}
        chars["val_first_chars"] = first_token_chars(tokenizer, val, split.val[0]) if len(val) else None
        return _Encoded(train, val, None, split.val[0], chars)
    train, starts = encode_records(split.train, tokenizer, boundary, dtype, counts)
    val, _ = encode_records(split.val, tokenizer, boundary, dtype, counts)
    chars = {
        "train_chars": records_module.record_chars(split.train),
        "val_chars": records_module.record_chars(split.val),
        "train_records": len(split.train),
        "val_records": len(split.val),
        "longest_record": max(len(r) for r in split.train),
    }
    return _Encoded(train, val, starts, split.fmt.joiner.join(split.val) + "\n", chars)


def _write_styles(pending, styles, splits, tokenizer, model, config, request, data_sha256, init_from) -> None:  # noqa: ANN001
    """Encode every style into the pending run's files, then complete it (charnn.tasks.lm.prepare.complete_run)."""
    boundary = tokenizer.vocab_size
    dtype = token_dtype(boundary + any(split.fmt is not None for split in splits))
    counts = Counts(source=init_from)
    encoded, described, text_at = [], [], 0
    for style, split, n_rows in zip(styles, splits, rows_per_style(config.batch_size, len(styles))):
        part = _encode_style(split, tokenizer, boundary, dtype, counts)
        counts.check_covered()
        _check_style(style.name, part, n_rows, config, from_file="--val" in split.val_source)
        encoded.append(part)
        described.append(
            {
                "name": style.name,
                "sources": list(style.corpus.sources),
                "corpus_sha256": corpus_stats(style.corpus).sha256,
                "rows": n_rows,
                "records": split.fmt.to_dict() if split.fmt is not None else None,
                "validation": split.val_source,
                "validation_span": [text_at, text_at + len(part.val_text)],
                "train_tokens": len(part.train),
                "val_tokens": len(part.val),
                **part.chars,
            }
        )
        text_at += len(part.val_text)
    counts.train_tokens = sum(len(p.train) for p in encoded)
    counts.val_tokens = sum(len(p.val) for p in encoded)
    (pending / names.TRAIN_TOKENS_FILE).write_bytes(np.concatenate([p.train for p in encoded]).tobytes())
    (pending / names.VAL_TOKENS_FILE).write_bytes(np.concatenate([p.val for p in encoded]).tobytes())
    starts = [p.starts for p in encoded if p.starts is not None]
    if starts:
        (pending / names.TRAIN_RECORDS_FILE).write_bytes(np.concatenate(starts).tobytes())
    (pending / names.VALIDATION_FILE).write_text("".join(p.val_text for p in encoded), encoding="utf-8", newline="")
    tokenizer.save(pending)
    data = {
        "sources": [f"{d['name']}={src}" for d in described for src in d["sources"]],
        "corpus_sha256": data_sha256,
        "validation": "each style's own",
        "train_chars": sum(d["train_chars"] for d in described),
        "val_chars": sum(d["val_chars"] for d in described),
    }
    task = {"kind": KIND, "reverse": False, "records": None, "styles": described, "record_layout": "columns"}
    complete_run(pending, model, config, request, task, tokenizer, dtype, data, counts, init_from)


def _check_style(name: str, part: _Encoded, rows: int, config: TrainConfig, from_file: bool = False) -> None:
    if len(part.val) < 2:
        fix = f"give a longer --val {name}=FILE" if from_file else f"raise --val-fraction, or pass --val {name}=FILE"
        where = "--val file" if from_file else "validation split"
        error = CorpusError if from_file else ConfigError  # a file too short, as charnn.text.corpus.read_validation
        raise error(f"style {name}: its {where} has {len(part.val)} token(s), too few to measure; {fix}")
    if len(part.train) // rows < config.seq_len + 1:
        raise ConfigError(
            f"style {name}: its training text has {len(part.train)} tokens, too few for its {rows} "
            f"rows of windows of {config.seq_len}; give it more text, or a smaller --batch-size or --seq-len"
        )


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
    val_what = f"the --val file of style {style.name}"
    train, val, source = records_module.split_held_out(
        text, fmt, what, style.val_text, val_what, config.val_fraction, config.seed
    )
    return _StyleSplit(fmt, train, val, source)


def _transplant(source: Any, model: RecurrentLM, names: list[str], init_from: Path) -> None:
    """Start ``model`` from ``source``'s weights: every tensor they share; a boundary row the source
    lacks keeps its fresh value; each style the source knows by name keeps its vector, a new one starts at 0."""
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
