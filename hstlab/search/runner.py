"""Multi-objective search over per-layer modes with Optuna: train each design, keep the Pareto front.

Every trial samples a design from a :class:`~hstlab.search.space.SearchSpace`, trains it with
:func:`hstlab.train_run` (the preset's recipe, a per-trial budget of epochs and/or seconds, the
same seed for every trial) into ``SEARCH_DIR/runs/trial-NNNN`` (a normal run directory the
explorer loads), and measures the energy per sample of its best-validation model under the
chosen dataflow. Trials are stored in ``SEARCH_DIR/search.db`` (an Optuna SQLite storage), so a
killed search resumes where it stopped; resuming with other settings is refused.

Selection sees validation scores only. The trainer scores each trial's best model on the test
split once when it finishes (``metrics.json`` in the run directory); the search never reads
those numbers except for the final Pareto set, whose test accuracy the front table reports.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hstlab._optional import require
from hstlab.config import HSTConfig
from hstlab.energy.constants import DATAFLOWS, ENERGY_PRESETS
from hstlab.search.objectives import (
    DEFAULT_OBJECTIVES,
    OBJECTIVES,
    SAMPLERS,
    Objective,
    check_objectives,
)
from hstlab.search.space import SearchSpace

STUDY_NAME = "hstlab-search"
STORAGE_FILE = "search.db"
FRONT_COLUMNS = ("number", "design", "modes", "kinds", "num_steps", "weight_bits", "membrane_bits", "mask_ratio",
                 "val_accuracy", "energy_per_sample_j", "test_accuracy", "params", "train_seconds", "run_dir")
TRAIN_ARGS = ("batch_size", "lr", "augment_shift", "warmup_frac", "weight_decay", "grad_clip", "time_bins",
              "loss", "loss_options", "dataset_options")


@dataclass
class SearchResult:
    """What a search returns: every finished trial, the Pareto front and where they are stored.

    ``trials`` has one row per completed trial (design columns from
    :func:`~hstlab.search.space.design_record`, the measured values, ``feasible`` and
    ``pareto``); ``front`` is the feasible non-dominated subset, sorted by energy, with the test
    accuracy of each member. Plot with ``hstlab.viz.search.pareto_plot(result.trials)``.
    """

    trials: pd.DataFrame
    front: pd.DataFrame
    search_dir: Path
    objectives: tuple[str, ...]
    settings: dict[str, Any]

    def table(self, columns: Sequence[str] = FRONT_COLUMNS) -> str:
        """The front as a plain-text table (energy in µJ)."""
        front = self.front.copy()
        front["energy_uj"] = front["energy_per_sample_j"] * 1e6
        cols = [("energy_uj" if c == "energy_per_sample_j" else c) for c in columns if c != "run_dir"]
        return front[[c for c in cols if c in front.columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _optuna() -> Any:
    optuna = require("optuna", "hstlab search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _check_budget(epochs: Any, seconds: Any) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be an integer >= 1 (the per-trial budget in epochs)")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                or not math.isfinite(seconds) or seconds <= 0):
        raise ValueError(f"seconds={seconds!r} must be a number > 0 or None (the per-trial budget in seconds)")


def _check_limit(name: str, value: Any, kind: type = int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
                              or (kind is int and not isinstance(value, int))):
        raise ValueError(f"{name}={value!r} must be a positive {'integer' if kind is int else 'number'} or None")


def _settings(preset: str | HSTConfig, dataset: str, space: SearchSpace, objectives: tuple[Objective, ...],
              epochs: int, seconds: float | None, limit: int | None, dataflow: str, energy_preset: str,
              seed: int, max_params: int | None, max_train_seconds: float | None,
              train_options: dict[str, Any]) -> dict[str, Any]:
    """Everything that defines what a trial is; a resumed search must match it exactly."""
    base = preset.to_dict() if isinstance(preset, HSTConfig) else preset
    return json.loads(json.dumps({
        "preset": base, "dataset": dataset, "space": space.to_dict(),
        "objectives": [o.name for o in objectives], "epochs": epochs, "seconds": seconds, "limit": limit,
        "dataflow": dataflow, "energy_preset": energy_preset, "seed": seed, "max_params": max_params,
        "max_train_seconds": max_train_seconds, "train_options": train_options,
    }, sort_keys=True, default=str))


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(stored) | set(wanted)):
        if key == "space" and isinstance(stored.get(key), dict) and isinstance(wanted.get(key), dict):
            out += [f"space.{k}: stored {stored[key].get(k)!r}, now {wanted[key].get(k)!r}"
                    for k in sorted(set(stored[key]) | set(wanted[key])) if stored[key].get(k) != wanted[key].get(k)]
        elif stored.get(key) != wanted.get(key):
            out.append(f"{key}: stored {stored.get(key)!r}, now {wanted.get(key)!r}")
    return out


def _storage_url(search_dir: Path) -> str:
    return f"sqlite:///{(search_dir / STORAGE_FILE).resolve()}"


def _open_study(search_dir: Path, settings: dict[str, Any], objectives: tuple[Objective, ...]) -> Any:
    """Create the study, or load it and check it was started with the same settings."""
    optuna = _optuna()
    url = _storage_url(search_dir)
    if (search_dir / STORAGE_FILE).exists():
        try:
            study = optuna.load_study(study_name=STUDY_NAME, storage=url)
        except KeyError:
            study = None
        if study is not None:
            stored = study.user_attrs.get("settings")
            diffs = _differences(stored or {}, settings)
            if diffs:
                raise ValueError(
                    f"search_dir={str(search_dir)!r} holds a search with other settings, so it cannot be "
                    f"resumed: {'; '.join(diffs)}. Resume with the same space and settings, or use a new "
                    "search_dir")
            return study
    study = optuna.create_study(study_name=STUDY_NAME, storage=url,
                                directions=[o.direction for o in objectives])
    study.set_user_attr("settings", settings)
    return study


def _set_constraints(trial: Any, params: int, seconds: float | None, max_params: int | None,
                     max_train_seconds: float | None) -> None:
    """Constraint values (<= 0 feasible) for the sampler and the front: amounts over each cap."""
    values = {"params": float(params - max_params) if max_params is not None else 0.0,
              "train_seconds": (float(seconds - max_train_seconds)
                                if max_train_seconds is not None and seconds is not None else 0.0)}
    for key, value in values.items():
        trial.set_constraint(key, value)
    trial.set_user_attr("constraints", list(values.values()))


def _make_sampler(name: str, seed: int, n_trials: int) -> Any:
    optuna = _optuna()
    if name not in SAMPLERS:
        raise ValueError(f"sampler={name!r} is not allowed; allowed: {', '.join(SAMPLERS)}")
    if name == "nsga2":  # small generations, so a few dozen trials still evolve
        return optuna.samplers.NSGAIISampler(population_size=max(4, min(50, n_trials // 3)), seed=seed)
    return optuna.samplers.TPESampler(n_startup_trials=max(2, min(10, n_trials // 3)), seed=seed)


def _finished(study: Any) -> list[Any]:
    """Trials that count towards ``n_trials``: completed, pruned (over a cap) or diverged."""
    states = _optuna().trial.TrialState
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (states.COMPLETE, states.PRUNED)
            or (t.state == states.FAIL and t.user_attrs.get("failed"))]


def _fail_interrupted(study: Any) -> int:
    """Trials left RUNNING by a killed search become FAIL (they are run again); returns how many."""
    states = _optuna().trial.TrialState
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == states.RUNNING]
    for t in stale:
        study.tell(t.number, state=states.FAIL)
    return len(stale)


def _energy(run_dir: Path, energy_preset: str, dataflow: str, batch: int) -> tuple[float, int]:
    """Energy per sample (J) of the run's best model on ``batch`` spread validation samples, and its parameters."""
    from hstlab.data import load_dataset
    from hstlab.data.collate import spread_indices
    from hstlab.energy import energy_report
    from hstlab.train import default_collate, load_checkpoint

    model, cfg, _ = load_checkpoint(run_dir)
    args = json.loads((run_dir / "run.json").read_text())
    options = dict(args.get("dataset_options") or {})
    if args.get("limit") is not None:
        options["limit"] = args["limit"]
    time_bins = args.get("time_bins") or (cfg.input_steps if cfg.tokenizer != "linear" else None)
    val = load_dataset(args["dataset"], "val", time_bins=time_bins, **options)
    x, _ = default_collate([val[i] for i in spread_indices(len(val), batch)])
    report = energy_report(model, x, preset=energy_preset, dataflow=dataflow)
    return float(report.total_j), sum(p.numel() for p in model.parameters())


def _same_design(study: Any, params: dict[str, Any]) -> Any:
    """The first completed, trained trial with exactly these parameters, or None."""
    states = _optuna().trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(states.COMPLETE,)):
        if t.params == params and "duplicate_of" not in t.user_attrs:
            return t
    return None


def _trial_row(t: Any) -> dict[str, Any]:
    row = {"number": t.number, **t.user_attrs.get("record", {})}
    row.update(t.user_attrs.get("measured", {}))
    row["run_dir"] = t.user_attrs.get("run_dir")
    row["feasible"] = all(c <= 0 for c in t.user_attrs.get("constraints", [0.0]))
    row["duplicate_of"] = t.user_attrs.get("duplicate_of")
    return row


def pareto_mask(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` [n, k] (ties: both kept).

    Example:
        >>> pareto_mask(np.array([[0.9, 5.0], [0.8, 1.0], [0.7, 2.0]]), [True, False]).tolist()
        [True, True, False]
    """
    v = np.asarray(values, dtype=float)
    signs = np.where(np.asarray(maximize), -1.0, 1.0)
    v = v * signs  # all minimised
    keep = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        dominated = np.all(v <= v[i], axis=1) & np.any(v < v[i], axis=1)
        keep[i] = not dominated.any()
    return keep


def collect(study: Any, search_dir: Path) -> SearchResult:
    """Tables of a study: every completed trial, and the feasible Pareto front with its test scores."""
    states = _optuna().trial.TrialState
    settings = study.user_attrs.get("settings", {})
    names = tuple(settings.get("objectives", DEFAULT_OBJECTIVES))
    objectives = check_objectives(names)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == states.COMPLETE]
    trials = pd.DataFrame([_trial_row(t) for t in done])
    if trials.empty:
        trials = pd.DataFrame(columns=["number", *FRONT_COLUMNS[1:], "feasible", "duplicate_of", "pareto"])
        return SearchResult(trials, trials.copy(), search_dir, names, settings)
    trials["pareto"] = False
    # the front is over distinct designs: a re-proposed design shares its first trial's result
    feasible = trials["feasible"].to_numpy(bool) & trials["duplicate_of"].isna().to_numpy()
    if feasible.any():
        values = trials.loc[feasible, list(names)].to_numpy(float)
        mask = pareto_mask(values, [o.direction == "maximize" for o in objectives])
        trials.loc[trials.index[feasible][mask], "pareto"] = True
    front = trials[trials["pareto"]].copy()
    front["test_accuracy"] = [_test_score(Path(d)) for d in front["run_dir"]]
    front = front.sort_values(["energy_per_sample_j", "number"] if "energy_per_sample_j" in front else "number")
    return SearchResult(trials, front.reset_index(drop=True), search_dir, names, settings)


def _test_score(run_dir: Path) -> float | None:
    """The test accuracy the trainer measured once on the run's best-validation model."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("test_accuracy")


def load_search(search_dir: str | os.PathLike) -> SearchResult:
    """Read a search directory written by :func:`run_search` (no training)."""
    search_dir = Path(search_dir)
    if not (search_dir / STORAGE_FILE).is_file():
        raise ValueError(f"search_dir={str(search_dir)!r} holds no {STORAGE_FILE} "
                         "(written by run_search / hstlab search)")
    study = _optuna().load_study(study_name=STUDY_NAME, storage=_storage_url(search_dir))
    return collect(study, search_dir)


def run_search(
    preset: str | HSTConfig = "hst-small",
    dataset: str = "digits-dvs",
    *,
    search_dir: str | os.PathLike = "runs/search",
    n_trials: int = 20,
    space: SearchSpace | None = None,
    objectives: Sequence[str] | str = DEFAULT_OBJECTIVES,
    epochs: int = 2,
    seconds: float | None = None,
    limit: int | None = None,
    dataflow: str = "step-major",
    energy_preset: str = "45nm-fp32",
    sampler: str = "tpe",
    seed: int = 0,
    max_params: int | None = None,
    max_train_seconds: float | None = None,
    energy_batch: int = 32,
    train_options: dict[str, Any] | None = None,
    on_trial: Callable[[dict[str, Any]], Any] | None = None,
) -> SearchResult:
    """Search the design space of ``preset`` on ``dataset``; returns every trial and the Pareto front.

    Each trial trains for ``epochs`` (and at most ``seconds`` of training, if given) with
    ``train_run``'s recipe (``train_options``: batch_size, lr, augment_shift, ... as
    :func:`hstlab.train_run` takes them; ``limit`` samples per split). Objectives are names from
    :data:`~hstlab.search.objectives.OBJECTIVES` (default: maximise ``val_accuracy``, minimise
    ``energy_per_sample_j`` measured under ``dataflow`` and ``energy_preset`` on ``energy_batch``
    validation samples). ``max_params`` (checked before training; over it the trial is
    pruned) and ``max_train_seconds`` are constraints. ``sampler``: ``"tpe"`` (multi-objective
    TPE) or ``"nsga2"``. The search stops when ``n_trials`` trials have finished in
    ``search_dir``, counting those of earlier (interrupted) runs; a design the sampler proposes
    again is not retrained (the trial reuses the first result, ``duplicate_of``, and still
    counts); ``on_trial(row)`` is called after each. One process per search directory.

    Example:
        >>> result = run_search("tiny", "digits-dvs", search_dir="runs/s", n_trials=3)  # doctest: +SKIP
        >>> result.front[["design", "val_accuracy", "energy_per_sample_j"]]  # doctest: +SKIP
    """
    from hstlab.model import build_model
    from hstlab.train import TrainingDiverged, train_run

    optuna = _optuna()
    space = space if space is not None else SearchSpace()
    if not isinstance(space, SearchSpace):
        raise ValueError(f"space={space!r} must be a SearchSpace")  # noqa: TRY004
    objs = check_objectives(objectives)
    _check_budget(epochs, seconds)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials={n_trials!r} must be an integer >= 1")
    _check_limit("limit", limit)
    _check_limit("max_params", max_params)
    _check_limit("max_train_seconds", max_train_seconds, float)
    _check_limit("energy_batch", energy_batch)
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow={dataflow!r} is not allowed; allowed: {', '.join(DATAFLOWS)}")
    if energy_preset not in ENERGY_PRESETS:
        raise ValueError(f"energy_preset={energy_preset!r} is not allowed; allowed: {', '.join(ENERGY_PRESETS)}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is not allowed; allowed: {', '.join(SAMPLERS)}")
    train_options = dict(train_options or {})
    unknown = sorted(set(train_options) - set(TRAIN_ARGS))
    if unknown:
        raise ValueError(f"train_options: unknown key(s) {unknown}; allowed: {', '.join(TRAIN_ARGS)}")
    base = preset if isinstance(preset, HSTConfig) else HSTConfig.from_preset(preset)
    space.check_fits(base)  # a design the preset cannot build -> ValueError before anything is written
    from hstlab.data import dataset_info

    dataset_info(dataset)  # unknown dataset -> ValueError before anything is written

    search_dir = Path(search_dir)
    search_dir.mkdir(parents=True, exist_ok=True)
    settings = _settings(preset, dataset, space, objs, epochs, seconds, limit, dataflow, energy_preset, seed,
                         max_params, max_train_seconds, train_options)
    study = _open_study(search_dir, settings, objs)
    _fail_interrupted(study)
    study.sampler = _make_sampler(sampler, seed + len(study.trials), n_trials)
    states = optuna.trial.TrialState

    while len(_finished(study)) < n_trials:
        trial = study.ask()
        cfg, record = space.sample(trial, base)
        run_dir = search_dir / "runs" / f"trial-{trial.number:04d}"
        trial.set_user_attr("record", record)
        trial.set_user_attr("run_dir", str(run_dir))
        twin = _same_design(study, trial.params)
        if twin is not None:  # the sampler proposed a design already trained: reuse its result
            for key in ("measured", "constraints", "run_dir"):
                trial.set_user_attr(key, twin.user_attrs[key])
            trial.set_user_attr("duplicate_of", twin.number)
            _set_constraints(trial, twin.user_attrs["measured"]["params"], twin.user_attrs["measured"]["train_seconds"],
                             max_params, max_train_seconds)
            study.tell(trial, list(twin.values))
            _report(on_trial, {"number": trial.number, **record, **twin.user_attrs["measured"],
                               "status": f"duplicate of trial {twin.number} (not retrained)"})
            continue
        params = sum(p.numel() for p in build_model(cfg).parameters())
        if max_params is not None and params > max_params:
            trial.set_user_attr("measured", {"params": params})
            _set_constraints(trial, params, None, max_params, max_train_seconds)
            study.tell(trial, state=states.PRUNED)
            _report(on_trial, {"number": trial.number, **record, "params": params, "status": "pruned (max_params)"})
            continue
        try:
            given = {"limit": limit} if limit is not None else {}  # unset: train_run's default
            metrics = train_run(cfg, dataset, epochs=epochs, max_seconds=seconds, seed=seed, run_dir=run_dir,
                                **given, **train_options)
        except TrainingDiverged as exc:
            trial.set_user_attr("failed", str(exc))
            study.tell(trial, state=states.FAIL)
            _report(on_trial, {"number": trial.number, **record, "status": f"diverged: {exc}"})
            continue
        except BaseException:
            study.tell(trial, state=states.FAIL)
            raise
        energy, params = _energy(run_dir, energy_preset, dataflow, energy_batch)
        measured = {"val_accuracy": metrics.get("val_accuracy"),
                    "val_bits_per_spike": metrics.get("val_bits_per_spike"),
                    "energy_per_sample_j": energy, "params": params, "train_seconds": metrics["train_seconds"],
                    "val_firing_rate": metrics.get("val_firing_rate"), "steps": metrics.get("steps"),
                    "stop_reason": metrics.get("stop_reason")}
        missing = [o.name for o in objs if measured.get(o.name) is None]
        if missing:
            study.tell(trial, state=states.FAIL)
            have = [k for k, v in measured.items() if v is not None and k in OBJECTIVES]
            raise ValueError(f"objectives: {missing} have no value on dataset {dataset!r} "
                             f"(loss {metrics.get('loss')!r}); measured here: {have}")
        trial.set_user_attr("measured", measured)
        _set_constraints(trial, params, measured["train_seconds"], max_params, max_train_seconds)
        study.tell(trial, [float(measured[o.name]) for o in objs])
        _report(on_trial, {"number": trial.number, **record, **measured, "status": "complete"})
    return collect(study, search_dir)


def _report(on_trial: Callable[[dict[str, Any]], Any] | None, row: dict[str, Any]) -> None:
    if on_trial is not None:
        on_trial(row)
