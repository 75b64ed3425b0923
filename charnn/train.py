"""Training: set a run up (new, resumed or fine-tuned) and run charnn.loop.Loop on it.

Truncated BPTT over a laid-out stream, with clipping, a schedule, validation, the
best model kept, exact resume, and a guard against NaN/Inf. The trainer knows nothing
of terminals: it reports through ``on_event`` with the dataclasses of charnn.events,
and the CLI decides how to show them.
"""

from __future__ import annotations

__all__ = ["clip_gradients", "lr_at", "make_optimizer", "resume", "train"]

import dataclasses
import itertools
import math
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charnn import checkpoint
from charnn.config import ModelConfig, TrainConfig
from charnn.data import Corpus, TBPTTStream, corpus_stats, split_pieces, split_point, token_dtype, training_sample
from charnn.device import resolve_device
from charnn.distributed import init_world
from charnn.errors import CheckpointError, ConfigError, CorpusError
from charnn.events import Event, Finished
from charnn.loop import Data, Loop, clip_gradients, lr_at, make_optimizer
from charnn.model import RecurrentLM
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
    init_from: Path | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> Finished:
    """Train a new model on ``corpus``, keeping the best one in the run folder ``folder``.

    ``init_from`` fine-tunes: the new run starts from that run's best weights, with its
    model settings and tokenizer (which must cover the corpus), and a fresh optimizer.
    Everything that can be checked is checked before the folder is touched. Setting
    ``stop`` ends training after the current step with a resumable checkpoint.
    """
    config = config or TrainConfig()
    folder = Path(folder)
    stats = corpus_stats(corpus)
    if val_text is None:
        n_train = split_point(stats.chars, config.val_fraction)
        val_source = f"last {config.val_fraction:g} of the corpus"
    else:
        n_train, val_source = stats.chars, "--val file"
    if n_train == 0:
        raise CorpusError("the training split holds no text; lower --val-fraction or give a longer corpus")
    source = checkpoint.load_run(init_from) if init_from is not None else None
    tokenizer = (
        source.tokenizer
        if source is not None
        else _build_tokenizer(tokenizer_kind, tokenizer_options or {}, corpus, stats, n_train, val_text)
    )
    dtype = token_dtype(tokenizer.vocab_size)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if source is not None:
        model_config, model = source.model.config, source.model.to(device)
    else:
        model_config = ModelConfig(vocab_size=tokenizer.vocab_size, **(model_options or {}))
        model = RecurrentLM(model_config).to(device)
    world, device = init_world(device)
    world.rows(config.batch_size)  # fails early if the batch does not split over the processes

    if world.main:
        with _Staging(folder) as staging:
            counts = _encode(corpus, n_train, val_text, tokenizer, dtype, staging.path, init_from)
            _check_counts(counts, config)
            checkpoint.prepare_run_folder(folder, overwrite)
            tokenizer.save(folder)
            staging.move_into(folder)
    world.barrier()
    train_tokens = _read_tokens(folder / checkpoint.TRAIN_TOKENS_FILE, dtype)
    val_tokens = _read_tokens(folder / checkpoint.VAL_TOKENS_FILE, dtype)
    val_chars = stats.chars - n_train if val_text is None else len(val_text)
    run_config = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_config.to_dict(),
        "tokenizer": {"kind": tokenizer.kind, "file": tokenizer.file_name},
        "training": config.to_dict(),
        "data": {
            "sources": list(corpus.sources),
            "corpus_sha256": stats.sha256,
            "validation": val_source,
            "token_dtype": dtype.name,
            "train_chars": n_train,
            "val_chars": val_chars,
            "train_tokens": int(len(train_tokens)),
            "val_tokens": int(len(val_tokens)),
        },
    }
    if init_from is not None:
        run_config["init_from"] = str(init_from)
    if world.main:
        checkpoint.write_config(folder, run_config)
    world.barrier()
    data = Data(train_tokens, val_tokens, n_train / len(train_tokens), val_chars / len(val_tokens))
    loop = Loop(model.to(device), data, config, folder, device, run_config, on_event, stop, world)
    loop.save_resume()
    return loop.run()


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
    if counts.unknown:
        raise CorpusError(
            f"the corpus has {counts.unknown} character(s) that {counts.source}'s vocabulary lacks "
            f"(e.g. {counts.unknown_chars!r}); fine-tuning needs a vocabulary that covers the text: "
            "train a new run instead"
        )
    if counts.val_tokens < 2:
        raise CorpusError(
            f"the validation split has {counts.val_tokens} token(s), too few to measure; "
            "raise --val-fraction, give a longer corpus, or pass --val FILE"
        )
    TBPTTStream.check_length(counts.train_tokens, config.batch_size, config.seq_len)


class _Staging:
    """A private folder beside the run folder where its data files are made before they are moved in.

    If anything fails first, the folder and all in it are removed: a failed start leaves nothing.
    """

    def __init__(self, folder: Path) -> None:
        parent = folder.parent if folder.parent.is_dir() else None
        self.path = Path(tempfile.mkdtemp(prefix=".charnn-staging-", dir=parent))

    def __enter__(self) -> _Staging:
        return self

    def move_into(self, folder: Path) -> None:
        for item in self.path.iterdir():
            with open(item, "rb") as f:
                os.fsync(f.fileno())
            shutil.move(str(item), folder / item.name)

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def resume(
    folder: Path,
    *,
    steps: int | None = None,
    time_budget: float | None = None,
    corpus: Corpus | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> Finished:
    """Continue the run in ``folder`` exactly where its last checkpoint left it.

    ``steps`` / ``time_budget`` replace the run's budget; ``corpus``, when given,
    must be the text the run was trained on.
    """
    folder = Path(folder)
    run_config = checkpoint.check_run_folder(folder)
    info = run_config.get("data", {})
    if corpus is not None and corpus_stats(corpus).sha256 != info.get("corpus_sha256"):
        raise ConfigError(
            f"the corpus differs from the one {folder} was trained on; "
            "pass --overwrite to start a new run there, or --out to choose another folder"
        )
    try:
        config = TrainConfig.from_dict(run_config["training"])
        if steps is not None or time_budget is not None:
            config = dataclasses.replace(config, steps=steps, time_budget=time_budget)
        model_config = ModelConfig.from_dict(run_config["model"])
        if load_tokenizer(folder, run_config["tokenizer"]).vocab_size != model_config.vocab_size:
            raise CheckpointError(f"{folder}: the tokenizer does not fit the model in config.json")
        dtype = np.dtype(info["token_dtype"])
        train_tokens = _read_tokens(folder / checkpoint.TRAIN_TOKENS_FILE, dtype, info["train_tokens"])
        val_tokens = _read_tokens(folder / checkpoint.VAL_TOKENS_FILE, dtype, info["val_tokens"])
        data = Data(
            train_tokens,
            val_tokens,
            info["train_chars"] / info["train_tokens"],
            info["val_chars"] / info["val_tokens"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc}") from None
    world, device = init_world(resolve_device(config.device))
    model = RecurrentLM(model_config).to(device)
    loop = Loop(model, data, config, folder, device, run_config, on_event, stop, world)
    loop.restore()
    p = loop.position
    if p.finished and loop.fraction(p.elapsed) >= 1.0:
        if loop.metrics is not None:
            loop.metrics.close()
        return Finished(
            folder, p.step, p.elapsed, "complete", p.best_loss, p.best_metrics.get("val_bits_per_char", math.nan)
        )
    return loop.run()


def _read_tokens(path: Path, dtype: np.dtype, count: int | None = None) -> np.ndarray:
    """The token file as a copy-on-write memory map: pages are read as training reaches them."""
    size = path.stat().st_size if path.is_file() else -1
    if size < 0 or (count is not None and size != count * dtype.itemsize) or size % dtype.itemsize:
        raise CheckpointError(f"{path} is missing or not the size config.json says; the run cannot be resumed")
    return np.memmap(path, dtype=dtype, mode="c", shape=(size // dtype.itemsize,))
