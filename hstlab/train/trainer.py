"""The training loop: AdamW + warm-up/cosine, clipping, mode schedules, checkpoints, resume, DDP.

The trainer draws nothing: it reports :class:`TrainEvent` objects to callbacks.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler

from hstlab.config import HSTConfig
from hstlab.data.collate import spread_indices
from hstlab.layers.norm import calibrate_batchnorm
from hstlab.train import checkpoint as ckpt_io
from hstlab.train import distributed as dist_utils
from hstlab.train.checks import check_args
from hstlab.train.config import TrainConfig
from hstlab.train.events import TrainEvent, TrainingDiverged, dispatch, normalize_callbacks
from hstlab.train.losses import build_loss
from hstlab.train.meters import SpikeRateMeter, energy_per_sample
from hstlab.train.regularisers import SpikeRegulariser, build_regulariser
from hstlab.train.schedule import WarmupCosine
from hstlab.train.warmup import warm_up_thresholds

EVAL_SEED_OFFSET = 7919


def default_collate(batch: list[tuple[Any, Any]]) -> tuple[Tensor, Tensor]:
    """``hstlab.data.time_first_collate`` when available, else stack to [B, T, ...] and swap to [T, B, ...].

    Integer labels become ``[B]``; tensor targets with a leading time axis become ``[L, B, ...]``.
    """
    try:
        from hstlab.data import time_first_collate
    except ImportError:
        time_first_collate = None
    if time_first_collate is not None:
        return time_first_collate(batch)
    xs, ys = zip(*batch)
    x = torch.stack([torch.as_tensor(v) for v in xs]).transpose(0, 1).contiguous()  # [T, B, ...]
    if isinstance(ys[0], Tensor) and ys[0].dim() >= 1:
        y = torch.stack(list(ys)).transpose(0, 1).contiguous()  # [L, B, ...]
    else:
        y = torch.as_tensor([int(v) for v in ys], dtype=torch.long)  # [B]
    return x, y


@dataclass
class _Progress:
    """Everything that moves during training (saved in ``last.pt`` for exact resume)."""

    epoch: int = 0
    pos: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps done
    seconds: float = 0.0
    best_score: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)


class _EpochTotals:
    """Running sums of the train metrics of one epoch (this rank only)."""

    def __init__(self) -> None:
        self.loss_sum, self.samples, self.spikes, self.neurons = 0.0, 0, 0.0, 0
        self.stats: dict[str, Tensor] = {}

    def add(self, loss: float, n: int, stats: dict[str, Tensor], spikes: float, neurons: int) -> None:
        self.loss_sum += loss * n
        self.samples += n
        self.spikes += spikes
        self.neurons += neurons
        for k, v in stats.items():
            v = v.detach().to("cpu", torch.float64)
            self.stats[k] = self.stats[k] + v if k in self.stats else v.clone()

    def state(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "samples": self.samples, "spikes": self.spikes,
                "neurons": self.neurons, "stats": dict(self.stats)}

    def load(self, state: dict[str, Any]) -> None:
        self.loss_sum, self.samples = float(state["loss_sum"]), int(state["samples"])
        self.spikes, self.neurons = float(state["spikes"]), int(state["neurons"])
        self.stats = dict(state["stats"])


class Trainer:
    """Train an HST-Net (or any ``nn.Module`` with a ``cfg``) and report to callbacks.

    AdamW (decay on weights with >= 2 dims only), linear warm-up over ``warmup_frac`` of the
    steps then cosine decay, gradient clipping at ``grad_clip``. Before each batch
    ``model.reset_state()`` clears spiking state. Model selection uses the validation split
    only (``accuracy``, or ``bits_per_spike`` for count losses); the test split is evaluated
    once, on the best model, at the end.

    ``cfg.mode_schedule`` switches layers between spiking and standard at epoch boundaries:
    the model is rebuilt with ``build_fn(cfg.with_modes(letters))``, every tensor whose name
    and shape survive is copied (``load_state_dict(strict=False)``), and the AdamW moments of
    surviving parameters are carried over (new parameters start with fresh moments).

    With ``run_dir`` the trainer writes ``config.json``, ``history.csv``, ``metrics.json``,
    ``best.pt`` and ``last.pt`` (after each epoch and every ``checkpoint_every`` steps, atomic).
    ``resume=RUN_DIR`` continues from ``RUN_DIR/last.pt`` to the same result as an
    uninterrupted run (optimizer, schedule, RNG states and data order restored).

    BatchNorm running statistics are re-estimated before each end-of-epoch evaluation from
    ``bn_recalibration_batches`` fixed training batches (train-mode forward, no gradients, RNG
    forked): with the default momentum they still hold mostly their initial values (mean 0,
    var 1) after a short run, while sparse spiking inputs give variances near 1e-2, so an
    eval-mode network would fall silent (val firing rate ~0, chance accuracy). 0 turns it off.

    ``augment`` (e.g. :class:`hstlab.data.augment.RandomShift`) transforms each training batch
    before the forward pass; validation, test, calibration and energy batches are never augmented.

    Callbacks: objects with any of ``on_step_end``, ``on_epoch_end``, ``on_fit_end``, or
    plain callables (receive every event). Under ``torchrun`` they run on rank 0 only.

    Example:
        >>> trainer = Trainer(model, cfg, train_ds, val_ds, test_ds, epochs=2,
        ...                   callbacks=[lambda ev: print(ev.kind, ev.loss)])  # doctest: +SKIP
        >>> metrics = trainer.fit()  # doctest: +SKIP
        >>> metrics["val_accuracy"], metrics["test_accuracy"]  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: HSTConfig | None,
        train_data: Dataset,
        val_data: Dataset,
        test_data: Dataset | None = None,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = TrainConfig.weight_decay,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_frac: float = TrainConfig.warmup_frac,
        grad_clip: float | None = TrainConfig.grad_clip,
        loss: str | nn.Module = "cross_entropy",
        loss_options: dict[str, Any] | None = None,
        callbacks: Any = None,
        run_dir: str | Path | None = None,
        resume: str | Path | None = None,
        checkpoint_every: int = 0,
        seed: int = 0,
        max_seconds: float | None = None,
        device: str | torch.device | None = None,
        collate_fn: Callable[[list], tuple[Tensor, Any]] | None = None,
        num_workers: int = 0,
        build_fn: Callable[[HSTConfig], nn.Module] | None = None,
        measure_energy: bool = True,
        energy_preset: str = "45nm-fp32",
        find_unused_parameters: bool = False,
        extra_meta: dict[str, Any] | None = None,
        bn_recalibration_batches: int = 8,
        augment: Callable[[Tensor], Tensor] | None = None,
        regulariser: str | SpikeRegulariser | None = None,
        regulariser_options: dict[str, Any] | None = None,
    ) -> None:
        check_args(epochs=epochs, batch_size=batch_size, eval_batch_size=eval_batch_size, lr=lr,
                   weight_decay=weight_decay, warmup_frac=warmup_frac, grad_clip=grad_clip, seed=seed,
                   checkpoint_every=checkpoint_every, max_seconds=max_seconds,
                   bn_recalibration_batches=bn_recalibration_batches)
        if augment is not None and not callable(augment):
            raise ValueError(f"augment={augment!r} must be a callable on training inputs (e.g. RandomShift(2)) or None")
        if len(train_data) == 0 or len(val_data) == 0:
            raise ValueError("train_data and val_data must not be empty")
        cfg = cfg if cfg is not None else getattr(model, "cfg", None)
        if not isinstance(cfg, HSTConfig):
            raise ValueError(f"cfg={cfg!r} must be an HSTConfig (or the model must carry one as .cfg)")  # noqa: TRY004
        self.ctx = dist_utils.current_context()
        self.device = (dist_utils.check_device(device, self.ctx) if device is not None
                       else dist_utils.default_device(self.ctx))
        self.cfg = cfg
        self.train_data, self.val_data, self.test_data = train_data, val_data, test_data
        self.epochs, self.batch_size = epochs, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.lr, self.weight_decay, self.betas = lr, weight_decay, betas
        self.warmup_frac, self.grad_clip = warmup_frac, grad_clip
        self.loss_fn = build_loss(loss, **(loss_options or {})).to(self.device)
        self.loss_name = loss if isinstance(loss, str) else type(loss).__name__
        self.callbacks = normalize_callbacks(callbacks)
        self.resume = Path(resume) if resume is not None else None
        if run_dir is None and self.resume is not None:
            run_dir = self.resume if self.resume.is_dir() else self.resume.parent
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._best: tuple[HSTConfig, dict[str, Tensor]] | None = None
        self.checkpoint_every = checkpoint_every
        self.seed = seed
        self.max_seconds = max_seconds
        self.collate_fn = collate_fn or default_collate
        self.num_workers = num_workers
        self.build_fn = build_fn or ckpt_io.resolve_builder(None)
        self.measure_energy = measure_energy
        self.energy_preset = energy_preset
        self.find_unused_parameters = find_unused_parameters
        self.extra_meta = dict(extra_meta or {})
        self.bn_recalibration_batches = bn_recalibration_batches
        self.augment = augment
        self.progress = _Progress()
        self.totals = _EpochTotals()
        self.stop_reason: str | None = None
        self.saved_last_step: int | None = None  # step of the last.pt on disk (written or resumed here)
        self.removed_temp_files: list[str] = []
        self.regulariser = build_regulariser(regulariser, **(regulariser_options or {}))  # spike penalty
        self._install_model(model.to(self.device))
        self.optimizer = self._make_optimizer()
        self.scheduler = WarmupCosine(self.optimizer, lr, self.total_steps, warmup_frac)

    # ------------------------------------------------------------------ setup
    @property
    def batches_per_epoch(self) -> int:
        per_rank = math.ceil(len(self.train_data) / self.ctx.world_size)
        return math.ceil(per_rank / self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.batches_per_epoch

    def _install_model(self, model: nn.Module) -> None:
        self.model = model
        self.ddp_model = dist_utils.wrap_model(model, self.ctx, self.find_unused_parameters)
        if getattr(self, "meter", None) is not None:
            self.meter.close()
        self.meter = SpikeRateMeter(model)
        if getattr(self, "regulariser", None) is not None:
            self.regulariser.attach(model)

    def _named_params(self) -> list[tuple[str, nn.Parameter]]:
        named = [(f"model.{n}", p) for n, p in self.model.named_parameters() if p.requires_grad]
        named += [(f"loss.{n}", p) for n, p in self.loss_fn.named_parameters() if p.requires_grad]
        return named

    def _make_optimizer(self) -> torch.optim.AdamW:
        named = self._named_params()
        decay = [p for n, p in named if p.dim() >= 2]
        no_decay = [p for n, p in named if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        try:  # the fused kernel: one pass per step instead of ~10 ops per parameter (CPU: torch >= 2.4)
            return torch.optim.AdamW(groups, lr=self.lr, betas=self.betas, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.AdamW(groups, lr=self.lr, betas=self.betas)

    def _reset(self) -> None:
        if hasattr(self.model, "reset_state"):
            self.model.reset_state()

    # ------------------------------------------------------------------ data order
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``: a ``DistributedSampler`` seeded by (seed, epoch)."""
        sampler = DistributedSampler(self.train_data, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                     shuffle=True, seed=self.seed, drop_last=False)
        sampler.set_epoch(epoch)
        return _chunks(list(sampler), self.batch_size)

    def _loader(self, dataset: Dataset, batches: list[list[int]], epoch: int = 0) -> Iterable[tuple[Tensor, Any]]:
        if not batches:
            return []
        # Its own generator: a DataLoader otherwise draws its base seed (workers' seeds) from the
        # global RNG when iterated, which would shift every later draw (augmentation, masking)
        # after a mid-epoch resume.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=self.collate_fn,
                                           num_workers=self.num_workers, generator=generator)

    def _to_device(self, value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.to(self.device, non_blocking=True)
        if isinstance(value, (tuple, list)):
            return type(value)(self._to_device(v) for v in value)
        return value

    # ------------------------------------------------------------------ mode schedule
    def _apply_mode_schedule(self, epoch: int) -> bool:
        """Rebuild the model if the schedule asks for other modes at ``epoch``; True if rebuilt."""
        letters = self.cfg.modes_at_epoch(epoch)
        if letters is None or letters == self.cfg.modes:
            return False
        new_cfg = self.cfg.with_modes(letters)
        new_model = self.build_fn(new_cfg).to(self.device)
        new_model.train(self.model.training)
        old_state = self.model.state_dict()
        target = new_model.state_dict()
        carried = {k: v for k, v in old_state.items() if k in target and target[k].shape == v.shape}
        new_model.load_state_dict(carried, strict=False)
        old_named = dict(self._named_params())
        old_opt = self.optimizer
        self.cfg = new_cfg
        self._install_model(new_model)
        self.optimizer = self._make_optimizer()
        for name, p in self._named_params():  # keep AdamW moments of surviving parameters
            old = old_named.get(name)
            if old is not None and old.shape == p.shape and old in old_opt.state:
                self.optimizer.state[p] = {k: (v.clone() if isinstance(v, Tensor) else v)
                                           for k, v in old_opt.state[old].items()}
        self.scheduler.attach(self.optimizer)
        return True

    # ------------------------------------------------------------------ checkpoints
    def _meta(self, **more: Any) -> dict[str, Any]:
        meta = {"seed": self.seed, "epoch": self.progress.epoch, "step": self.progress.step,
                "modes": self.cfg.modes, "loss": self.loss_name,
                "builder": ckpt_io.builder_name(self.build_fn), "versions": dict(ckpt_io.versions())}
        meta.update(self.extra_meta)
        meta.update(more)
        return meta

    def _rng_state(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return state

    @staticmethod
    def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(_to_tuple(state["python"]))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
        if state.get("cuda") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], device)

    def _save_last(self) -> None:
        """Write ``last.pt`` (rank 0) with every rank's RNG state and epoch totals.

        Under DDP every rank must be given the same ``run_dir`` (the RNG gather is collective).
        """
        if self.run_dir is None:
            return
        self._check_state_finite("last.pt")
        local = {"rng": self._rng_state(), "totals": self.totals.state()}
        ranks = dist_utils.all_gather_object(local, self.ctx)
        self.saved_last_step = self.progress.step
        if not self.ctx.is_main:
            return
        p = self.progress
        train_state = {
            "epoch": p.epoch, "pos": p.pos, "step": p.step, "seconds": p.seconds,
            "best_score": p.best_score, "best_epoch": p.best_epoch, "history": p.history,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "loss": {k: v.detach().cpu() for k, v in self.loss_fn.state_dict().items()},
            "ranks": ranks, "world_size": self.ctx.world_size,
            "hparams": self._hparams(),
        }
        ckpt = ckpt_io.make_checkpoint(self.model, self.cfg, self._meta(), train_state)
        ckpt_io.atomic_save(ckpt, self.run_dir / "last.pt")

    def _hparams(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "warmup_frac": self.warmup_frac,
                "grad_clip": self.grad_clip, "seed": self.seed, "loss": self.loss_name,
                "augment": repr(self.augment) if self.augment is not None else None,
                "world_size": self.ctx.world_size}

    # hyperparameters an exact resume needs unchanged (everything in _hparams)
    RESUME_FIXED = ("epochs", "batch_size", "lr", "weight_decay", "warmup_frac", "grad_clip", "seed", "loss",
                    "augment", "world_size")

    def _load_resume(self) -> None:
        path = self.resume / "last.pt" if self.resume.is_dir() else self.resume
        ckpt = ckpt_io.read_checkpoint(path)
        state = ckpt.get("train_state")
        if not isinstance(state, dict):
            raise ckpt_io.CheckpointError(f"resume={str(path)!r} holds no training state (is it a best.pt?)")
        saved, mine = state.get("hparams", {}), self._hparams()
        for key in self.RESUME_FIXED:
            if key in saved and saved[key] != mine[key]:
                raise ValueError(f"resume: {key}={mine[key]!r} differs from the run's {key}={saved[key]!r} "
                                 f"(in {str(path)!r}); an exact resume needs the same value: pass "
                                 f"{key}={saved[key]!r}, or start a new run")
        cfg = ckpt_io.config_of(ckpt, path)
        try:
            if cfg != self.cfg:
                self.cfg = cfg
                self._install_model(self.build_fn(cfg).to(self.device))
                self.optimizer = self._make_optimizer()
                self.scheduler.attach(self.optimizer)
            self.model.load_state_dict(ckpt["model"], strict=True)
            self.loss_fn.load_state_dict(state["loss"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            progress = _Progress(epoch=int(state["epoch"]), pos=int(state["pos"]), step=int(state["step"]),
                                 seconds=float(state["seconds"]), best_score=float(state["best_score"]),
                                 best_epoch=int(state["best_epoch"]), history=list(state["history"]))
            local = state["ranks"][self.ctx.rank]
            self.totals.load(local["totals"])
            self._set_rng_state(local["rng"], self.device)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise ckpt_io.CheckpointError(f"resume: the training state in {str(path)!r} is damaged or does not "
                                          f"fit this model ({type(exc).__name__}: {first})") from exc
        self.progress = progress
        self.saved_last_step = progress.step

    def _save_best(self, val: dict[str, Any]) -> None:
        self._check_state_finite("best.pt")
        self._best = (self.cfg, {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()})
        if self.ctx.is_main and self.run_dir is not None:
            meta = self._meta(**{f"val_{k}": v for k, v in val.items()})
            ckpt_io.atomic_save(ckpt_io.make_checkpoint(self.model, self.cfg, meta), self.run_dir / "best.pt")

    def _best_model(self) -> tuple[nn.Module, HSTConfig]:
        best = self._best
        if best is None and self.run_dir is not None and (self.run_dir / "best.pt").exists():
            ckpt = ckpt_io.read_checkpoint(self.run_dir / "best.pt")
            best = (ckpt_io.config_of(ckpt, self.run_dir / "best.pt"), ckpt["model"])
        if best is None:
            return self.model, self.cfg
        cfg, state = best
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # building must not disturb the RNG
            model = self.build_fn(cfg).to(self.device)
        model.load_state_dict(state, strict=True)
        return model, cfg

    # ------------------------------------------------------------------ evaluation
    def _calibration_batches(self) -> list[list[int]]:
        """This rank's BatchNorm calibration batches: a fixed, seeded shuffle of the training split.

        Never the split in stored order: datasets are often sorted by class, and class-pure
        batches give per-batch variances without the between-class spread (and only the first
        classes), which silenced or saturated eval-mode spiking layers.
        """
        generator = torch.Generator().manual_seed(self.seed + EVAL_SEED_OFFSET)
        order = torch.randperm(len(self.train_data), generator=generator).tolist()
        indices = order[self.ctx.rank::self.ctx.world_size]
        wanted = self.bn_recalibration_batches * self.batch_size
        return _chunks(indices[:wanted], self.batch_size)

    @torch.no_grad()
    def recalibrate_batchnorm(self, model: nn.Module | None = None) -> int:
        """Re-estimate every BatchNorm's running mean/var on fixed training batches; returns batches used.

        Like ``torch.optim.swa_utils.update_bn``: running stats are reset and accumulated as an
        exact average (momentum ``1/i`` on the i-th batch) over ``bn_recalibration_batches``
        batches of a fixed shuffle of the training split (see ``_calibration_batches``) in
        training mode, so eval-mode normalization matches the current weights. Runs under a
        forked, seeded RNG (training randomness and exact resume are untouched); momenta and the
        training flag are restored. Under DDP the caller broadcasts rank 0's buffers
        (``sync_buffers``).
        """
        if self.bn_recalibration_batches == 0:
            return 0
        batches = self._calibration_batches()

        def inputs() -> Iterable[Tensor]:  # lazy: runs inside calibrate_batchnorm's forked RNG
            for x, y in self._loader(self.train_data, batches):
                yield self.loss_fn.prepare(self._to_device(x), self._to_device(y))[0]

        devices = [self.device] if self.device.type == "cuda" else []
        return calibrate_batchnorm(model or self.model, inputs(), seed=self.seed + EVAL_SEED_OFFSET,
                                   devices=devices)

    @torch.no_grad()
    def evaluate(self, data: Dataset, model: nn.Module | None = None, max_batches: int | None = None) -> dict[str, Any]:
        """Loss, score (``accuracy`` or ``bits_per_spike``) and firing rate on ``data``.

        Deterministic: runs under a forked RNG seeded from ``seed`` (so masking is the same
        every time and training randomness is untouched); under DDP each rank scores a
        strided shard and the sums are all-reduced.
        """
        model = model or self.model
        was_training = model.training
        model.eval()
        meter = SpikeRateMeter(model) if model is not self.model else self.meter
        meter.reset()
        devices = [self.device] if self.device.type == "cuda" else []
        indices = list(range(self.ctx.rank, len(data), self.ctx.world_size))
        batches = _chunks(indices, self.eval_batch_size)
        batches = batches[:max_batches] if max_batches else batches
        loss_sum = torch.zeros((), dtype=torch.float64)
        count = torch.zeros((), dtype=torch.float64)
        stats: dict[str, Tensor] = {}
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed + EVAL_SEED_OFFSET)
                for x, y in self._loader(data, batches):
                    x, y = self._to_device(x), self._to_device(y)
                    if hasattr(model, "reset_state"):
                        model.reset_state()
                    inputs, targets = self.loss_fn.prepare(x, y)
                    out = model(inputs)
                    n = x.shape[1]
                    loss_sum += float(self.loss_fn(out, targets)) * n
                    count += n
                    for k, v in self.loss_fn.stats(out, targets).items():
                        v = v.detach().to("cpu", torch.float64)
                        stats[k] = stats[k] + v if k in stats else v
        finally:
            model.train(was_training)
        spikes, neurons = meter.totals()
        if meter is not self.meter:
            meter.close()
        packed = torch.cat([loss_sum.view(1), count.view(1), torch.tensor([spikes, float(neurons)], dtype=torch.float64)]
                           + [stats[k].reshape(-1) for k in sorted(stats)])
        packed = dist_utils.all_reduce_sum(packed.to(self.device), self.ctx).cpu()
        offset = 4
        for k in sorted(stats):
            size = stats[k].numel()
            stats[k] = packed[offset:offset + size].reshape(stats[k].shape)
            offset += size
        out = {"loss": float(packed[0] / packed[1].clamp_min(1)),
               "firing_rate": float(packed[2] / packed[3]) if packed[3] > 0 else None}
        out.update(self.loss_fn.score(stats))
        return out

    def _energy(self, model: nn.Module) -> float | None:
        if not self.measure_energy:
            return None
        x, y = self.collate_fn([self.val_data[i] for i in spread_indices(len(self.val_data), self.eval_batch_size)])
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # masking must not disturb training randomness
            torch.manual_seed(self.seed + EVAL_SEED_OFFSET)
            inputs, _ = self.loss_fn.prepare(self._to_device(x), self._to_device(y))
            return energy_per_sample(model, inputs, self.energy_preset)

    # ------------------------------------------------------------------ training
    def _train_step(self, x: Tensor, y: Any) -> tuple[float, dict[str, Tensor]]:
        self.model.train()
        self._reset()
        if self.augment is not None:
            x = self.augment(x)
        inputs, targets = self.loss_fn.prepare(x, y)
        lr = self.scheduler.apply()
        out = self.ddp_model(inputs)
        loss = self.loss_fn(out, targets)
        if self.regulariser is not None:  # hstlab.train.regularisers: weight · penalty of this forward
            loss = loss + self.regulariser.penalty().to(loss.device)
        self._check_finite(loss, "loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            self._check_finite(norm, "gradient norm")
        self.optimizer.step()
        self.scheduler.step()
        self._last_lr = lr
        return float(loss.detach()), self.loss_fn.stats(out.detach(), targets)

    def _check_finite(self, value: Tensor, what: str) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(value.detach()).all() else 1.0], device=self.device)
        bad = dist_utils.all_reduce_sum(bad, self.ctx)
        if bad.item() > 0:
            raise TrainingDiverged(
                f"{what} is {float(value.detach().float().sum())} at step {self.progress.step + 1} "
                f"(epoch {self.progress.epoch}); training stopped ({self._kept()}). "
                "Try a lower lr, a larger warm-up, or grad_clip.")

    def _check_state_finite(self, target: str) -> None:
        """Refuse to save a model whose parameters or buffers (e.g. BatchNorm running_var) hold NaN/inf."""
        bad_names = ckpt_io.nonfinite_tensors(self.model.state_dict())
        bad = dist_utils.all_reduce_sum(torch.tensor([float(len(bad_names))], device=self.device), self.ctx)
        if bad.item() > 0:
            names = ", ".join(bad_names[:3]) + (f" and {len(bad_names) - 3} more" if len(bad_names) > 3 else "")
            raise TrainingDiverged(
                f"the model's parameters/buffers hold NaN or inf ({names or 'on another rank'}) after step "
                f"{self.progress.step} (epoch {self.progress.epoch}); {target} was not written and training "
                f"stopped ({self._kept()}). Try a lower lr, a larger warm-up, or grad_clip.")

    def _kept(self) -> str:
        """What the run directory truthfully holds after a divergence."""
        if self.run_dir is None:
            return "no run dir: nothing was saved"
        if self.saved_last_step is None:
            return f"no last.pt of this run was written before it diverged in {str(self.run_dir)!r}"
        best = (f"; best.pt holds epoch {self.progress.best_epoch}"
                if self.progress.best_epoch >= 0 and (self.run_dir / "best.pt").is_file() else "")
        return (f"{str(self.run_dir / 'last.pt')!r} keeps step {self.saved_last_step}, the last finite state{best}")

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask a running :meth:`fit` (e.g. in another thread) to stop after the current step.

        The epoch is closed as usual: validation, ``last.pt``/``best.pt`` and the test score.
        """
        self._stop_request = reason

    def _should_stop(self, t0: float) -> str | None:
        request = getattr(self, "_stop_request", None)
        out_of_time = self.max_seconds is not None and time.perf_counter() - t0 >= self.max_seconds
        flag = torch.tensor([1.0 if request or out_of_time else 0.0], device=self.device)
        if dist_utils.all_reduce_sum(flag, self.ctx).item() == 0:
            return None
        return request or f"max_seconds={self.max_seconds} reached"

    def fit(self) -> dict[str, Any]:
        """Train, select on validation, evaluate the best model on test once; returns ``metrics``."""
        if self.resume is not None:
            self._load_resume()
        else:
            torch.manual_seed(self.seed + self.ctx.rank)
            random.seed(self.seed + self.ctx.rank)
            np.random.seed(self.seed + self.ctx.rank)
            warm_up_thresholds(self)  # threshold balancing (hstlab.neurons.balance); no-op when off
        if self.ctx.is_main and self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.removed_temp_files = ckpt_io.remove_temp_files(self.run_dir)  # debris of a killed write
            if self.resume is None or not (self.run_dir / "config.json").is_file():
                ckpt_io.write_json(self.run_dir / "config.json", self.cfg.to_dict())  # the run's starting config
        t0 = time.perf_counter() - self.progress.seconds
        self._last_lr = self.scheduler.current_lr()
        p = self.progress
        while p.epoch < self.epochs and self.stop_reason is None:
            if p.pos == 0:
                self._apply_mode_schedule(p.epoch)
            batches = self._epoch_batches(p.epoch)[p.pos:]
            for x, y in self._loader(self.train_data, batches, epoch=p.epoch):
                x, y = self._to_device(x), self._to_device(y)
                self.meter.reset()
                loss, stats = self._train_step(x, y)
                spikes, neurons = self.meter.totals()
                self.totals.add(loss, x.shape[1], stats, spikes, neurons)
                p.step += 1
                p.pos += 1
                p.seconds = time.perf_counter() - t0
                if self.checkpoint_every and p.step % self.checkpoint_every == 0 and p.pos < self.batches_per_epoch:
                    self._save_last()
                score = self.loss_fn.score({k: v.detach().cpu().to(torch.float64) for k, v in stats.items()})
                self._emit(TrainEvent(kind="step", step=p.step, epoch=p.epoch, loss=loss,
                                      accuracy=score.get("accuracy"), bits_per_spike=score.get("bits_per_spike"),
                                      firing_rate=self.meter.rate(), seconds=p.seconds, lr=self._last_lr,
                                      modes=self.cfg.modes))
                reason = self._should_stop(t0)
                if reason is not None:
                    self.stop_reason = reason
                    break
            self._end_epoch(t0)
        return self._finish(t0)

    def _end_epoch(self, t0: float) -> None:
        p = self.progress
        self.recalibrate_batchnorm()
        dist_utils.sync_buffers(self.model, self.ctx)
        packed = torch.tensor([self.totals.loss_sum, self.totals.samples, self.totals.spikes, self.totals.neurons],
                              dtype=torch.float64)
        keys = sorted(self.totals.stats)
        packed = torch.cat([packed] + [self.totals.stats[k].reshape(-1) for k in keys])
        packed = dist_utils.all_reduce_sum(packed.to(self.device), self.ctx).cpu()
        stats, offset = {}, 4
        for k in keys:
            size = self.totals.stats[k].numel()
            stats[k] = packed[offset:offset + size].reshape(self.totals.stats[k].shape)
            offset += size
        train_score = self.loss_fn.score(stats) if stats else {}
        val = self.evaluate(self.val_data)
        energy = self._energy(self.model)
        finished = p.pos >= self.batches_per_epoch
        row = {"epoch": p.epoch, "step": p.step, "complete": finished,
               "train_loss": float(packed[0] / packed[1].clamp_min(1)),
               **{f"train_{k}": v for k, v in train_score.items()},
               "train_firing_rate": float(packed[2] / packed[3]) if packed[3] > 0 else None,
               **{f"val_{k}": v for k, v in val.items()},
               "energy_per_sample_j": energy, "lr": self._last_lr, "modes": self.cfg.modes,
               "seconds": time.perf_counter() - t0}
        p.history.append(row)
        score = val.get(self.loss_fn.score_name, float("nan"))
        if math.isfinite(score) and score > p.best_score:
            p.best_score, p.best_epoch = score, p.epoch
            self._save_best(val)
        if finished:
            p.epoch += 1
            p.pos = 0
            self.totals = _EpochTotals()
        p.seconds = time.perf_counter() - t0
        self._save_last()
        if self.ctx.is_main and self.run_dir is not None:
            ckpt_io.write_history_csv(self.run_dir / "history.csv", p.history)
        self._emit(TrainEvent(kind="epoch", step=p.step, epoch=row["epoch"], loss=row["train_loss"],
                              accuracy=row.get("train_accuracy"), bits_per_spike=row.get("train_bits_per_spike"),
                              firing_rate=row["train_firing_rate"], energy_per_sample_j=energy,
                              seconds=row["seconds"], lr=self._last_lr, modes=self.cfg.modes,
                              val_loss=val["loss"], val_accuracy=val.get("accuracy"),
                              val_bits_per_spike=val.get("bits_per_spike"), val_firing_rate=val["firing_rate"]))

    def _finish(self, t0: float) -> dict[str, Any]:
        train_seconds = time.perf_counter() - t0
        model, cfg = self._best_model()
        val = self.evaluate(self.val_data, model)
        test = self.evaluate(self.test_data, model) if self.test_data is not None else {}
        energy = self._energy(model)
        metrics: dict[str, Any] = {
            **{f"val_{k}": v for k, v in val.items()},
            **{f"test_{k}": v for k, v in test.items()},
            "train_seconds": train_seconds, "energy_per_sample_j": energy, "seed": self.seed,
            "best_epoch": self.progress.best_epoch, "epochs_completed": self.progress.epoch,
            "steps": self.progress.step, "modes": cfg.modes, "loss": self.loss_name,
            "world_size": self.ctx.world_size, "stop_reason": self.stop_reason,
            "versions": dict(ckpt_io.versions()), **self.extra_meta,
        }
        metrics.setdefault("test_accuracy", None)
        metrics.setdefault("val_accuracy", None)
        self.metrics = metrics
        self.best_model = model
        if self.ctx.is_main and self.run_dir is not None:
            ckpt_io.write_json(self.run_dir / "metrics.json", metrics)
        self._emit(TrainEvent(kind="fit_end", step=self.progress.step, epoch=self.progress.best_epoch,
                              loss=val["loss"], accuracy=val.get("accuracy"), firing_rate=val["firing_rate"],
                              energy_per_sample_j=energy, seconds=train_seconds, modes=cfg.modes,
                              val_loss=val["loss"], val_accuracy=val.get("accuracy"),
                              val_bits_per_spike=val.get("bits_per_spike"), val_firing_rate=val["firing_rate"],
                              test_loss=test.get("loss"), test_accuracy=test.get("accuracy"),
                              test_bits_per_spike=test.get("bits_per_spike")))
        return metrics

    def _emit(self, event: TrainEvent) -> None:
        if self.ctx.is_main:
            dispatch(self.callbacks, event)


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    """Consecutive batches of ``size`` indices (the last may be shorter)."""
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def _to_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value
