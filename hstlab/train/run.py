"""One call from a preset and a dataset name to a finished run directory (used by ``hstlab train``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from hstlab.config import HSTConfig
from hstlab.registry import Registry
from hstlab.runtime import smoke_mode
from hstlab.train import checkpoint as ckpt_io
from hstlab.train import distributed as dist_utils
from hstlab.train.checks import RULES, RUN_DEFAULTS, check_arg, check_args
from hstlab.train.config import TrainConfig
from hstlab.train.losses import LOSSES
from hstlab.train.recipes import recipe_for
from hstlab.train.trainer import Trainer

# which objective a dataset kind trains with by default
TASK_LOSSES: Registry[str] = Registry("dataset kind")
for _kind, _loss in (("events-vision", "cross_entropy"), ("events-audio", "cross_entropy"),
                     ("spikes", "poisson_nll"), ("text", "cross_entropy")):
    TASK_LOSSES.register(_kind)(_loss)

COUNT_LOSSES = ("poisson_nll", "negative_binomial_nll", "masked_modelling")
SMOKE_LIMIT = 32
RUN_ARGS = ("dataset", *RUN_DEFAULTS)
TRAIN_FIELDS = tuple(TrainConfig.defaults())  # the run arguments that make up a TrainConfig


class _Unset:
    """Marks an argument the caller did not pass (so a resume can tell "not given" from a value)."""

    def __repr__(self) -> str:
        return "<default>"


UNSET: Any = _Unset()


def _given_arguments(train_config: TrainConfig | None, keywords: dict[str, Any]) -> dict[str, Any]:
    """The run arguments a caller chose: every field of ``train_config``, then each keyword passed.

    The one place where ``train_run``'s keyword arguments and a ``TrainConfig`` meet.

    Example:
        >>> _given_arguments(TrainConfig(epochs=2), {"lr": 0.01, "seed": UNSET})["epochs"]
        2
    """
    if train_config is not None and not isinstance(train_config, TrainConfig):
        raise ValueError(f"train_config={train_config!r} must be a TrainConfig (hstlab.train.config)")  # noqa: TRY004
    given = train_config.to_dict() if train_config is not None else {}
    passed = {k: v for k, v in keywords.items() if v is not UNSET}
    if isinstance(passed.get("dataset_options"), dict) and given:  # passed options add to the config's
        passed["dataset_options"] = {**given["dataset_options"], **passed["dataset_options"]}
    return {**given, **passed}


def fit_config_to_data(cfg: HSTConfig, x: torch.Tensor, y: Any, kind: str, num_classes: int | None,
                       loss: str | None = None) -> tuple[HSTConfig, list[str]]:
    """Set the data-dependent fields of ``cfg`` from one sample ``(x [T, ...], y)``.

    Frames keep the preset's tokenizer and take ``input_shape`` and ``num_classes`` from the data.
    Sequences (spike counts, text) need ``tokenizer="linear"``, ``head="sequence"``,
    ``seq_len = L``, and causal attention for next-bin targets (not for masked modelling, which
    sees both sides of a hidden bin). Returns the new config and one note per changed field.
    """
    changes: dict[str, Any] = {}
    if kind in ("spikes", "text"):
        changes.update(tokenizer="linear", head="sequence", seq_len=int(x.shape[0]),
                       input_shape=(int(x.shape[1]),) if x.dim() == 2 else (1,),
                       causal=loss != "masked_modelling")
        changes["num_classes"] = int(y.shape[-1]) if kind == "spikes" else int(num_classes or x.shape[-1])
    else:
        changes["input_shape"] = tuple(int(s) for s in x.shape[1:])
        if num_classes is not None:
            changes["num_classes"] = int(num_classes)
        head = getattr(LOSSES.get(loss), "head", None) if loss in LOSSES else None
        if head is not None and cfg.head == "classify":  # e.g. TET trains on per-step logits
            changes["head"] = head
    notes = [f"{k}: {getattr(cfg, k)!r} -> {v!r} (from the data)" for k, v in changes.items() if getattr(cfg, k) != v]
    return dataclasses.replace(cfg, **changes), notes


def init_rate_bias(model: torch.nn.Module, dataset: Any, max_samples: int = 256) -> str | None:
    """Set the output bias of a count model to log(mean count per neuron) of the training targets.

    The usual Poisson-GLM intercept start: the untrained model then predicts each neuron's mean
    rate (0 bits per spike) instead of exp(0) = 1 spike per bin. Needs ``model.head``, an
    ``nn.Linear`` with one output per neuron; returns a note, or None when nothing was changed.
    """
    head = getattr(model, "head", None)
    n = min(len(dataset), max_samples)
    counts = torch.stack([torch.as_tensor(dataset[i][1], dtype=torch.float32) for i in range(n)])  # [n, L, C]
    if not isinstance(head, torch.nn.Linear) or head.bias is None or head.out_features != counts.shape[-1]:
        return None
    mean = counts.mean(dim=(0, 1)).clamp_min(1e-3)  # [C]
    with torch.no_grad():
        head.bias.copy_(mean.log())
    return f"head.bias <- log mean count per neuron over {n} training samples (Poisson intercept start)"


def _num_classes(info: dict[str, Any]) -> int | None:
    classes = info.get("classes")
    if isinstance(classes, (list, tuple)):
        return len(classes)
    if "vocab_size" in info:
        return int(info["vocab_size"])
    if isinstance(classes, str) and classes.split()[0].isdigit():
        return int(classes.split()[0])
    return None


def resolve_time_bins(kind: str, cfg: HSTConfig, time_bins: int | None) -> int | None:
    """The bins per sample a run loads: ``time_bins`` if given, else one per model step for frames
    (``cfg.input_steps``) and the dataset's own default (None) for sequences."""
    if time_bins is None and kind not in ("spikes", "text"):
        return cfg.input_steps
    return time_bins


def load_splits(dataset: str, cfg: HSTConfig, limit: int | None, options: dict[str, Any],
                time_bins: int | None = None) -> tuple[Any, Any, Any, dict]:
    """Train/val/test datasets; ``time_bins`` defaults to ``cfg.input_steps`` for frames and to the
    dataset's own default for sequence data (whose length becomes ``cfg.seq_len``)."""
    from hstlab.data import dataset_info, load_dataset

    info = dataset_info(dataset)
    kw = dict(options)
    if limit is not None:
        kw["limit"] = limit
    time_bins = resolve_time_bins(info["kind"], cfg, time_bins)
    parts = [load_dataset(dataset, split, time_bins=time_bins, **kw) for split in ("train", "val", "test")]
    return (*parts, info)


def train_run(
    cfg: HSTConfig | str | None = None,
    dataset_name: str | None = None,
    *,
    train_config: TrainConfig | None = None,
    epochs: int = UNSET,
    modes: str | None = None,
    mode_schedule: tuple[tuple[int, str], ...] | None = None,
    seed: int = UNSET,
    out: str | os.PathLike = "runs",
    run_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    batch_size: int = UNSET,
    lr: float = UNSET,
    max_seconds: float | None = None,
    limit: int | None = UNSET,
    time_bins: int | None = UNSET,
    loss: str | None = UNSET,
    loss_options: dict[str, Any] | None = UNSET,
    checkpoint_every: int = UNSET,
    dataset_options: dict[str, Any] | None = UNSET,
    callbacks: Any = None,
    progress: bool = False,
    augment_shift: int = UNSET,
    warmup_frac: float = UNSET,
    weight_decay: float = UNSET,
    grad_clip: float | None = UNSET,
    force: bool = False,
    regulariser: str = UNSET,
    regulariser_weight: float = UNSET,
    regulariser_target: float = UNSET,
    parallel: str = UNSET,
    **trainer_options: Any,
) -> dict[str, Any]:
    """Train ``cfg`` (an HSTConfig or preset name) on a built-in dataset; returns ``metrics``.

    ``train_config`` (a :class:`~hstlab.train.config.TrainConfig`) replaces the recipe of the
    preset on the dataset (:func:`~hstlab.train.recipes.recipe_for`) as the training settings;
    keyword arguments of its fields (``epochs``, ``lr``, ...) override single fields of either.
    ``run.json`` records the recipe and the fields that differ from it.

    Writes the run directory (``out/<preset>-<dataset>-s<seed>-<time>`` unless ``run_dir``),
    with ``run.json`` holding the run arguments (defaults: :data:`RUN_DEFAULTS`) so
    ``resume=RUN_DIR`` needs nothing else. Every argument, the data and the model are checked
    before anything is written. A ``run_dir`` that already holds a run is refused
    (:class:`~hstlab.train.checkpoint.RunDirExists`) unless ``force=True``, which deletes its run
    files first. A resume refuses any run argument, config or dataset that differs from the
    run's, and a run directory whose files disagree (:mod:`hstlab.train.resume`).
    ``augment_shift`` > 0 moves each training sample of a frame dataset by up to that many
    pixels (:class:`hstlab.data.augment.RandomShift`). ``regulariser`` ("firing_rate" or "hoyer",
    :mod:`hstlab.train.regularisers`) adds ``regulariser_weight`` times its penalty to the loss. Runs data-parallel when started by
    ``torchrun`` (``parallel="fsdp"`` shards the model, :mod:`hstlab.train.fsdp`). ``HSTLAB_SMOKE=1`` caps ``limit`` at 32 samples per split and ``epochs`` at 1.

    Example:
        >>> metrics = train_run("tiny", "digits-dvs", epochs=1, limit=64)  # doctest: +SKIP
        >>> sorted(metrics)[:3]  # doctest: +SKIP
    """
    from hstlab.model import build_model
    from hstlab.train.resume import load_resume

    given = _given_arguments(train_config, {
        "epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr, "limit": limit, "time_bins": time_bins,
        "loss": loss, "loss_options": loss_options, "checkpoint_every": checkpoint_every,
        "dataset_options": dataset_options, "augment_shift": augment_shift, "warmup_frac": warmup_frac,
        "weight_decay": weight_decay, "grad_clip": grad_clip, "regulariser": regulariser,
        "regulariser_weight": regulariser_weight, "regulariser_target": regulariser_target,
        "parallel": parallel})
    check_arg("max_seconds", max_seconds)
    ctx = dist_utils.init_from_env()
    if resume is not None:
        run_dir, cfg, stored = load_resume(resume, given, cfg, dataset_name, modes, mode_schedule, run_dir)
        resume = run_dir
        args = {k: stored.get(k, default) for k, default in RUN_DEFAULTS.items()} | {"dataset": stored["dataset"]}
    else:
        if dataset_name is None:
            raise ValueError("dataset_name=None: name a dataset (see hstlab.list_datasets())")
        if isinstance(cfg, str) or cfg is None:
            cfg = HSTConfig.from_preset(cfg or "hst-small")
        recipe = recipe_for(cfg.name, dataset_name)  # flags and arguments override single fields
        base = recipe.train.to_dict()
        args = {**RUN_DEFAULTS, **base, **given, "dataset": dataset_name}
        if train_config is None and isinstance(given.get("dataset_options"), dict):  # they add to the recipe's
            args["dataset_options"] = {**recipe.train.dataset_options, **given["dataset_options"]}
        args["recipe"] = {"preset": recipe.preset, "dataset": recipe.dataset, "train": base,
                          "overridden": sorted(k for k in base if k in given and args[k] != base[k]),
                          "notice": recipe.notice if train_config is None else None}
        args["loss_options"] = args["loss_options"] or {}
        args["dataset_options"] = args["dataset_options"] or {}
        for key in ("loss_options", "dataset_options"):
            if not isinstance(args[key], dict):
                raise ValueError(f"{key}={args[key]!r} must be a dict (or None)")
        check_args(**{k: v for k, v in args.items() if k in RULES})
        if modes is not None:
            cfg = cfg.with_modes(modes)
        if mode_schedule is not None:
            cfg = dataclasses.replace(cfg, mode_schedule=tuple((int(e), str(m)) for e, m in mode_schedule))
        if smoke_mode():
            args["limit"] = min(args["limit"] or SMOKE_LIMIT, SMOKE_LIMIT)
            args["epochs"] = min(args["epochs"], 1)
        if run_dir is not None:
            ckpt_io.check_new_run_dir(run_dir, force)  # refuse early, before loading any data
    train, val, test, info = load_splits(args["dataset"], cfg, args["limit"], args["dataset_options"],
                                         args.get("time_bins"))
    shift = args.get("augment_shift", 0)
    if shift and info["kind"] != "events-vision":
        raise ValueError(f"augment_shift={shift!r} needs frames (an events-vision dataset); "
                         f"{args['dataset']!r} is {info['kind']!r}: use 0")
    notes: list[str] = [args["recipe"]["notice"]] if resume is None and args["recipe"].get("notice") else []
    if resume is None:
        x, y = train[0]
        args["loss"] = args["loss"] or TASK_LOSSES.get(info["kind"])
        cfg, fitted = fit_config_to_data(cfg, torch.as_tensor(x), y, info["kind"], _num_classes(info), args["loss"])
        notes += fitted  # after the recipe notice, which must reach the user too
        if run_dir is None:
            run_dir = dist_utils.broadcast_object(
                ckpt_io.default_run_dir(out, cfg.name, args["dataset"], args["seed"], claim=ctx.is_main), ctx)
    run_dir = Path(run_dir)
    replaced = ckpt_io.check_new_run_dir(run_dir, force) if resume is None else []
    torch.manual_seed(args["seed"])
    model = build_model(cfg)
    if resume is None and args["loss"] in COUNT_LOSSES:
        note = init_rate_bias(model, train)
        notes += [note] if note else []
    cbs = list(callbacks) if isinstance(callbacks, (list, tuple)) else ([callbacks] if callbacks else [])
    bar = None
    if progress and ctx.is_main:
        from hstlab.train.progress import TqdmProgress

        bar = TqdmProgress()
        cbs.append(bar)
    trainer = Trainer(  # checks every training argument; nothing is written before this succeeds
        model, cfg, train, val, test, train_config=TrainConfig.from_dict({k: args[k] for k in TRAIN_FIELDS}),
        loss=args["loss"], loss_options=args["loss_options"], seed=args["seed"], run_dir=run_dir,
        resume=resume, checkpoint_every=args["checkpoint_every"], max_seconds=max_seconds,
        callbacks=cbs, build_fn=ckpt_io.resolve_builder(ckpt_io.DEFAULT_BUILDER),
        extra_meta={"dataset": args["dataset"], "preset": cfg.name, "limit": args["limit"]}, **trainer_options,
    )
    extra_notes = []
    if ctx.is_main and resume is None:
        if replaced:
            removed = ckpt_io.clear_run_dir(run_dir)
            extra_notes.append(f"force: replaced the earlier run in {run_dir} (removed {', '.join(removed)})")
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt_io.write_json(run_dir / "run.json", {**args, "preset": cfg.name, "notes": notes})
    if bar is not None:
        bar.total = trainer.total_steps
    try:
        metrics = trainer.fit()
    finally:
        if bar is not None:
            bar.close()
    if trainer.removed_temp_files:
        extra_notes.append(f"removed temp files of an interrupted write: {', '.join(trainer.removed_temp_files)}")
    metrics["run_dir"] = str(run_dir)
    metrics["notes"] = notes + extra_notes
    return metrics
