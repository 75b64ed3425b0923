"""Training: set a run up (new, resumed or fine-tuned) and run charnn.loop.Loop on it.

Truncated BPTT over a laid-out stream, with clipping, a schedule, validation, the
best model kept, exact resume, and a guard against NaN/Inf. The trainer knows nothing
of terminals: it reports through ``on_event`` with the dataclasses of charnn.events,
and the CLI decides how to show them.
"""

from __future__ import annotations

__all__ = ["clip_gradients", "corpus_digest", "lr_at", "make_optimizer", "resume", "train"]

import dataclasses
import hashlib
import math
import threading
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charnn import checkpoint
from charnn.config import ModelConfig, TrainConfig
from charnn.data import Corpus, TBPTTStream, split_text, token_dtype
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
    train_text, val_text, val_source = _split(corpus, config, val_text)
    source = None
    if init_from is not None:
        source = checkpoint.load_run(init_from)
        tokenizer = source.tokenizer
    else:
        tokenizer = build_tokenizer(tokenizer_kind, train_text, held_out=val_text, **(tokenizer_options or {}))
    dtype = token_dtype(tokenizer.vocab_size)
    with warnings.catch_warnings(record=source is not None):
        train_tokens = tokenizer.encode(train_text).astype(dtype, copy=False)
        val_tokens = tokenizer.encode(val_text).astype(dtype, copy=False)
    if source is not None:
        _check_vocabulary_fits(init_from, tokenizer, train_text, train_tokens)
        _check_vocabulary_fits(init_from, tokenizer, val_text, val_tokens)
    if len(val_tokens) < 2:
        raise CorpusError(
            f"the validation split has {len(val_tokens)} token(s), too few to measure; "
            "raise --val-fraction, give a longer corpus, or pass --val FILE"
        )
    TBPTTStream(train_tokens, config.batch_size, config.seq_len)  # fails early if the text is too short
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
        checkpoint.prepare_run_folder(folder, overwrite)
        tokenizer.save(folder)
        checkpoint.atomic_write_text(folder / checkpoint.VALIDATION_FILE, val_text)
        checkpoint.atomic_write(folder / checkpoint.TRAIN_TOKENS_FILE, train_tokens.tofile)
        checkpoint.atomic_write(folder / checkpoint.VAL_TOKENS_FILE, val_tokens.tofile)
    run_config = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_config.to_dict(),
        "tokenizer": {"kind": tokenizer.kind, "file": tokenizer.file_name},
        "training": config.to_dict(),
        "data": {
            "sources": list(corpus.sources),
            "corpus_sha256": corpus_digest(corpus.text),
            "validation": val_source,
            "token_dtype": dtype.name,
            "train_chars": len(train_text),
            "val_chars": len(val_text),
            "train_tokens": int(len(train_tokens)),
            "val_tokens": int(len(val_tokens)),
        },
    }
    if init_from is not None:
        run_config["init_from"] = str(init_from)
    if world.main:
        checkpoint.write_config(folder, run_config)
    world.barrier()
    data = Data(train_tokens, val_tokens, len(train_text) / len(train_tokens), len(val_text) / len(val_tokens))
    loop = Loop(model.to(device), data, config, folder, device, run_config, on_event, stop, world)
    loop.save_resume()
    return loop.run()


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
    if corpus is not None and corpus_digest(corpus.text) != info.get("corpus_sha256"):
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


def _check_vocabulary_fits(source: Path, tokenizer: Any, text: str, tokens: np.ndarray) -> None:
    unknown = np.isin(tokens, tokenizer.never_sample())
    if unknown.any():
        missing = sorted({text[i] for i in np.flatnonzero(unknown)[:1000] if i < len(text)})
        raise CorpusError(
            f"the corpus has {int(unknown.sum())} character(s) that {source}'s vocabulary lacks "
            f"(e.g. {''.join(missing[:10])!r}); fine-tuning needs a vocabulary that covers the text: "
            "train a new run instead"
        )


def _split(corpus: Corpus, config: TrainConfig, val_text: str | None) -> tuple[str, str, str]:
    if val_text is None:
        train_text, val_text = split_text(corpus.text, config.val_fraction)
        source = f"last {config.val_fraction:g} of the corpus"
    else:
        train_text, source = corpus.text, "--val file"
    if not train_text.strip():
        raise CorpusError("the training split holds no text; lower --val-fraction or give a longer corpus")
    return train_text, val_text, source


def _read_tokens(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    if not path.is_file() or path.stat().st_size != count * dtype.itemsize:
        raise CheckpointError(f"{path} is missing or not the size config.json says; the run cannot be resumed")
    return np.memmap(path, dtype=dtype, mode="c", shape=(count,))


def corpus_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
