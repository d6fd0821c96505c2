"""Data-parallel helpers: process group from torchrun's environment, DDP wrap, sums across ranks.

The same :class:`hstlab.Trainer` runs single-process or under
``torchrun --nproc_per_node=2 -m hstlab train ...``: gloo on CPU, nccl on GPU; each rank
reads its own shard of every epoch's permutation; only rank 0 writes files.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the data-parallel group.

    Example:
        >>> ctx = DistContext()
        >>> ctx.is_main, ctx.world_size
        (True, 1)
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_context() -> DistContext:
    """The context of an already-initialized process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                           local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                           backend=str(dist.get_backend()))
    return DistContext()


def init_from_env(backend: str | None = None) -> DistContext:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); otherwise single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return current_context()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_device(device: str | torch.device, ctx: DistContext | None = None) -> torch.device:
    """``device`` as a ``torch.device`` that this machine has; ``ValueError`` naming the allowed values.

    Under torchrun (``ctx`` enabled) every rank takes its own GPU: "cuda" means ``cuda:LOCAL_RANK``,
    and any other index is refused.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={str(device)!r} is not allowed; allowed: cpu, cuda, cuda:N")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={str(device)!r}: torch sees no CUDA device here (torch {torch.__version__}); "
                             "allowed: cpu")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device={str(device)!r}: only {count} CUDA device(s); allowed: cuda:0 ... cuda:{count - 1}")
        if ctx is not None and ctx.enabled:
            if dev.index not in (None, ctx.local_rank):
                raise ValueError(f"device={str(device)!r} under torchrun: each rank uses its own GPU; "
                                 f"allowed: cuda (this rank: cuda:{ctx.local_rank}) or cpu")
            return torch.device("cuda", ctx.local_rank)
    return dev


def default_device(ctx: DistContext) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", ctx.local_rank if ctx.enabled else torch.cuda.current_device())
    return torch.device("cpu")


def wrap_model(model: nn.Module, ctx: DistContext, find_unused_parameters: bool = False,
               parallel: str = "ddp") -> nn.Module:
    """The model to call in training steps: ``model`` itself in one process; under torchrun
    DistributedDataParallel around it (``parallel="ddp"``), or ``model`` sharded in place by FSDP2
    (``parallel="fsdp"``, :mod:`hstlab.train.fsdp`).

    Buffers are not broadcast every step (spiking state may live in buffers); call
    :func:`sync_buffers` before evaluating so every rank holds rank 0's running statistics.
    """
    if not ctx.enabled:
        return model
    if parallel == "fsdp":
        from hstlab.train import fsdp

        return fsdp.shard(model)
    device_ids = [model_device(model).index] if model_device(model).type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # newer torch renames broadcast_buffers; either way buffers are synced once, at construction
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
    return ddp(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters, **{no_sync: False})


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's persistent buffers (e.g. BatchNorm running stats) to every rank."""
    if not ctx.enabled:
        return
    persistent = set(model.state_dict().keys())
    for name, buf in model.named_buffers():
        if name in persistent and buf is not None:
            dist.broadcast(buf, src=0)


def all_gather_object(obj: object, ctx: DistContext) -> list:
    """Every rank's ``obj`` in rank order (a one-element list when single-process)."""
    if not ctx.enabled:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum over ranks (in place for distributed runs); returns the tensor."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: object, ctx: DistContext) -> object:
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
