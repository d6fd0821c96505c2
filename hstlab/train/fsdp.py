"""Fully sharded data parallel (PyTorch FSDP2, ``fully_shard``) for the Trainer.

``TrainConfig(parallel="fsdp")`` under ``torchrun`` shards the stem, every encoder block and
then the root (:func:`shard_units`): each rank holds 1/N of every parameter, gradient and AdamW
moment, and a unit's parameters are all-gathered just before its forward and backward.
Everything that is not a parameter stays per rank and whole: neuron membranes (plain
attributes, cleared by ``reset_state``) and buffers (BatchNorm running statistics, threshold
scales), which the trainer syncs from rank 0 before each evaluation exactly as under DDP.

Evaluation, BatchNorm calibration, the energy probe and threshold balancing run each rank on
its own data with every parameter gathered (:func:`gathered`), so ranks need not run the same
number of forward passes there. Checkpoints hold the full, unsharded state (:func:`full_state`,
:func:`optimizer_state`) in the usual format: an FSDP run loads with ``load_checkpoint`` like
any other, and resumes (same world size) with :func:`load_full_state` / :func:`load_optimizer_state`.

Example:
    >>> from torch import nn
    >>> is_sharded(nn.Linear(2, 2))
    False
    >>> sorted(full_state(nn.Linear(2, 2)))
    ['bias', 'weight']
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


class FSDPUnavailable(ValueError):
    """``parallel="fsdp"`` was asked for where this torch cannot shard the model."""


def _api() -> Any:
    """``torch.distributed.fsdp`` (FSDP2) or an :class:`FSDPUnavailable` naming what is missing."""
    try:
        import torch.distributed as dist
        from torch.distributed import fsdp
    except ImportError as exc:  # pragma: no cover - every torch build >= 2.6 with distributed has it
        raise FSDPUnavailable(f"parallel='fsdp' needs torch.distributed.fsdp (torch {torch.__version__}: {exc}); "
                              "allowed here: parallel='ddp'") from exc
    if not dist.is_available() or not hasattr(fsdp, "fully_shard"):
        raise FSDPUnavailable(f"parallel='fsdp' needs torch.distributed.fsdp.fully_shard (FSDP2, torch >= 2.6); "
                              f"torch {torch.__version__} lacks it; allowed here: parallel='ddp'")
    return fsdp


def is_sharded(model: nn.Module) -> bool:
    """True when ``model`` was wrapped by ``fully_shard`` (its parameters are sharded DTensors)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, FSDPModule)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules sharded on their own before the root, in forward order: the stem (tokenizer and
    positional encoding, or a staged model's patch embeddings) and each encoder block. The root
    keeps what is left (the head). :func:`hstlab.train.fsdp_plan.sharded_memory` sizes the same units.
    """
    embeds = getattr(model, "embeds", None)
    stem = list(embeds) if isinstance(embeds, nn.ModuleList) else [getattr(model, "tokenizer", None),
                                                                   getattr(model, "pos_encoding", None)]
    blocks = getattr(model, "blocks", None)
    units = [*stem, *(blocks if isinstance(blocks, nn.ModuleList) else [])]
    return [m for m in units if isinstance(m, nn.Module) and next(m.parameters(), None) is not None]


def shard(model: nn.Module) -> nn.Module:
    """``fully_shard`` every block of ``model`` and then ``model`` itself (in place); returns it.

    Rank 0's parameters and buffers are broadcast first (as DDP does at construction), so every
    rank starts from the same model however it was initialized. Needs an initialized process
    group (``torchrun``); its backend decides the device mesh (gloo on CPU, nccl on GPU).
    """
    fsdp = _api()
    learned = [name for name, _ in model.named_parameters() if name.endswith("threshold_scale")]
    if learned:
        raise ValueError(f"parallel='fsdp' cannot shard learned threshold scales ({learned[0]}, ...): their "
                         "warm-up writes whole parameters; allowed with fsdp: threshold_balance='hold' or 'off', "
                         "or parallel='ddp'")
    from torch.distributed.device_mesh import init_device_mesh

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            torch.distributed.broadcast(tensor, src=0)
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    for unit in shard_units(model):
        fsdp.fully_shard(unit, mesh=mesh)
    fsdp.fully_shard(model, mesh=mesh)
    return model


def _fsdp_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if is_sharded(m)]


@contextmanager
def gathered(model: nn.Module) -> Iterator[nn.Module]:
    """Every parameter of a sharded ``model`` gathered for the duration (no-op for other models).

    Collective: every rank enters it together. Inside, forward passes run without further
    communication, so each rank may run as many as its own data needs (evaluation, calibration).
    Writes to parameters inside are lost when it ends (buffers keep theirs).
    """
    units = _fsdp_modules(model)
    if not units:
        yield model
        return
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False)
    try:
        yield model
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(True)


def local_state(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` with each sharded tensor replaced by this rank's shard (no communication)."""
    return {k: _local(v) for k, v in model.state_dict().items()}


def _local(value: Any) -> Any:
    to_local = getattr(value, "to_local", None)
    return to_local() if callable(to_local) else value


def full_tensor(value: Tensor) -> Tensor:
    """A sharded or replicated DTensor as a plain tensor (collective for sharded ones); others as they are."""
    full = getattr(value, "full_tensor", None)
    return full() if callable(full) else value


def full_state(model: nn.Module, *, all_ranks: bool = True) -> dict[str, Tensor]:
    """The unsharded state dict on the CPU, keys as ``model.state_dict()`` of the plain model.

    For a sharded model this is collective; with ``all_ranks=False`` only rank 0 receives it
    (``cpu_offload``: the others get ``{}``), which is what writing a checkpoint needs.
    """
    if not is_sharded(model):
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=not all_ranks)
    state = get_model_state_dict(model, options=options)
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def load_full_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Load a full (unsharded) ``state`` into ``model``, sharded or not (strict: keys must match)."""
    if not is_sharded(model):
        model.load_state_dict(state, strict=True)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=True))


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with every sharded moment gathered whole (collective when sharded).

    The layout (parameter ids, groups) is the plain optimizer's, so a checkpoint looks the same
    whichever way it was trained.
    """
    state = optimizer.state_dict()
    state["state"] = {i: {k: full_tensor(v).cpu() if isinstance(v, Tensor) else v for k, v in s.items()}
                      for i, s in state["state"].items()}
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_state`: each whole moment is sharded like its parameter."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer.load_state_dict(state)
    for p in params:
        if not isinstance(p, DTensor):
            continue
        for key, value in list(optimizer.state.get(p, {}).items()):
            if isinstance(value, Tensor) and not isinstance(value, DTensor) and value.shape == p.shape:
                optimizer.state[p][key] = distribute_tensor(value.to(p.device, p.dtype), p.device_mesh, p.placements)
