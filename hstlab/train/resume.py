"""Resume, in one place: what the last checkpoint holds, how a trainer is restored from it, and
the checks that a run directory's ``run.json``, ``config.json`` and last checkpoint agree with each
other and with what the caller asks for (or the resume is refused with the field that differs).

A resume continues a run exactly as it was started (same schedule, same data, same model), so
nothing can be changed on the way: an edited ``config.json``, a ``--epochs`` that is not the
run's, or a ``run.json`` from another run would otherwise be ignored or silently mixed in.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hstlab.config import HSTConfig
from hstlab.train import checkpoint as ckpt_io
from hstlab.train import fsdp
from hstlab.train.checks import RULES, RUN_DEFAULTS, check_arg
from hstlab.train.fit_state import Progress

if TYPE_CHECKING:
    from hstlab.train.trainer import Trainer

RESUME_FILES = ("run.json", "config.json")  # and the last checkpoint (checkpoint.run_checkpoint)
# run.json fields the trainer also stores in the last checkpoint's train_state["hparams"]
HPARAM_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_frac", "grad_clip", "seed", "loss")
# run.json fields also stored in the last checkpoint's meta
META_FIELDS = ("dataset", "limit")
MODE_FIELDS = ("attn_mode", "mlp_mode")  # a mode schedule changes these between epochs
# hyperparameters an exact resume needs unchanged (everything in :func:`trainer_hparams`)
RESUME_FIXED = ("epochs", "batch_size", "lr", "weight_decay", "warmup_frac", "grad_clip", "seed", "loss",
                "augment", "world_size")


# ----------------------------------------------------------------------------- the trainer's state
def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's torch, Python, NumPy (and CUDA) RNG states as tensors, numbers and lists."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _to_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value


def trainer_hparams(trainer: Trainer) -> dict[str, Any]:
    """The hyperparameters the last checkpoint records (and a resume must not change)."""
    tc = trainer.train_config
    return {"epochs": tc.epochs, "batch_size": tc.batch_size, "lr": tc.lr, "weight_decay": tc.weight_decay,
            "warmup_frac": tc.warmup_frac, "grad_clip": tc.grad_clip, "seed": trainer.seed,
            "loss": trainer.loss_name, "augment": repr(trainer.augment) if trainer.augment is not None else None,
            "world_size": trainer.ctx.world_size}


def train_state(trainer: Trainer, ranks: list[Any], optimizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an exact resume needs besides the weights; ``ranks`` holds every rank's RNG and totals,
    ``optimizer`` the optimizer's state dict (default: ``trainer.optimizer.state_dict()``; under FSDP
    the gathered one, :func:`hstlab.train.fsdp.optimizer_state`)."""
    p = trainer.progress
    return {"epoch": p.epoch, "pos": p.pos, "step": p.step, "seconds": p.seconds,
            "best_score": p.best_score, "best_epoch": p.best_epoch, "history": p.history,
            "optimizer": optimizer if optimizer is not None else trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
            "loss": {k: v.detach().cpu() for k, v in trainer.loss_fn.state_dict().items()},
            "ranks": ranks, "world_size": trainer.ctx.world_size, "hparams": trainer_hparams(trainer)}


def restore(trainer: Trainer, path: str | os.PathLike) -> None:
    """Load the last checkpoint at ``path`` (file or run directory) into ``trainer``.

    Refuses (``ValueError``) hyperparameters that differ from the run's, and
    (:class:`~hstlab.train.checkpoint.CheckpointError`) a state that is damaged or does not fit.
    """
    path = Path(path)
    path = ckpt_io.run_checkpoint(path, "last") if path.is_dir() else path
    ckpt = ckpt_io.read_checkpoint(path)
    state = ckpt.get("train_state")
    if not isinstance(state, dict):
        raise ckpt_io.CheckpointError(f"resume={str(path)!r} holds no training state (is it a best checkpoint?)")
    saved, mine = state.get("hparams", {}), trainer_hparams(trainer)
    for key in RESUME_FIXED:
        if key in saved and saved[key] != mine[key]:
            raise ValueError(f"resume: {key}={mine[key]!r} differs from the run's {key}={saved[key]!r} "
                             f"(in {str(path)!r}); an exact resume needs the same value: pass "
                             f"{key}={saved[key]!r}, or start a new run")
    cfg = ckpt_io.config_of(ckpt, path)
    try:
        if cfg != trainer.cfg:
            trainer.install(cfg, trainer.build_fn(cfg).to(trainer.device))
        fsdp.load_full_state(trainer.model, ckpt["model"])  # strict; FSDP: each rank keeps its shard
        trainer.loss_fn.load_state_dict(state["loss"])
        fsdp.load_optimizer_state(trainer.optimizer, state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        progress = Progress(epoch=int(state["epoch"]), pos=int(state["pos"]), step=int(state["step"]),
                            seconds=float(state["seconds"]), best_score=float(state["best_score"]),
                            best_epoch=int(state["best_epoch"]), history=list(state["history"]))
        local = state["ranks"][trainer.ctx.rank]
        trainer.totals.load(local["totals"])
        set_rng_state(local["rng"], trainer.device)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise ckpt_io.CheckpointError(f"resume: the training state in {str(path)!r} is damaged or does not "
                                      f"fit this model ({type(exc).__name__}: {first})") from exc
    trainer.progress = progress
    trainer.saved_last_step = progress.step


# ----------------------------------------------------------------------------- run directory checks


def _diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Leaf fields where two JSON-like values differ: ``[(path, a_value, b_value), ...]``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            out += _diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{prefix}[{i}]")]
    same = (list(a) if isinstance(a, tuple) else a) == (list(b) if isinstance(b, tuple) else b)
    return [] if same else [(prefix, a, b)]


def config_differences(stored: HSTConfig, ckpt: HSTConfig) -> list[tuple[str, Any, Any]]:
    """Fields where ``config.json`` and the checkpoint's config differ.

    With a mode schedule the layer modes legitimately move between epochs, so they are not
    compared then.

    Example:
        >>> a = HSTConfig.from_preset("tiny")
        >>> config_differences(a, a.with_modes("TT"))[0][0]
        'layers[0].attn_mode'
        >>> import dataclasses
        >>> scheduled = dataclasses.replace(a, mode_schedule=((0, "TT"), (1, "SS")))
        >>> config_differences(scheduled, scheduled.with_modes("TT"))
        []
    """
    diffs = _diff(stored.to_dict(), ckpt.to_dict())
    if stored.mode_schedule and stored.mode_schedule == ckpt.mode_schedule:
        diffs = [d for d in diffs if not (d[0].startswith("layers[") and d[0].endswith(MODE_FIELDS))]
    return diffs


def _say(diffs: list[tuple[str, Any, Any]], left: str, right: str) -> str:
    shown = "; ".join(f"{path} is {a!r} in {left} but {b!r} in {right}" for path, a, b in diffs[:3])
    return shown + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")


def load_resume(resume: str | os.PathLike, given: dict[str, Any], cfg: Any = None,
                dataset_name: str | None = None, modes: str | None = None,
                mode_schedule: Any = None, run_dir: Any = None) -> tuple[Path, HSTConfig, dict[str, Any]]:
    """Check a run directory for ``resume`` and return ``(run_dir, cfg, run arguments)``.

    ``given`` holds the run arguments the caller passed explicitly (``epochs``, ``lr``, ...):
    each must equal the run's. ``cfg`` (preset name or config), ``dataset_name``, ``modes``,
    ``mode_schedule`` and ``run_dir`` may be given only if they match the run. Raises
    ``ValueError`` naming the file and field that differ and how to proceed
    (:class:`~hstlab.train.checkpoint.CheckpointError` for a damaged last checkpoint).
    """
    folder = Path(resume)
    last = ckpt_io.run_checkpoint(folder, "last")
    missing = [name for name in RESUME_FILES if not (folder / name).is_file()]
    missing += [] if last.is_file() else [last.name]
    if missing:
        raise ValueError(f"resume={str(folder)!r} must be a run directory holding run.json and {last.name}, with "
                         f"config.json (written by train_run / hstlab train); missing: {', '.join(missing)}")
    run_json, config_json = folder / "run.json", folder / "config.json"
    stored = ckpt_io.read_json(run_json)
    stored_cfg = ckpt_io.config_from_dict(ckpt_io.read_json(config_json), config_json)
    ckpt = ckpt_io.read_checkpoint(last)
    ckpt_cfg = ckpt_io.config_of(ckpt, last)
    best = ckpt_io.run_checkpoint(folder)
    if best.exists():  # read at the end of training: a damaged one must stop us now
        ckpt_io.read_checkpoint(best)
    how = "a resume continues the run exactly as it was started"

    # 1. what the caller asks for must be what the run is
    for key, value in given.items():
        theirs = stored.get(key, RUN_DEFAULTS.get(key))  # a key run.json lacks ran with the default
        if key == "dataset_options" and isinstance(value, dict) and isinstance(theirs, dict):
            value = {**theirs, **value}  # a new run adds given options to its recipe's
        if value != theirs:
            raise ValueError(f"resume: {key}={value!r} differs from the run's {key}={theirs!r} ({str(run_json)!r}); "
                             f"{how}: drop {key}, or start a new run (another run directory) to change it")
    asked = {"dataset_name": (dataset_name, stored.get("dataset")), "run_dir": (run_dir, folder)}
    for key, (value, theirs) in asked.items():
        if value is not None and (Path(value).resolve() != Path(theirs).resolve() if key == "run_dir"
                                  else value != theirs):
            raise ValueError(f"resume: {key}={str(value)!r} differs from the run's {str(theirs)!r}; {how}: drop "
                             f"{key}, or start a new run to change it")
    if isinstance(cfg, str) and cfg != stored.get("preset"):
        raise ValueError(f"resume: preset {cfg!r} differs from the run's {stored.get('preset')!r}; {how}: drop it")
    if isinstance(cfg, HSTConfig) and cfg != stored_cfg:
        raise ValueError(f"resume: the config passed differs from the run's ({_say(config_differences(cfg, stored_cfg), 'the one passed', str(config_json))}); {how}")  # noqa: E501
    if modes is not None and modes != stored_cfg.modes:
        raise ValueError(f"resume: modes={modes!r} differs from the run's {stored_cfg.modes!r} ({str(config_json)!r}); "
                         f"{how}: drop modes, or start a new run")
    if mode_schedule is not None and tuple(tuple(e) for e in mode_schedule) != stored_cfg.mode_schedule:
        raise ValueError(f"resume: mode_schedule={mode_schedule!r} differs from the run's "
                         f"{stored_cfg.mode_schedule!r}; {how}: drop it, or start a new run")

    # 2. the three files must describe the same run
    diffs = config_differences(stored_cfg, ckpt_cfg)
    if diffs:
        raise ValueError(f"resume: {str(config_json)!r} does not match {str(last)!r}: "
                         f"{_say(diffs, 'config.json', last.name)}. config.json was edited or belongs to another "
                         "run: restore it to the checkpoint's values (a resume cannot change the model), or start a "
                         "new run with the new config")
    hparams = (ckpt.get("train_state") or {}).get("hparams") or {}
    theirs = {**{k: hparams[k] for k in HPARAM_FIELDS if k in hparams},
              **{k: ckpt["meta"][k] for k in META_FIELDS if k in ckpt["meta"]}}
    for key, value in theirs.items():
        if key in stored and stored[key] != value:
            raise ValueError(f"resume: {str(run_json)!r} says {key}={stored[key]!r} but {str(last)!r} was trained "
                             f"with {key}={value!r}; run.json was edited or belongs to another run: restore "
                             f"{key}={value!r}, or start a new run")
    if not isinstance(stored.get("dataset"), str):
        raise ValueError(f"{str(run_json)!r} names no dataset (field 'dataset'); it was not written by hstlab train")
    for key in RULES:
        if key in stored:
            try:
                check_arg(key, stored[key])
            except ValueError as exc:
                raise ValueError(f"{str(run_json)!r}: {exc}") from exc
    for key in ("loss_options", "dataset_options"):
        if not isinstance(stored.get(key, {}), dict):
            raise ValueError(f"{str(run_json)!r}: {key} must be a JSON object")
    return folder, stored_cfg, stored
