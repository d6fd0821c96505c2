"""Background training for the explorer: one ``hstlab.Trainer`` thread per session, live curves.

The trainer thread only puts events on a queue; :meth:`TrainSession.poll` (a periodic callback
on the session's document, 4 Hz, run on the event loop even when browser events go to worker
threads) moves them into the ``LiveCurves`` buffer and the run table, so every Bokeh update of
the charts happens on the server's event loop.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import param

from hstlab.train.checkpoint import run_checkpoint
from hstlab.train.config import TrainConfig
from hstlab.ui.limits import TRAIN_LIMITS, check_value
from hstlab.ui.samples import load_split
from hstlab.ui.state import ExplorerState, rejection_text

POLL_MS = 250  # live charts update at 4 Hz
RUN_COLUMNS = (
    "run",
    "status",
    "preset",
    "modes",
    "params",
    "steps",
    "val_accuracy",
    "energy_per_sample_uj",
    "seconds",
    "checkpoint",
)


def request_stop(trainer: Any) -> None:
    """Ask a running ``Trainer`` to stop after its current step (it then saves and evaluates)."""
    trainer.request_stop("stopped from the explorer")


ALL_SAMPLES = int(TRAIN_LIMITS["limit"][1])  # "samples per split" when a recipe uses every sample
RECIPE_FIELDS = ("augment_shift", "warmup_frac", "weight_decay", "grad_clip")  # not in the tab's boxes


def recipe_settings(preset: str, dataset: str) -> tuple[dict[str, Any], str]:
    """The Train tab's settings from the recipe registry (:func:`hstlab.train.recipes.recipe_for`)
    and a line saying where they come from.

    A recipe that trains on every sample (``limit=None``) gets :data:`ALL_SAMPLES`, the
    largest number the tab accepts, which is more than any split of the explorer's datasets.

    Example:
        >>> settings, source = recipe_settings("hst-small", "digits-dvs")
        >>> settings["epochs"], settings["lr"], settings["batch_size"], settings["limit"]
        (18, 0.005, 32, 20000)
        >>> source.startswith("Recipe hst-small on digits-dvs")
        True
    """
    from hstlab.train.recipes import recipe_for

    recipe = recipe_for(preset, dataset)
    train = recipe.train
    settings = {"epochs": train.epochs, "lr": train.lr, "batch_size": train.batch_size,
                "limit": ALL_SAMPLES if train.limit is None else min(train.limit, ALL_SAMPLES),
                **{k: getattr(train, k) for k in RECIPE_FIELDS}}
    if recipe.notice:
        return settings, f"No recipe for {preset} on {dataset}: the generic defaults of TrainConfig."
    return settings, f"Recipe {recipe.key} ({recipe.result})."


def write_run_json(run_dir: Path, cfg: Any, dataset: str, train_config: Any) -> None:
    """``run.json`` as ``hstlab.train.train_run`` writes it, so the trainer's model card can read the run."""
    from hstlab.train.checkpoint import write_json

    args = {
        "dataset": dataset, **train_config.to_dict(), "seed": 0, "loss": "cross_entropy",
        "loss_options": {}, "checkpoint_every": 0,
    }  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        run_dir / "run.json", {**args, "preset": cfg.name, "notes": ["trained in the explorer"]}
    )


@dataclasses.dataclass
class _Done:
    metrics: dict[str, Any]
    stopped: bool
    run_dir: str


@dataclasses.dataclass
class _Failed:
    message: str


class TrainSession(param.Parameterized):
    """At most one background training run per session; finished runs collect in :attr:`runs`.

    Example:
        >>> state = ExplorerState(preset="hst-small")
        >>> session = TrainSession(runs_dir="runs/explorer/demo", limit=16, batch_size=8)
        >>> session.start(state)  # doctest: +SKIP
        True
        >>> session.join(); session.poll(); session.runs[["run", "val_accuracy"]]  # doctest: +SKIP
    """

    limit = param.Integer(
        default=64, label="samples per split", doc="load_dataset(limit=...) for train and val"
    )
    augment_shift = param.Integer(default=TrainConfig.augment_shift,
                                  doc="RandomShift of training frames (pixels; 0: off)")
    warmup_frac = param.Number(default=TrainConfig.warmup_frac, doc="linear warm-up fraction of the steps")
    weight_decay = param.Number(default=TrainConfig.weight_decay, doc="AdamW weight decay")
    grad_clip = param.Number(default=TrainConfig.grad_clip, allow_None=True,
                             doc="gradient-norm clip (None: off)")
    recipe = param.String(default="", doc="where the settings come from (set by use_recipe)")
    batch_size = param.Integer(default=16, label="batch size")
    epochs = param.Integer(default=1)
    lr = param.Number(default=1e-3, label="learning rate")

    running = param.Boolean(default=False, doc="a run is in progress")
    status = param.String(default="No run yet.", doc="progress of the current or last run")
    message = param.String(default="", doc="why the last request was refused ('' when fine)")
    events_received = param.Integer(default=0, doc="step/epoch events received in the current run")
    runs = param.DataFrame(default=None, doc="one row per finished run")

    def __init__(self, runs_dir: str | Path = "runs/explorer", **params: Any) -> None:
        from hstlab.viz import LiveCurves

        super().__init__(**params)
        self.runs_dir = Path(runs_dir)
        self.runs = pd.DataFrame(columns=list(RUN_COLUMNS))
        self.live = LiveCurves()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._trainer: Any = None
        self._stop = threading.Event()
        self._polling = threading.Lock()  # served with worker threads, two polls may overlap
        self._periodic: Any = None
        self._run: dict[str, Any] = {}
        self._count = 0

    # ------------------------------------------------------------------ control
    def _check_settings(self) -> None:
        """Raise ``ValueError`` naming the first setting outside :data:`~hstlab.ui.limits.TRAIN_LIMITS`
        (``nan`` and ``inf`` included)."""
        for name in TRAIN_LIMITS:
            check_value(name, getattr(self, name))

    def reject(self, exc: Exception) -> bool:
        """Refuse a request: :attr:`message` says why (worded as the explorer words every refusal)."""
        self.message = rejection_text(exc)
        return False

    def set_setting(self, name: str, value: Any) -> bool:
        """Set training setting ``name`` (a parsed widget value) if it is within its limits."""
        try:
            if name not in TRAIN_LIMITS:
                raise ValueError(f"{name!r} is not a training setting; settings: {list(TRAIN_LIMITS)}")
            check_value(name, value)
            setattr(self, name, value)
        except ValueError as exc:
            return self.reject(exc)
        self.message = ""
        return True

    def use_recipe(self, preset: str, dataset: str) -> bool:
        """Take the settings of the recipe of ``preset`` on ``dataset`` (see :func:`recipe_settings`).

        Refused (False, with :attr:`message`) while a run is going.
        """
        if self.running:
            return self.reject(ValueError("A run is going: its settings stay until it ends."))
        settings, self.recipe = recipe_settings(preset, dataset)
        self.param.update(**settings, message="")
        return True

    def start(self, state: ExplorerState) -> bool:
        """Train a copy of ``state.model`` on ``state.dataset`` in a background thread.

        Returns False (and sets :attr:`message`) when a run is already going or the request is
        invalid.
        """
        if self.running:
            return self.reject(ValueError(
                f"A training run ({self._run.get('run')}) is already running in this "
                "session: stop it or wait for it to finish before starting another."
            ))  # fmt: skip
        try:
            self._check_settings()
            train_config = self.train_config(state)
            model = state.model_copy()
        except ValueError as exc:
            return self.reject(exc)
        self._count += 1
        name = f"run-{self._count:03d}"
        cfg = state.cfg
        self._run = {
            "run": name,
            "preset": state.preset,
            "modes": cfg.modes,
            "params": state.n_params,
            "run_dir": str(self.runs_dir / name),
            "t0": time.perf_counter(),
            "total": None,
        }
        self._stop.clear()
        self._trainer = None
        self.live.clear()
        self.param.update(
            running=True,
            message="",
            events_received=0,
            status=f"{name}: loading {state.dataset} ...",
        )
        self._thread = threading.Thread(
            target=self._work,
            args=(model, cfg, state.dataset, train_config),
            name=f"hstlab-train-{name}",
            daemon=True,
        )
        self._thread.start()
        self._ensure_polling()
        return True

    def train_config(self, state: ExplorerState) -> Any:
        """The :class:`~hstlab.train.config.TrainConfig` of this session's settings on ``state``."""
        from hstlab.train.config import TrainConfig
        from hstlab.ui.samples import no_build_options

        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, limit=self.limit,
            time_bins=state.cfg.input_steps, dataset_options=no_build_options(state.dataset),
            **{k: getattr(self, k) for k in RECIPE_FIELDS},
        )

    def stop(self) -> bool:
        """Stop the current run after its current step; its checkpoint and metrics are kept."""
        if not self.running:
            return self.reject(ValueError("No training run is running in this session."))
        self._stop.set()
        if self._trainer is not None:
            request_stop(self._trainer)
        self.status = f"{self._run['run']}: stopping after the current step ..."
        return True

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background thread (tests, scripts)."""
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ worker thread
    def _work(self, model: Any, cfg: Any, dataset: str, train_config: Any) -> None:
        try:
            from hstlab.train import Trainer

            limit = train_config.limit
            train = load_split(dataset, "train", cfg.input_steps, limit)
            val = load_split(dataset, "val", cfg.input_steps, limit)
            x, _ = train[0]
            if tuple(x.shape[1:]) != tuple(cfg.input_shape):
                raise ValueError(
                    f"{dataset} frames are {tuple(x.shape[1:])} but the model's input_shape is "
                    f"{cfg.input_shape}; pick a preset made for {dataset} (e.g. hst-small)"
                )
            run_dir = Path(self._run["run_dir"])
            write_run_json(run_dir, cfg, dataset, train_config)
            trainer = Trainer(
                model,
                cfg,
                train,
                val,
                train_config=train_config,
                run_dir=run_dir,
                callbacks=[self._queue.put],
                extra_meta={"dataset": dataset, "preset": cfg.name, "limit": limit},
            )
            self._run["total"] = trainer.total_steps
            self._trainer = trainer
            if self._stop.is_set():
                request_stop(trainer)
            metrics = trainer.fit()
            self._queue.put(_Done(metrics, self._stop.is_set(), self._run["run_dir"]))
        except Exception as exc:  # noqa: BLE001 - reported in the page, the session goes on
            self._queue.put(
                _Failed(str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}")
            )

    # ------------------------------------------------------------------ event loop side
    def _ensure_polling(self) -> None:
        import panel as pn

        if pn.state.curdoc is None or pn.state.curdoc.session_context is None:
            return  # not served: call poll() yourself
        if self._periodic is None:
            self._periodic = pn.state.add_periodic_callback(self._poll_on_loop, period=POLL_MS)
        elif not self._periodic.running:
            self._periodic.start()

    async def _poll_on_loop(self) -> None:
        """The periodic callback: a coroutine, so Panel runs it on the event loop even when events
        go to worker threads (the live charts' streams are updated where Bokeh expects it)."""
        self.poll()

    def poll(self) -> int:
        """Move queued trainer events into the live curves, status and run table; returns how many.

        A poll that starts while another is still running returns 0 (the next one catches up).
        """
        if not self._polling.acquire(blocking=False):
            return 0
        try:
            return self._poll()
        finally:
            self._polling.release()

    def _poll(self) -> int:
        events, outcome = [], None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, (_Done, _Failed)):
                outcome = item
            else:
                events.append(item)
        shown = [e for e in events if getattr(e, "kind", "") != "fit_end"]
        for event in shown:
            self.live.push(event)
        if shown:
            flush = getattr(self.live, "flush", None)
            if callable(flush):
                flush()
            self.events_received += len(shown)
            self.status = self._progress(shown[-1])
        if outcome is not None:
            self._finish(outcome)
        return len(events)

    def _progress(self, ev: Any) -> str:
        total = self._run.get("total")
        parts = [
            f"{self._run.get('run')}: step {ev.step}" + (f"/{total}" if total else ""),
            f"epoch {ev.epoch}",
            f"loss {ev.loss:.4g}",
        ]
        if ev.accuracy is not None:
            parts.append(f"accuracy {ev.accuracy:.3f}")
        if ev.firing_rate is not None:
            parts.append(f"firing rate {ev.firing_rate:.4f}")
        if getattr(ev, "val_accuracy", None) is not None:
            parts.append(f"val accuracy {ev.val_accuracy:.3f}")
        return ", ".join(parts) + f" ({time.perf_counter() - self._run['t0']:.1f} s)"

    def _finish(self, outcome: _Done | _Failed) -> None:
        seconds = time.perf_counter() - self._run["t0"]
        row = {k: self._run.get(k) for k in ("run", "preset", "modes", "params")}
        if isinstance(outcome, _Done):
            m = outcome.metrics
            energy = m.get("energy_per_sample_j")
            status = "stopped" if outcome.stopped else "finished"
            row.update(
                status=status,
                steps=m.get("steps"),
                val_accuracy=m.get("val_accuracy"),
                energy_per_sample_uj=None if energy is None else energy * 1e6,
                seconds=round(seconds, 2),
                checkpoint=str(run_checkpoint(outcome.run_dir)),
            )
            text = (
                f"{row['run']} {status} after {m.get('steps')} steps: val accuracy "
                f"{_fmt(m.get('val_accuracy'))}, energy {_fmt(row['energy_per_sample_uj'])} µJ/sample; "
                f"checkpoints in {outcome.run_dir}"
            )
        else:  # a failed run has no results: it is reported, not added to the comparison table
            text = f"{row['run']} failed after {seconds:.1f} s: {outcome.message}"
            self.message = outcome.message
        runs = self.runs
        if isinstance(outcome, _Done):
            new = pd.DataFrame([row], columns=list(RUN_COLUMNS))
            runs = new if runs.empty else pd.concat([runs, new], ignore_index=True)
        self._trainer = None
        self.param.update(runs=runs, status=text, running=False)
        if self._periodic is not None and self._periodic.running:
            self._periodic.stop()

    @property
    def last_run_dir(self) -> str | None:
        """Folder of the latest finished or stopped run (None before the first)."""
        done = self.runs[self.runs["status"].isin(["finished", "stopped"])]
        return None if done.empty else str(Path(done.iloc[-1]["checkpoint"]).parent)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}"
