"""The resume state: everything that makes a resumed run continue exactly.

One safetensors file holds the tensors (current weights, AdamW moments, the carried
hidden state, the RNG states) and, as its JSON metadata, the position (step, time
used, schedule scale, best result so far, size of metrics.jsonl). One file, written
atomically, so a kill at any instant leaves one consistent state on disk.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from charnn.errors import CheckpointError
from charnn.files import atomic_write_bytes
from charnn.model import State
from charnn.runs.names import RESUME_FILE

RESUME_VERSION = 1
_ADAM_KEYS = ("exp_avg", "exp_avg_sq", "step")


@dataclass
class Position:
    """Where training stands; saved as JSON beside the tensors."""

    step: int = 0
    elapsed: float = 0.0
    """Seconds of training so far, over all sessions of this run."""
    lr_scale: float = 1.0
    """Multiplies the scheduled learning rate; halved by each rollback."""
    rollbacks: int = 0
    evaluated_step: int = -1
    best_loss: float = float("inf")
    """Validation loss of the kept model."""
    best_score: float = float("inf")
    """What picks the kept model, lower being better (the task's; a language model's is its loss)."""
    best_step: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    metrics_bytes: int = 0
    """Size of metrics.jsonl when this state was saved: later lines are replayed on resume."""
    finished: bool = False

    def __post_init__(self) -> None:
        if math.isinf(self.best_score) and not math.isinf(self.best_loss):
            self.best_score = self.best_loss  # written before tasks had scores: a language model's


def save_resume(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, carry: State, position: Position
) -> None:
    tensors: dict[str, torch.Tensor] = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for name, tensor in model.state_dict().items():
        tensors[f"model.{name}"] = tensor
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                tensors[f"optim.{key}.{names[id(param)]}"] = torch.as_tensor(value).reshape(-1)
    for i, layer in enumerate(carry):
        for j, tensor in enumerate(layer):
            tensors[f"carry.{i}.{j}"] = tensor
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"format": "charnn-resume", "version": str(RESUME_VERSION), "position": json.dumps(asdict(position))}
    atomic_write_bytes(folder / RESUME_FILE, save_tensors(tensors, metadata=meta))


def load_resume(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, carry_template: State
) -> tuple[State, Position]:
    """Restore model, optimizer and RNG from the resume file; returns the carried state and position.

    ``carry_template`` is the carried state's shape (zeros), for the whole batch.
    """
    path = folder / RESUME_FILE
    try:
        data = path.read_bytes()
        tensors = load_tensors(data)
        meta = _metadata(data)
        position = Position(**json.loads(meta["position"]))
        version = int(meta.get("version", "0"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no {RESUME_FILE}: it cannot be resumed (train it anew)") from None
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path} is damaged and cannot be resumed: {exc}") from None
    if version > RESUME_VERSION:
        raise CheckpointError(f"{path} was written by a newer charnn; upgrade charnn to resume it")
    device = next(model.parameters()).device
    _restore_model(path, model, tensors)
    _restore_optimizer(path, model, optimizer, tensors, device)
    carry = _restore_carry(path, tensors, carry_template, device)
    try:
        torch.set_rng_state(tensors["rng.cpu"])
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path} holds no usable random-number state: {exc}") from None
    return carry, position


def _metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    meta = header.get("__metadata__", {})
    if meta.get("format") != "charnn-resume":
        raise ValueError("not a charnn resume file")
    return meta


def _restore_model(path: Path, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    found = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    if set(found) != set(expected) or any(
        found[k].shape != v.shape or found[k].dtype != v.dtype for k, v in expected.items()
    ):
        raise CheckpointError(f"{path} does not match the model in config.json; it cannot be resumed")
    model.load_state_dict(found)


def _restore_optimizer(path, model, optimizer, tensors, device) -> None:  # noqa: ANN001
    for name, param in model.named_parameters():
        keys = [f"optim.{key}.{name}" for key in _ADAM_KEYS]
        if not any(k in tensors for k in keys):
            continue  # the parameter has not been stepped yet
        if not all(k in tensors for k in keys):
            raise CheckpointError(f"{path} has an incomplete optimizer state for {name}")
        exp_avg, exp_avg_sq, step = (tensors[k] for k in keys)
        if exp_avg.numel() != param.numel() or exp_avg_sq.numel() != param.numel():
            raise CheckpointError(f"{path}: optimizer state for {name} does not fit the model")
        optimizer.state[param] = {
            # The fused kernel counts steps on the parameters' device; the others count on the host.
            "step": step.reshape(()).clone().to(device if optimizer.defaults.get("fused") else "cpu"),
            "exp_avg": exp_avg.reshape(param.shape).to(device),
            "exp_avg_sq": exp_avg_sq.reshape(param.shape).to(device),
        }


def _restore_carry(path, tensors, carry_template, device) -> State:  # noqa: ANN001
    restored: State = []
    for i, layer in enumerate(carry_template):
        parts = []
        for j, zero in enumerate(layer):
            tensor = tensors.get(f"carry.{i}.{j}")
            if tensor is None or tensor.shape != zero.shape:
                raise CheckpointError(f"{path}: the carried hidden state does not fit the model and batch size")
            parts.append(tensor.to(device))
        restored.append(tuple(parts))
    return restored
