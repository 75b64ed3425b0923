"""Choosing the device and the arithmetic precision."""

from __future__ import annotations

from typing import Any

import torch

from charnn.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then MPS, then the CPU; a named device must be present."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps") or (device.type == "cpu" and device.index):
        raise ConfigError(f"unknown --device {name!r}; choose one of: auto, cpu, cuda (or cuda:N), mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was asked for but no CUDA device is available; use --device auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), from cuda:0")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for but MPS is not available; use --device auto or cpu")
    return device


def resolve_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast: 'auto' uses it where the hardware is fast at it."""
    if precision == "fp32":
        return False
    supported = fast_bf16(device)
    if precision == "bf16" and device.type == "mps":
        raise ConfigError("--precision bf16 is not supported on MPS; use --precision fp32")
    return supported if precision == "auto" else True


def fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Native bf16 dot products (AVX512-BF16 or AMX); emulated bf16 is slower than fp32.
        cpu = torch.cpu
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


GPU_WINDOWS_PER_ROW = 32
"""CUDA's batch and window defaults apply where each row of the text holds this many windows."""


def device_settings(device: str, given: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The settings as given, the device's defaults where not (a GPU's are larger:
    charnn.config.CUDA_DEFAULTS), and a note saying which defaults a GPU chose (None elsewhere)."""
    from charnn.config import DEVICES, device_defaults

    kind = resolve_device(device).type if device in DEVICES else "cpu"  # TrainConfig names a bad --device
    defaults = device_defaults(kind)
    chosen = {key: defaults[key] if value is None else value for key, value in given.items()}
    note = None
    if kind == "cuda" and any(value is None for value in given.values()):
        shown = ", ".join(
            f"--{key.replace('_', '-')} {defaults[key]:g}" for key, value in given.items() if value is None
        )
        note = f"on CUDA: {shown} (the GPU defaults; give any of them to change it)"
    return chosen, note


def fit_small_corpus(config: Any, given: dict[str, Any], chars: int) -> tuple[Any, str | None]:
    """A corpus too small for CUDA's batch and window defaults keeps the CPU's (as it would train on one);
    the note says so."""
    import dataclasses

    from charnn.config import CUDA_DEFAULTS, device_defaults

    if given["batch_size"] is not None or given["seq_len"] is not None:
        return config, None
    if (config.batch_size, config.seq_len) != (CUDA_DEFAULTS["batch_size"], CUDA_DEFAULTS["seq_len"]):
        return config, None
    needed = config.batch_size * (config.seq_len + 1) * GPU_WINDOWS_PER_ROW
    if chars * (1 - config.val_fraction) >= needed:
        return config, None
    cpu = device_defaults("cpu")
    note = (
        f"the corpus is small for CUDA's batch and window: --batch-size {cpu['batch_size']} --seq-len {cpu['seq_len']}"
    )
    return dataclasses.replace(config, batch_size=cpu["batch_size"], seq_len=cpu["seq_len"]), note
