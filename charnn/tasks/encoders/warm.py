"""Warm starts: a classifier's or a tagger's encoder begins as language models' embedding and layers.

``--init-from FWD`` fills the forward stack from a left-to-right language model; a second
``--init-from BWD`` (``charnn train --reverse``, same tokenizer and shape) fills the backward one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from charnn.config import ModelConfig
from charnn.errors import ConfigError
from charnn.model import Encoder
from charnn.tasks.base import load_run, task_kind

LANGUAGE_MODEL = "lm"
"""The kind of run warm starts come from (charnn.tasks.lm)."""
SHAPE = ("cell", "layers", "hidden", "embed", "residual")
"""The settings an encoder takes from the language model it starts from."""


def warm_model_config(vocab_size: int, options: dict[str, Any], sources: list[Any]) -> ModelConfig:
    if not sources:
        return ModelConfig(vocab_size=vocab_size, **options)
    lm = sources[0].model.config
    shape = {k: getattr(lm, k) for k in SHAPE}
    keep = {k: v for k, v in options.items() if k in ("dropout", "bidirectional", "token_dropout")}
    return ModelConfig(vocab_size=vocab_size, **shape, **keep)


CHOSEN = (*SHAPE, "tokenizer", "vocab_size")
"""The options a warm start takes from its language model, which a user may give only to agree with it."""


def refuse_other_shape(chosen: dict[str, Any], sources: list[Any]) -> None:
    """Refuse an option the user gave (``chosen``, by its key in CHOSEN) that differs from the language
    model a warm start takes it from, rather than ignore it."""
    if not sources:
        return
    lm = sources[0]
    theirs = {key: getattr(lm.model.config, key) for key in SHAPE}
    theirs["tokenizer"] = lm.tokenizer.kind
    theirs["vocab_size"] = lm.tokenizer.vocab_size if lm.tokenizer.kind != "char" else None
    for key, value in chosen.items():
        if key not in CHOSEN or value is None or value == theirs[key]:
            continue
        if theirs[key] is None:  # --vocab-size beside a character language model
            said = f"its tokenizer is {theirs['tokenizer']}, which has no vocabulary size to choose"
        else:
            said = f"it was trained with {_flag(key, theirs[key])}"
        raise ConfigError(
            f"{_flag(key, value)} does not fit --init-from {lm.folder} ({said}): a warm start takes the "
            f"language model's shape and tokenizer; drop {_flag(key, value).split()[0]}"
        )


def lent_tokenizer(tokenizer_from: Path | None, chosen: dict[str, Any], sources: list[Any]) -> Any:
    """The tokenizer of the run ``tokenizer_from`` (None when not given), for a run that starts
    from scratch; a warm start has its language model's, and a tokenizer given is the lender's."""
    if tokenizer_from is None:
        return None
    if sources:
        raise ConfigError(
            "--tokenizer-from and --init-from do not go together: a warm start reads text with its language "
            "model's tokenizer; drop --tokenizer-from"
        )
    given = [key for key in ("tokenizer", "vocab_size") if chosen.get(key) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{flag} is a tokenizer's, and --tokenizer-from {tokenizer_from} lends one; drop {flag}")
    return load_run(tokenizer_from).tokenizer


def _flag(key: str, value: Any) -> str:
    if key == "residual":
        return "--residual" if value else "--no-residual"
    return f"--{key.replace('_', '-')} {value}"


def warm_start_sources(init_from: Sequence[Path], bidirectional: bool = True) -> list[Any]:
    """The language-model runs to start from: [forward] or [forward, backward] (``bidirectional`` only)."""
    if not init_from:
        return []
    if len(init_from) > 2:
        raise ConfigError("--init-from takes a left-to-right language model and, optionally, a right-to-left one")
    if len(init_from) == 2 and not bidirectional:
        raise ConfigError(
            "a second --init-from starts the right-to-left direction, which --no-bidirectional leaves out; "
            "drop one of them"
        )
    runs = [load_run(path) for path in init_from]
    for run in runs:
        if task_kind(run.config) != LANGUAGE_MODEL:
            raise ConfigError(
                f"--init-from {run.folder} is not a language model; warm starts come from `charnn train` runs"
            )
    reverse = [bool((run.config.get("task") or {}).get("reverse")) for run in runs]
    if reverse[0] and len(runs) == 1:
        raise ConfigError(f"--init-from {runs[0].folder} reads right to left; give a left-to-right run first")
    runs = sorted(runs, key=lambda run: bool((run.config.get("task") or {}).get("reverse")))
    if len(runs) == 2:
        if reverse[0] == reverse[1]:
            raise ConfigError("the two --init-from runs must be one left-to-right and one right-to-left (--reverse)")
        files = [(run.folder / run.config["tokenizer"]["file"]).read_bytes() for run in runs]
        if files[0] != files[1]:
            raise ConfigError(
                "the two --init-from runs have different tokenizers; train the reverse one with "
                f"--tokenizer-from {runs[0].folder}"
            )
        if runs[0].model.config != runs[1].model.config:
            raise ConfigError("the two --init-from runs have different model shapes; train them with the same options")
    return runs


def warm_start(model: Encoder, sources: list[Any]) -> None:
    """Copy the embedding and the recurrent layers of each source into its direction."""
    with torch.no_grad():
        directions = [(model.embed, model.rnns), (model.embed_reverse, model.rnns_reverse)]
        for run, (embed, stack) in zip(sources, directions, strict=False):
            if stack is None:
                break
            embed.weight.copy_(
                run.model.embed.weight[: embed.num_embeddings]
            )  # a record run has one more: its boundary
            stack.load_state_dict(run.model.rnns.state_dict())
