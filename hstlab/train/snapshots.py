"""The trainer's checkpoints in its run directory: the last state (for resume) and the best model.

Nothing is written from a model holding NaN or inf: the run directory keeps the last finite
state, and a divergence message says truthfully what it holds (:func:`kept`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hstlab.config import HSTConfig
from hstlab.train import checkpoint as ckpt_io
from hstlab.train import distributed as dist_utils
from hstlab.train import fsdp
from hstlab.train.events import TrainingDiverged
from hstlab.train.resume import rng_state, train_state

if TYPE_CHECKING:
    from hstlab.train.trainer import Trainer


def meta(trainer: Trainer, **more: Any) -> dict[str, Any]:
    """The ``meta`` a checkpoint stores: seed, position, modes, loss, builder, versions, extras."""
    out = {"seed": trainer.seed, "epoch": trainer.progress.epoch, "step": trainer.progress.step,
           "modes": trainer.cfg.modes, "loss": trainer.loss_name,
           "builder": ckpt_io.builder_name(trainer.build_fn), "versions": dict(ckpt_io.versions())}
    out.update(trainer.extra_meta)
    out.update(more)
    return out


def check_state_finite(trainer: Trainer, target: str) -> None:
    """Refuse to save a model whose parameters or buffers (e.g. BatchNorm running_var) hold NaN/inf."""
    bad_names = ckpt_io.nonfinite_tensors(fsdp.local_state(trainer.model))  # FSDP: this rank's shards
    bad = dist_utils.all_reduce_sum(torch.tensor([float(len(bad_names))], device=trainer.device), trainer.ctx)
    if bad.item() > 0:
        names = ", ".join(bad_names[:3]) + (f" and {len(bad_names) - 3} more" if len(bad_names) > 3 else "")
        p = trainer.progress
        raise TrainingDiverged(
            f"the model's parameters/buffers hold NaN or inf ({names or 'on another rank'}) after step "
            f"{p.step} (epoch {p.epoch}); {target} was not written and training "
            f"stopped ({kept(trainer)}). Try a lower lr, a larger warm-up, or grad_clip.")


def kept(trainer: Trainer) -> str:
    """What the run directory truthfully holds after a divergence."""
    if trainer.run_dir is None:
        return "no run dir: nothing was saved"
    last, best_path = ckpt_io.run_checkpoint(trainer.run_dir, "last"), ckpt_io.run_checkpoint(trainer.run_dir)
    if trainer.saved_last_step is None:
        return f"no {last.name} of this run was written before it diverged in {str(trainer.run_dir)!r}"
    best = (f"; {best_path.name} holds epoch {trainer.progress.best_epoch}"
            if trainer.progress.best_epoch >= 0 and best_path.is_file() else "")
    return f"{str(last)!r} keeps step {trainer.saved_last_step}, the last finite state{best}"


def save_last(trainer: Trainer) -> None:
    """Write the last checkpoint (rank 0) with every rank's RNG state and epoch totals.

    Under DDP every rank must be given the same ``run_dir`` (the RNG gather is collective; under
    FSDP so are the gathers of the full model and optimizer state).
    """
    if trainer.run_dir is None:
        return
    target = ckpt_io.run_checkpoint(trainer.run_dir, "last", new=True)
    check_state_finite(trainer, target.name)
    local = {"rng": rng_state(trainer.device), "totals": trainer.totals.state()}
    ranks = dist_utils.all_gather_object(local, trainer.ctx)
    trainer.saved_last_step = trainer.progress.step
    sharded = fsdp.is_sharded(trainer.model)
    if not (trainer.ctx.is_main or sharded):
        return
    model_state = fsdp.full_state(trainer.model, all_ranks=False)  # FSDP: collective, rank 0 receives it
    optimizer = fsdp.optimizer_state(trainer.optimizer)
    if not trainer.ctx.is_main:
        return
    ckpt = ckpt_io.make_checkpoint(trainer.model, trainer.cfg, meta(trainer),
                                   train_state(trainer, ranks, optimizer), state=model_state)
    ckpt_io.atomic_save(ckpt, target)


class BestModel:
    """The best validation model so far: kept in memory, and written as the run directory's best checkpoint."""

    def __init__(self) -> None:
        self.state: tuple[HSTConfig, dict[str, torch.Tensor]] | None = None

    def save(self, trainer: Trainer, val: dict[str, Any]) -> None:
        name = ckpt_io.run_checkpoint(trainer.run_dir or ".", new=True).name
        check_state_finite(trainer, name)
        self.state = (trainer.cfg, fsdp.full_state(trainer.model))  # every rank rebuilds the best model
        if trainer.ctx.is_main and trainer.run_dir is not None:
            info = meta(trainer, **{f"val_{k}": v for k, v in val.items()})
            ckpt_io.atomic_save(ckpt_io.make_checkpoint(trainer.model, trainer.cfg, info, state=self.state[1]),
                                ckpt_io.run_checkpoint(trainer.run_dir, new=True))

    def model(self, trainer: Trainer) -> tuple[nn.Module, HSTConfig]:
        """The best model rebuilt (from memory, else the run directory), or the current one if none."""
        best = self.state
        path = ckpt_io.run_checkpoint(trainer.run_dir) if trainer.run_dir is not None else None
        if best is None and path is not None and path.exists():
            ckpt = ckpt_io.read_checkpoint(path)
            best = (ckpt_io.config_of(ckpt, path), ckpt["model"])
        if best is None:
            return trainer.model, trainer.cfg
        cfg, state = best
        devices = [trainer.device] if trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # building must not disturb the RNG
            model = trainer.build_fn(cfg).to(trainer.device)
        model.load_state_dict(state, strict=True)
        return model, cfg
