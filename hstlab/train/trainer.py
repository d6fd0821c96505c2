"""The training loop: AdamW + warm-up/cosine, clipping, mode schedules, checkpoints, resume, DDP/FSDP.

The :class:`Trainer` composes small parts, each with one job: batch order and loading
(:mod:`~hstlab.train.batching`), evaluation (:mod:`~hstlab.train.evaluation`), BatchNorm
calibration (:mod:`~hstlab.train.bn_calibration`), checkpoints (:mod:`~hstlab.train.snapshots`),
resume (:mod:`~hstlab.train.resume`) and the optimizer (:mod:`~hstlab.train.optim`); the fit
loop itself lives here. The trainer draws nothing: it reports :class:`TrainEvent` objects to
callbacks.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from hstlab.config import HSTConfig
from hstlab.runtime import keep_freed_memory
from hstlab.train import checkpoint as ckpt_io
from hstlab.train import distributed as dist_utils
from hstlab.train import fsdp, snapshots
from hstlab.train import resume as resume_io
from hstlab.train.batching import Batches, default_collate
from hstlab.train.bn_calibration import BatchNormCalibration
from hstlab.train.checks import check_args
from hstlab.train.config import TrainConfig
from hstlab.train.evaluation import EVAL_SEED_OFFSET, Evaluator
from hstlab.train.events import TrainEvent, TrainingDiverged, dispatch, normalize_callbacks
from hstlab.train.fit_state import EpochTotals, Progress, reduce_sums
from hstlab.train.losses import build_loss
from hstlab.train.meters import SpikeRateMeter
from hstlab.train.optim import carry_moments, make_adamw
from hstlab.train.regularisers import SpikeRegulariser, build_regulariser
from hstlab.train.schedule import WarmupCosine
from hstlab.train.warmup import warm_up_thresholds

__all__ = ["DEFAULT_TRAIN_CONFIG", "EVAL_SEED_OFFSET", "Trainer", "default_collate"]

# a Trainer built without a TrainConfig trains one epoch with TrainConfig's optimiser defaults
DEFAULT_TRAIN_CONFIG = TrainConfig(epochs=1)


class Trainer:
    """Train an HST-Net (or any ``nn.Module`` with a ``cfg``) and report to callbacks.

    ``train_config`` (a :class:`~hstlab.train.config.TrainConfig`; default
    :data:`DEFAULT_TRAIN_CONFIG`) sets epochs, batch size, learning rate, warm-up, weight decay,
    gradient clipping and ``augment_shift`` (its data fields, ``limit``, ``time_bins`` and
    ``dataset_options``, are for whoever loads the data, e.g. :func:`~hstlab.train.run.train_run`).
    Single fields may also be passed as keywords (``epochs=2, lr=5e-3``): they replace those of
    ``train_config`` and are validated the same way.

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
    ``best.safetensors`` and ``last.safetensors`` (after each epoch and every ``checkpoint_every``
    steps, atomic; names from :func:`~hstlab.train.checkpoint.run_checkpoint`).
    ``resume=RUN_DIR`` continues from its last checkpoint to the same result as an
    uninterrupted run (optimizer, schedule, RNG states and data order restored).

    BatchNorm running statistics are re-estimated before each end-of-epoch evaluation from
    ``bn_recalibration_batches`` fixed training batches (:mod:`hstlab.train.bn_calibration`);
    0 turns it off.

    ``augment`` (e.g. :class:`hstlab.data.augment.RandomShift`; default: ``RandomShift`` of
    ``train_config.augment_shift`` when > 0) transforms each training batch before the forward
    pass; validation, test, calibration and energy batches are never augmented.

    Under ``torchrun`` the ranks train data-parallel: ``train_config.parallel="ddp"`` keeps a
    replica of the model on every rank, ``"fsdp"`` shards parameters, gradients and AdamW moments
    over the ranks (:mod:`hstlab.train.fsdp`); checkpoints are the same either way.

    :meth:`fit` makes glibc keep freed memory for reuse (:func:`hstlab.runtime.keep_freed_memory`,
    process-wide): the step's activations are not page-faulted in anew every step (12 % of an
    hst-small step's CPU time); results are unchanged.

    Callbacks: objects with any of ``on_step_end``, ``on_epoch_end``, ``on_fit_end``, or
    plain callables (receive every event). Under ``torchrun`` they run on rank 0 only.

    Example:
        >>> trainer = Trainer(model, cfg, train_ds, val_ds, test_ds,
        ...                   train_config=TrainConfig(epochs=2, lr=5e-3),
        ...                   callbacks=[lambda ev: print(ev.kind, ev.loss)])  # doctest: +SKIP
        >>> metrics = trainer.fit()  # doctest: +SKIP
        >>> metrics["val_accuracy"], metrics["test_accuracy"]  # doctest: +SKIP
    """

    RESUME_FIXED = resume_io.RESUME_FIXED

    def __init__(
        self,
        model: nn.Module,
        cfg: HSTConfig | None,
        train_data: Dataset,
        val_data: Dataset,
        test_data: Dataset | None = None,
        *,
        train_config: TrainConfig | None = None,
        eval_batch_size: int | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
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
        **train_fields: Any,
    ) -> None:
        if train_config is not None and not isinstance(train_config, TrainConfig):
            raise ValueError(f"train_config={train_config!r} must be a TrainConfig (hstlab.train.config)")  # noqa: TRY004
        tc = (train_config or DEFAULT_TRAIN_CONFIG).replace(**train_fields)  # the one conversion point
        check_args(eval_batch_size=eval_batch_size, seed=seed, checkpoint_every=checkpoint_every,
                   max_seconds=max_seconds, bn_recalibration_batches=bn_recalibration_batches)
        if augment is not None and not callable(augment):
            raise ValueError(f"augment={augment!r} must be a callable on training inputs (e.g. RandomShift(2)) or None")
        if augment is not None and tc.augment_shift:
            raise ValueError(f"augment={augment!r} and train_config.augment_shift={tc.augment_shift} both set the "
                             "augmentation: pass one")
        if len(train_data) == 0 or len(val_data) == 0:
            raise ValueError("train_data and val_data must not be empty")
        cfg = cfg if cfg is not None else getattr(model, "cfg", None)
        if not isinstance(cfg, HSTConfig):
            raise ValueError(f"cfg={cfg!r} must be an HSTConfig (or the model must carry one as .cfg)")  # noqa: TRY004
        if tc.augment_shift:
            from hstlab.data.augment import RandomShift

            augment = RandomShift(tc.augment_shift)
        self.ctx = dist_utils.current_context()
        self.device = (dist_utils.check_device(device, self.ctx) if device is not None
                       else dist_utils.default_device(self.ctx))
        self.cfg = cfg
        self.train_config = tc
        self.train_data, self.val_data, self.test_data = train_data, val_data, test_data
        self.eval_batch_size = eval_batch_size or tc.batch_size
        self.betas = betas
        self.loss_fn = build_loss(loss, **(loss_options or {})).to(self.device)
        self.loss_name = loss if isinstance(loss, str) else type(loss).__name__
        self.callbacks = normalize_callbacks(callbacks)
        self.resume = Path(resume) if resume is not None else None
        if run_dir is None and self.resume is not None:
            run_dir = self.resume if self.resume.is_dir() else self.resume.parent
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.seed = seed
        self.max_seconds = max_seconds
        self.build_fn = build_fn or ckpt_io.resolve_builder(None)
        self.find_unused_parameters = find_unused_parameters
        self.extra_meta = dict(extra_meta or {})
        self.augment = augment
        self.batches = Batches(seed, tc.batch_size, self.ctx, self.device, collate_fn or default_collate, num_workers)
        self.evaluator = Evaluator(self.batches, self.loss_fn, self.eval_batch_size,
                                   measure_energy=measure_energy, energy_preset=energy_preset)
        self.bn_calibration = BatchNormCalibration(bn_recalibration_batches, tc.batch_size, seed)
        self.best = snapshots.BestModel()
        self.progress = Progress()
        self.totals = EpochTotals()
        self.stop_reason: str | None = None
        self.saved_last_step: int | None = None  # step of the last checkpoint on disk (written or resumed here)
        self.removed_temp_files: list[str] = []
        self.meter: SpikeRateMeter | None = None
        if regulariser is None:  # the training config's regulariser, unless one is passed here
            regulariser, regulariser_options = tc.regulariser, {"weight": tc.regulariser_weight,
                                                                "target": tc.regulariser_target}
        self.regulariser = build_regulariser(regulariser, **(regulariser_options or {}))  # spike penalty
        self._install_model(model.to(self.device))
        self.optimizer = self._make_optimizer()
        self.scheduler = WarmupCosine(self.optimizer, tc.lr, self.total_steps, tc.warmup_frac)

    # ------------------------------------------------------------------ the training config, read-only
    epochs = property(lambda self: self.train_config.epochs)
    batch_size = property(lambda self: self.train_config.batch_size)
    lr = property(lambda self: self.train_config.lr)
    weight_decay = property(lambda self: self.train_config.weight_decay)
    warmup_frac = property(lambda self: self.train_config.warmup_frac)
    grad_clip = property(lambda self: self.train_config.grad_clip)
    parallel = property(lambda self: self.train_config.parallel)
    collate_fn = property(lambda self: self.batches.collate_fn)
    bn_recalibration_batches = property(lambda self: self.bn_calibration.batches)

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
        self.ddp_model = dist_utils.wrap_model(model, self.ctx, self.find_unused_parameters, self.parallel)
        if self.meter is not None:
            self.meter.close()
        self.meter = SpikeRateMeter(model)
        if getattr(self, "regulariser", None) is not None:
            self.regulariser.attach(model)

    def install(self, cfg: HSTConfig, model: nn.Module) -> None:
        """Swap in ``model`` (built from ``cfg``) with a fresh optimizer attached to the schedule."""
        self.cfg = cfg
        self._install_model(model)
        self.optimizer = self._make_optimizer()
        self.scheduler.attach(self.optimizer)

    def _named_params(self) -> list[tuple[str, nn.Parameter]]:
        named = [(f"model.{n}", p) for n, p in self.model.named_parameters() if p.requires_grad]
        named += [(f"loss.{n}", p) for n, p in self.loss_fn.named_parameters() if p.requires_grad]
        return named

    def _make_optimizer(self) -> torch.optim.AdamW:
        return make_adamw(self._named_params(), self.lr, self.betas, self.weight_decay)

    def _reset(self) -> None:
        if hasattr(self.model, "reset_state"):
            self.model.reset_state()

    # ------------------------------------------------------------------ data (see batching.py)
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        return self.batches.epoch(self.train_data, epoch)

    def _loader(self, dataset: Dataset, batches: list[list[int]], epoch: int = 0) -> Iterable[tuple[Tensor, Any]]:
        return self.batches.loader(dataset, batches, epoch)

    def _to_device(self, value: Any) -> Any:
        return self.batches.to_device(value)

    # ------------------------------------------------------------------ mode schedule
    def _apply_mode_schedule(self, epoch: int) -> bool:
        """Rebuild the model if the schedule asks for other modes at ``epoch``; True if rebuilt."""
        letters = self.cfg.modes_at_epoch(epoch)
        if letters is None or letters == self.cfg.modes:
            return False
        new_cfg = self.cfg.with_modes(letters)
        new_model = self.build_fn(new_cfg).to(self.device)
        new_model.train(self.model.training)
        target = new_model.state_dict()
        carried = {k: v for k, v in fsdp.full_state(self.model).items() if k in target and target[k].shape == v.shape}
        new_model.load_state_dict(carried, strict=False)
        old_named, old_opt = dict(self._named_params()), self.optimizer
        self.install(new_cfg, new_model)
        carry_moments(old_opt, old_named, self.optimizer, self._named_params())
        return True

    # ------------------------------------------------------------------ evaluation and calibration
    def _calibration_batches(self) -> list[list[int]]:
        """This rank's BatchNorm calibration batches (:meth:`BatchNormCalibration.indices`)."""
        return self.bn_calibration.indices(len(self.train_data), self.ctx)

    def recalibrate_batchnorm(self, model: nn.Module | None = None) -> int:
        """Re-estimate every BatchNorm's running mean/var on fixed training batches; returns batches used.

        See :class:`~hstlab.train.bn_calibration.BatchNormCalibration`. Under DDP the caller
        broadcasts rank 0's buffers (``sync_buffers``).
        """
        model = model or self.model
        with fsdp.gathered(model):  # FSDP: every rank runs its own batches on whole parameters
            return self.bn_calibration.run(model, self.train_data, self.batches, self.loss_fn)

    def evaluate(self, data: Dataset, model: nn.Module | None = None, max_batches: int | None = None) -> dict[str, Any]:
        """Loss, score (``accuracy`` or ``bits_per_spike``) and firing rate on ``data``.

        Deterministic (forked RNG seeded from ``seed``); see :class:`~hstlab.train.evaluation.Evaluator`.
        """
        model = model or self.model
        meter = self.meter if model is self.model else None
        with fsdp.gathered(model):  # FSDP: ranks' shards of ``data`` may differ in batch count
            return self.evaluator.evaluate(model, data, meter, max_batches)

    def _energy(self, model: nn.Module) -> float | None:
        with fsdp.gathered(model):
            return self.evaluator.energy(model, self.val_data)

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
            norm = fsdp.full_tensor(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))  # FSDP: a DTensor
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

    def _kept(self) -> str:
        return snapshots.kept(self)

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask a running :meth:`fit` (e.g. in another thread) to stop after the current step.

        The epoch is closed as usual: validation, the last and best checkpoints and the test score.
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
        keep_freed_memory()  # reuse freed activations instead of page-faulting them in every step
        if self.resume is not None:
            resume_io.restore(self, self.resume)
        else:
            torch.manual_seed(self.seed + self.ctx.rank)
            random.seed(self.seed + self.ctx.rank)
            np.random.seed(self.seed + self.ctx.rank)
            with fsdp.gathered(self.model):
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
                    snapshots.save_last(self)
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
        t = self.totals
        train_loss, train_rate, stats = reduce_sums(t.loss_sum, float(t.samples), t.spikes, float(t.neurons),
                                                    t.stats, self.ctx, self.device)
        train_score = self.loss_fn.score(stats) if stats else {}
        val = self.evaluate(self.val_data)
        energy = self._energy(self.model)
        finished = p.pos >= self.batches_per_epoch
        row = {"epoch": p.epoch, "step": p.step, "complete": finished,
               "train_loss": train_loss,
               **{f"train_{k}": v for k, v in train_score.items()},
               "train_firing_rate": train_rate,
               **{f"val_{k}": v for k, v in val.items()},
               "energy_per_sample_j": energy, "lr": self._last_lr, "modes": self.cfg.modes,
               "seconds": time.perf_counter() - t0}
        p.history.append(row)
        score = val.get(self.loss_fn.score_name, float("nan"))
        if math.isfinite(score) and score > p.best_score:
            p.best_score, p.best_epoch = score, p.epoch
            self.best.save(self, val)
        if finished:
            p.epoch += 1
            p.pos = 0
            self.totals = EpochTotals()
        p.seconds = time.perf_counter() - t0
        snapshots.save_last(self)
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
        model, cfg = self.best.model(self)
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
