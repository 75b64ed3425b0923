"""The optimizer, its schedule and gradient clipping: the same for every kind of run."""

from __future__ import annotations

import math

import torch

from charnn.config import TrainConfig


def lr_at(step: int, fraction: float, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay over the budget fraction."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))


def clip_gradients(parameters, max_norm: float) -> torch.Tensor:  # noqa: ANN001
    """Scale gradients so their global L2 norm is at most ``max_norm`` (0: no clipping).

    Returns the norm before clipping, which training logs.
    """
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm if max_norm > 0 else math.inf)


ENCODER = ("embed", "rnns")
"""Parameter names that begin so are the encoder: the embedding(s) and the recurrent stack(s)."""


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW: matrices decay, vectors do not. Each group carries ``lr_scale``, which the loop
    multiplies the schedule's rate by: ``config.encoder_lr_scale`` for the encoder, else 1."""
    named = list(model.named_parameters())
    if config.encoder_lr_scale == 1.0:
        parts = [(1.0, [p for _, p in named])]
    else:
        encoder = [p for n, p in named if n.startswith(ENCODER)]
        parts = [(config.encoder_lr_scale, encoder), (1.0, [p for n, p in named if not n.startswith(ENCODER)])]
    groups = []
    for scale, params in parts:
        groups.append({"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay})
        groups.append({"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0})
        groups[-2]["lr_scale"] = groups[-1]["lr_scale"] = scale
    groups = [group for group in groups if group["params"]]
    # The fused kernel updates every tensor in one pass (CPU and CUDA); elsewhere, the default.
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters()) or None
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99), fused=fused)
