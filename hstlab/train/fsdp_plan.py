"""Memory per GPU of training a config with FSDP2 (:mod:`hstlab.train.fsdp`), from the config alone.

Built on :func:`hstlab.sizing.estimate_size` (exact parameter counts, activation estimate per
sample) and the sharding units of :func:`hstlab.train.fsdp.shard_units` (stem modules, one unit
per encoder block, the head in the root). Per GPU, fp32 with AdamW:

- sharded state: parameters, gradients and the two AdamW moments, ``16 P / N`` bytes;
- gathered units: while a unit runs its parameters are whole; FSDP2 prefetches the next one,
  and in the backward a unit's whole gradient lives until it is reduce-scattered, so about
  ``3 x`` the largest unit, plus the root's own parameters and gradients (none of it when N = 1);
- activations: what the forward keeps for the backward at the per-GPU batch; with activation
  checkpointing per block only each block's input ``[T, B, N, D]`` is kept, plus the stem and
  head, plus one block's activations while it is recomputed.

Not counted: the CUDA context and allocator slack (typically 0.5-1 GiB), data loading,
communication buffers of NCCL.

Example:
    >>> from hstlab.config import HSTConfig
    >>> one = sharded_memory(HSTConfig.from_preset("hst-100m"), batch_size=8, world_size=1)
    >>> eight = sharded_memory(HSTConfig.from_preset("hst-100m"), batch_size=8, world_size=8)
    >>> one.state_bytes == 8 * eight.state_bytes, one.activation_bytes == eight.activation_bytes
    (True, True)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from hstlab.config import HSTConfig
from hstlab.sizing import FLOAT_BYTES, estimate_size

STATE_COPIES = 4  # parameter, gradient, AdamW exp_avg and exp_avg_sq (fp32 each)
GATHERED_UNITS = 3  # the running unit's parameters, the prefetched unit's, the running unit's gradient
GIB = 2**30
_LAYER = re.compile(r"^layers\[(\d+)\]")


@dataclass(frozen=True)
class ShardedMemory:
    """Bytes per GPU of one training step of a config over ``world_size`` GPUs at ``batch_size`` each."""

    world_size: int
    batch_size: int
    params: int
    largest_unit: int  # parameters of the largest sharded unit (a block or a stem module)
    state_bytes: int  # parameters + gradients + AdamW moments, sharded
    gathered_bytes: int  # whole parameters and gradients of the units in flight
    activation_bytes: int
    checkpointed_activation_bytes: int  # with activation checkpointing per block

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.gathered_bytes + self.activation_bytes

    @property
    def checkpointed_total_bytes(self) -> int:
        return self.state_bytes + self.gathered_bytes + self.checkpointed_activation_bytes


def _block_boundaries(cfg: HSTConfig) -> list[int]:
    """Floats of each block's input ``[T, N, D]`` per sample (what checkpointing keeps)."""
    t = cfg.num_steps
    if not cfg.stages:
        return [t * cfg.num_tokens * cfg.n_embd] * cfg.n_layer
    from hstlab.staged import stage_bounds

    out = []
    for stage, (start, end), (h, w) in zip(cfg.stages, stage_bounds(cfg), cfg.stage_grids()):
        out += [t * h * w * stage.n_embd] * (end - start)
    return out


def sharding_units(cfg: HSTConfig) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """``([(params, activation floats per sample)] of each unit in forward order, (the root's))``.

    The units are :func:`hstlab.train.fsdp.shard_units`' (stem modules, then one per block; a
    test checks the counts against a sharded model); the root keeps the head.

    Example:
        >>> units, root = sharding_units(HSTConfig.from_preset("hst-100m"))
        >>> len(units), root[0]
        (10, 10250)
    """
    est = estimate_size(cfg)
    blocks: dict[int, list[int]] = {}
    stem: list[tuple[int, int]] = []
    root = (0, 0)
    for term in est.terms:
        match = _LAYER.match(term.component)
        if match:
            block = blocks.setdefault(int(match.group(1)), [0, 0])
            block[0] += term.params
            block[1] += term.activation_floats
        elif term.component == "head":
            root = (term.params, term.activation_floats)
        else:
            stem.append((term.params, term.activation_floats))
    return [*stem, *((p, a) for p, a in blocks.values())], root


def sharded_memory(cfg: HSTConfig, batch_size: int, world_size: int) -> ShardedMemory:
    """Memory per GPU of training ``cfg`` with FSDP2 over ``world_size`` GPUs, ``batch_size`` per GPU.

    ``world_size=1`` is plain single-GPU training (nothing sharded, nothing gathered).
    """
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be an integer >= 1")
    est = estimate_size(cfg, batch_size)  # checks batch_size
    units, root = sharding_units(cfg)
    n_stem = len(units) - len(_block_boundaries(cfg))
    largest = max((p for p, _ in units), default=0)
    state = STATE_COPIES * est.params * FLOAT_BYTES // world_size
    gathered = 0 if world_size == 1 else (GATHERED_UNITS * largest + 2 * root[0]) * FLOAT_BYTES
    kept = sum(a for _, a in units[:n_stem]) + root[1] + sum(_block_boundaries(cfg))
    recompute = max((a for _, a in units[n_stem:]), default=0)
    return ShardedMemory(world_size=world_size, batch_size=batch_size, params=est.params, largest_unit=largest,
                         state_bytes=state, gathered_bytes=gathered, activation_bytes=est.activation_bytes,
                         checkpointed_activation_bytes=(kept + recompute) * batch_size * FLOAT_BYTES)


def memory_table(cfg: HSTConfig, batch_size: int, world_sizes: Sequence[int] = (1, 2, 4, 8)) -> str:
    """A Markdown table of :func:`sharded_memory` in GiB, one row per GPU count.

    Example:
        >>> print(memory_table(HSTConfig.from_preset("tiny"), 8, (1,)).splitlines()[0])
        | GPUs | global batch | params + grads + AdamW | gathered units | activations | total | activations, checkpointed | total, checkpointed |
    """  # noqa: E501
    rows = ["| GPUs | global batch | params + grads + AdamW | gathered units | activations | total "
            "| activations, checkpointed | total, checkpointed |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in world_sizes:
        m = sharded_memory(cfg, batch_size, n)
        cells = [m.state_bytes, m.gathered_bytes, m.activation_bytes, m.total_bytes,
                 m.checkpointed_activation_bytes, m.checkpointed_total_bytes]
        rows.append(f"| {n} | {n * batch_size} | " + " | ".join(f"{c / GIB:.2f}" for c in cells) + " |")
    return "\n".join(rows)
