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
either the old or the new file, never a torn one; charnn.runfolder makes and replaces
whole run folders the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charnn import __version__
from charnn.config import ModelConfig
from charnn.errors import CheckpointError, ConfigError, TokenizerError, WrongRunKind
from charnn.files import atomic_write_bytes, atomic_write_text

FORMAT = "charnn-run"
FORMAT_VERSION = 2
"""2: config.json may name a task ('classify', 'tag'); a folder with none is a language model (as in 1)."""
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
VALIDATION_FILE = "validation.txt"
METRICS_FILE = "metrics.jsonl"
RESUME_FILE = "resume.safetensors"
TRAIN_TOKENS_FILE = "train.tokens"
VAL_TOKENS_FILE = "val.tokens"
TRAIN_RECORDS_FILE = "train.records"
"""A record run's offsets (int64) of each training record's boundary in train.tokens, and of the last."""
TRAIN_TEXTS_FILE = "train.tsv"
VAL_TEXTS_FILE = "validation.tsv"
"""A classifier run's labelled texts (label<TAB>text), kept so that resuming needs no data."""
TRAIN_TAGS_FILE = "train.tags"
VAL_TAGS_FILE = "validation.tags"
"""A tagger run's sentences (token<TAB>tag, an empty line after each sentence)."""
RUN_FILES = (
    *(CONFIG_FILE, MODEL_FILE, VALIDATION_FILE, METRICS_FILE, RESUME_FILE, TRAIN_TOKENS_FILE, VAL_TOKENS_FILE),
    TRAIN_RECORDS_FILE,
    *(TRAIN_TEXTS_FILE, VAL_TEXTS_FILE, TRAIN_TAGS_FILE, VAL_TAGS_FILE),
)
"""Every file a run folder may hold besides the tokenizer's, which config.json names."""
RUNS_DIR = "runs"
MAX_CONFIG_BYTES = 1 << 20
MODEL_ENV = "CHARNN_MODEL"


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
    folder is recovered first (charnn.runfolder) unless ``recover`` is False (a caller that
    did so itself, or a process under torchrun that leaves it to the first).
    """
    from charnn import runfolder

    folder = Path(folder)
    if recover:
        runfolder.recover(folder)
    if folder.is_file():
        raise CheckpointError(
            f"{folder} is a file; charnn loads run folders (config.json + model.safetensors) "
            "and never unpickles .pt or .pkl files"
        )
    if not folder.is_dir():
        raise CheckpointError(f"run folder {folder} does not exist; train one with `charnn train CORPUS`")
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
    if not for_resume and not (folder / MODEL_FILE).is_file() and (folder / RESUME_FILE).is_file():
        raise CheckpointError(
            f"{folder} has no {MODEL_FILE} yet: its training stopped before the first validation; "
            f"continue it with `charnn train --resume {folder}`"
        )
    needed = (RESUME_FILE if for_resume else MODEL_FILE, tokenizer_file)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder} is incomplete: missing {', '.join(missing)}")
    return config


def load_run(folder: str | Path, device: str = "cpu", kind: str | None = None) -> Run:
    """Load a run folder, validating every file; weights go to ``device``.

    ``kind`` ('lm', 'classify', 'tag'), when given, refuses a run of another kind.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    from charnn.tasks import build_model
    from charnn.tokenizers import load_tokenizer

    folder = Path(folder)
    config = check_run_folder(folder)
    check_kind(folder, config, kind)
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
    model = build_model(config, model_config)
    try:
        tensors = load_tensors((folder / MODEL_FILE).read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}/{MODEL_FILE} is not a readable safetensors file: {exc}") from None
    _check_tensors(folder, model.state_dict(), tensors)
    model.load_state_dict(tensors)
    model.to(torch.device(device)).eval()
    return Run(folder=folder, config=config, model=model, tokenizer=tokenizer)


def check_kind(folder: Path, config: dict[str, Any], kind: str | None) -> None:
    """Refuse a run of another kind than ``kind`` in one line that says what it is and what to use."""
    from charnn.tasks import TASK_NAMES, task_kind

    found = task_kind(config)
    if kind is None or found == kind:
        return
    use = {
        "lm": "charnn sample / charnn eval",
        "classify": "charnn classify predict / eval",
        "tag": "charnn tag predict / eval",
    }[found]
    raise WrongRunKind(f"{folder} is {TASK_NAMES[found]}, not {TASK_NAMES[kind]}; use it with {use}")


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


def find_default_run(cwd: Path | None = None, kind: str | None = "lm") -> Path:
    """$CHARNN_MODEL, else the most recently trained run of ``kind`` (None: any) under ./runs."""
    from charnn.tasks import TASK_KINDS, TASK_NAMES

    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    runs = Path(cwd) / RUNS_DIR if cwd is not None else Path(RUNS_DIR)
    candidates = [
        p.parent for p in runs.glob(f"*/{MODEL_FILE}") if _run_kind(p.parent) in ((kind,) if kind else TASK_KINDS)
    ]
    if not candidates:
        train = {"classify": "charnn classify train", "tag": "charnn tag train"}.get(kind or "", "charnn train")
        what = f"trained run of {TASK_NAMES[kind]}" if kind else "trained run"
        raise CheckpointError(
            f"no {what} found under {runs}; pass --model RUN, set {MODEL_ENV}, or train one with `{train}`"
        )
    return max(candidates, key=lambda p: (p / MODEL_FILE).stat().st_mtime_ns)


def _run_kind(folder: Path) -> str | None:
    from charnn.tasks import task_kind

    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        return task_kind(config) if config.get("format") == FORMAT else None
    except (OSError, ValueError, AttributeError, CheckpointError):
        return None
