"""Choosing the device and the arithmetic precision."""

from __future__ import annotations

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
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for but MPS is not available; use --device auto or cpu")
    return torch.device(name)


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
