"""The run folder: everything needed to sample, evaluate or go on training.

    runs/<name>/
      config.json         format version, model / tokenizer / training settings, results
      model.safetensors   weights of the best model (by validation loss)
      tokenizer.json      the tokenizer's own file (its name is in config.json)
      validation.txt      the held-out text, so `charnn eval` can score it again
      metrics.jsonl       one JSON object per logged step and evaluation
      resume.safetensors  the last training state: weights, optimizer moments, carried
                          hidden state, RNG states, and (as JSON metadata) the position
      train.tokens        the encoded training and validation tokens, raw, in the
      val.tokens          narrowest dtype (config.json names it): resuming needs no corpus

Nothing is pickled. Every file is written atomically (charnn.files), so a reader sees
either the old or the new file, never a torn one; charnn.runs.folder makes and replaces
whole run folders the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charnn import __version__
from charnn.config import ModelConfig
from charnn.errors import CheckpointError, ConfigError, TokenizerError
from charnn.files import atomic_write_bytes, atomic_write_text
from charnn.runs.names import (  # noqa: F401  (re-exported: the names a run folder's readers use)
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    MAX_CONFIG_BYTES,
    METRICS_FILE,
    MODEL_ENV,
    MODEL_FILE,
    RESUME_FILE,
    RUN_FILES,
    RUNS_DIR,
    TRAIN_RECORDS_FILE,
    TRAIN_TAGS_FILE,
    TRAIN_TEXTS_FILE,
    TRAIN_TOKENS_FILE,
    VAL_NGRAMS_FILE,
    VAL_TAGS_FILE,
    VAL_TEXTS_FILE,
    VAL_TOKENS_FILE,
    VALIDATION_FILE,
)


class MissingRun(CheckpointError):
    """No run folder where one was named; the message names ``command`` to train one (the kind asked for knows
    its own: charnn.tasks.base.load_run)."""

    def __init__(self, folder: Path, command: str = "charnn train CORPUS") -> None:
        self.folder = folder
        super().__init__(f"run folder {folder} does not exist; train one with `{command}`")


class UnfinishedRun(CheckpointError):
    """A run with a resume state and no model yet: still training towards its first validation, or stopped
    (killed) before it. The message names ``command`` (the run's task knows its own: charnn.tasks.base.load_run)."""

    def __init__(self, folder: Path, config: dict[str, Any], command: str = "charnn train") -> None:
        from charnn.runs.folder import being_written

        self.folder, self.config = folder, config
        self.live = being_written(folder)
        if self.live:
            step = first_validation(config)
            at = f" (at step {step})" if step is not None else ""
            super().__init__(
                f"{folder} is still training and has no {MODEL_FILE} until its first validation{at}; try again then"
            )
            return
        super().__init__(
            f"{folder} has no {MODEL_FILE} yet: its training stopped before the first validation; "
            f"continue it with `{command} --resume {folder}`"
        )


def first_validation(config: dict[str, Any]) -> int | None:
    """The step of a run's first validation, by its config.json (every --eval-every steps, and at a --steps
    budget's end), or None where config.json does not say."""
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    every, steps = training.get("eval_every"), training.get("steps")
    if not isinstance(every, int):
        return None
    return min(every, steps) if isinstance(steps, int) else every


def save_model(folder: Path, model: Any) -> None:
    """Write the weights atomically (safetensors, no shared tensors)."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / MODEL_FILE, save(tensors, metadata={"format": FORMAT}))


def write_config(folder: Path, config: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "charnn_version": __version__, **config}
    atomic_write_text(folder / CONFIG_FILE, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


@dataclass
class Run:
    """A loaded run folder."""

    folder: Path
    config: dict[str, Any]
    model: Any
    tokenizer: Any

    @property
    def validation_path(self) -> Path:
        return self.folder / VALIDATION_FILE


def check_run_folder(folder: Path, *, for_resume: bool = False, recover: bool = True) -> dict[str, Any]:
    """Read config.json and check that every file the run needs is there.

    A reader needs the best model; resuming needs the resume state instead (a run stopped
    before its first validation has none yet). What a killed command left around the
    folder is recovered first (charnn.runs.folder) unless ``recover`` is False (a caller that
    did so itself, or a process under torchrun that leaves it to the first).
    """
    from charnn.runs import folder as runfolder

    folder = Path(folder)
    if recover:
        runfolder.recover(folder)
    if folder.is_file():
        raise CheckpointError(
            f"{folder} is a file; charnn loads run folders (config.json + model.safetensors) "
            "and never unpickles .pt or .pkl files"
        )
    if not folder.is_dir():
        raise MissingRun(folder)
    try:
        if (folder / CONFIG_FILE).stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{folder}/{CONFIG_FILE} is implausibly large; it is not a charnn configuration")
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not a charnn run: {CONFIG_FILE} is missing") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}/{CONFIG_FILE} cannot be read: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{folder}/{CONFIG_FILE} is not a charnn run configuration")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} was written by a newer charnn (format {version}, this one reads {FORMAT_VERSION}); "
            "upgrade charnn to use it"
        )
    for section in ("model", "tokenizer"):
        if not isinstance(config.get(section), dict):
            raise CheckpointError(f"{folder}/{CONFIG_FILE} has no valid {section!r} section")
    tokenizer_file = config["tokenizer"].get("file", "")
    if not isinstance(tokenizer_file, str) or Path(tokenizer_file).name != tokenizer_file or not tokenizer_file:
        raise CheckpointError(f"{folder}/{CONFIG_FILE} names an invalid tokenizer file {tokenizer_file!r}")
    for name in (MODEL_FILE, RESUME_FILE, tokenizer_file):
        if (folder / name).exists() and not (folder / name).is_file():
            raise CheckpointError(f"{folder}/{name} is not a file; the run is damaged: train it again")
    results = config.get("results")
    kept = results.get("best_step") if isinstance(results, dict) else None
    if isinstance(kept, int) and kept > 0 and not (folder / MODEL_FILE).is_file():  # its session saved one
        raise CheckpointError(
            f"{folder} is damaged: its training ended and kept a model at step {kept}, but {MODEL_FILE} is "
            "missing; restore it from a copy, or train the run again"
        )
    if not for_resume and not (folder / MODEL_FILE).is_file() and (folder / RESUME_FILE).is_file():
        raise UnfinishedRun(folder, config)
    needed = (RESUME_FILE if for_resume else MODEL_FILE, tokenizer_file)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder} is incomplete: missing {', '.join(missing)}")
    return config


def load_run(folder: str | Path, build_model: Callable[[dict[str, Any], ModelConfig], Any], device: str = "cpu") -> Run:
    """Load a run folder, validating every file; ``build_model(config, model_config)`` makes the
    untrained network its weights go into (the run's task knows which: charnn.tasks.load_run)."""
    import torch

    from charnn.tokenizers import load_tokenizer

    folder = Path(folder)
    config = check_run_folder(folder)
    try:
        model_config = ModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{folder}/{CONFIG_FILE} has an invalid model section: {exc}") from None
    try:
        tokenizer = load_tokenizer(folder, config["tokenizer"])
    except TokenizerError as exc:
        raise CheckpointError(str(exc)) from None
    if tokenizer.vocab_size + model_config.records != model_config.vocab_size:
        raise CheckpointError(
            f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model expects "
            f"{model_config.vocab_size - model_config.records}; the folder mixes files of different runs"
        )
    try:
        model = build_model(config, model_config)
    except (KeyError, TypeError, ValueError) as exc:  # a damaged task section: what it lacks or holds wrong
        raise CheckpointError(f"{folder}/{CONFIG_FILE} has an invalid task section: {exc!r}") from None
    load_weights(folder, model)
    model.to(torch.device(device)).eval()
    return Run(folder=folder, config=config, model=model, tokenizer=tokenizer)


def load_weights(folder: Path, model: Any) -> None:
    """Read the best weights of ``folder`` into ``model``, refusing any that do not fit it."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    try:
        tensors = load_tensors((folder / MODEL_FILE).read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}/{MODEL_FILE} is not a readable safetensors file: {exc}") from None
    _check_tensors(folder, model.state_dict(), tensors)
    model.load_state_dict(tensors)


def read_config(folder: Path) -> dict[str, Any] | None:
    """config.json of a run folder, or None where there is none that charnn wrote (no checks beyond that)."""
    try:
        config = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get("format") == FORMAT else None


def _check_tensors(folder: Path, expected: dict[str, Any], found: dict[str, Any]) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise CheckpointError(f"{folder}/{MODEL_FILE} does not match {CONFIG_FILE}: {detail}")
    for name, tensor in expected.items():
        got = found[name]
        if got.shape != tensor.shape or got.dtype != tensor.dtype:
            raise CheckpointError(
                f"{folder}/{MODEL_FILE}: tensor {name} is {tuple(got.shape)} {got.dtype}, "
                f"but {CONFIG_FILE} needs {tuple(tensor.shape)} {tensor.dtype}"
            )
