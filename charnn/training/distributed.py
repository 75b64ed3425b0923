"""Data-parallel training across processes (`torchrun --nproc-per-node N -m charnn train ...`).

Each process (rank) trains its own contiguous block of the B rows of the stream;
DistributedDataParallel averages the gradients; each rank's loss is its share of the
mean over all the targets of the B rows (``World.loss_per_target``: ranks may hold
different numbers of targets, as record, tagger and style runs do), so N processes
train the model one process would train with the same global batch (tested for every
kind of run). Only rank 0 writes files and reports progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from charnn.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def rows(self, batch_size: int) -> slice:
        """This rank's block of the global batch's rows."""
        if batch_size % self.size:
            raise ConfigError(
                f"--batch-size {batch_size} does not split evenly over {self.size} processes; "
                f"use a multiple of {self.size}"
            )
        per_rank = batch_size // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def max(self, *values: float) -> list[float]:
        """Each value's maximum over the ranks, so that all ranks decide alike."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return value
        value = value.detach().clone().float().cpu()
        dist.all_reduce(value)
        return value / self.size

    def loss_per_target(self, logits: torch.Tensor, targets: torch.Tensor, ignore: int = -100) -> torch.Tensor:
        """Cross-entropy per counted target over the whole global batch, as this rank's share.

        Under torchrun the gradients of the ranks are averaged, so a rank whose rows hold fewer
        counted targets (padding, words, records) would weigh its own more than one process
        would. Each rank returns its sum times the number of ranks over the count of all ranks:
        the average of those is the one process's mean. One process: the mean, as ever.
        """
        if not self.active:
            return F.cross_entropy(logits, targets, ignore_index=ignore)
        count = (targets != ignore).sum().float()
        dist.all_reduce(count)
        return F.cross_entropy(logits, targets, ignore_index=ignore, reduction="sum") * self.size / count.clamp(min=1)

    def close(self) -> None:
        """Leave the process group together, so no process exits while another still talks to it."""
        if self.active and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def gather_rows(self, tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The blocks of all ranks joined in rank order along ``dim`` (on every rank)."""
        if not self.active:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=dim)


def init_world(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun set up, if any; returns the world and this rank's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run charnn without torchrun")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size()), device


def is_main_process() -> bool:
    """Whether this is the first process under torchrun (or the only one): it alone speaks and recovers."""
    return os.environ.get("RANK", "0") == "0"
