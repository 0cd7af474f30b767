"""Process-group set-up for ``torchrun``: one process per device, DDP around the loss module.

Launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the context joins the
process group (NCCL on CUDA, gloo on CPU), pins each rank to ``cuda:LOCAL_RANK`` and wraps
modules in :class:`~torch.nn.parallel.DistributedDataParallel`. Run plainly, it does nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class DistributedContext:
    """Rank, world size and device of this process."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DDP when distributed, unchanged otherwise."""
        if self.world == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def distributed_context(device: torch.device) -> DistributedContext:
    """The context of this process; joins the process group when run under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistributedContext(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), device)
