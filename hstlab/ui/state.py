"""The explorer's GUI-free state: config fields as params, the model, its size, energy and recordings.

Every number comes from the library: ``HSTConfig`` validates, ``build_model`` builds,
``energy_report`` costs, ``Recorder`` looks inside. Views only lay these out.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import param
import torch

from hstlab.config import (
    ALLOWED_BITS,
    ALLOWED_MEMBRANE_BITS,
    ATTENTION_KINDS,
    MLP_KINDS,
    MODES,
    NEURONS,
    POS_ENCODINGS,
    RESIDUALS,
    SURROGATES,
    TOKENIZERS,
    HSTConfig,
    LayerSpec,
)
from hstlab.energy.constants import DATAFLOW_HELP, DATAFLOWS
from hstlab.layers.norm import calibrate_batchnorm
from hstlab.presets import list_presets
from hstlab.ui.limits import LIMITS, MAX_CHECKPOINT_BYTES, check_config_values, check_value
from hstlab.ui.measure import SHOWN, Job, Superseded, cancellable
from hstlab.ui.runs import RUN_HOLDS, RunFolders, shown
from hstlab.ui.samples import Sample, SampleSource, vision_datasets
from hstlab.viz.config_table import LAYER_COLUMNS, layers_frame

GLOBAL_FIELDS = (
    "tokenizer_mode",
    "n_layer",
    "n_embd",
    "n_head",
    "num_steps",
    "tokenizer",
    "pos_encoding",
    "neuron",
    "surrogate",
    "weight_bits",
    "membrane_bits",
)
INIT_PARAMS = ("preset", "dataset", "sample_index", "live_inspection", "live_comparison", "dataflow",
               "deferred")  # set before the first build
UNTRAINED = "untrained (BatchNorm calibrated on the sample)"
NO_PRETRAINED = "(none: build from the fields)"
STEM_FOLLOWS = "follows layer 0"  # tokenizer_mode=None
DEFAULT_PRETRAINED = "hst-small-digits-dvs"  # what a served explorer opens on
ZOO_PAIR = {"spiking": "hst-small-digits-dvs", "standard": "hst-small-digits-dvs-standard"}  # Inspect's comparison


def frame_pretrained() -> list[str]:
    """Zoo entries the explorer can show: models of event frames (not sequence models)."""
    from hstlab.zoo import list_pretrained, pretrained_record

    return [n for n in list_pretrained() if pretrained_record(n).config.get("tokenizer") != "linear"]


def pretrained_text(record: Any) -> str:
    """``'pretrained: hst-small-digits-dvs (test accuracy 98.9 %)'`` from a zoo record."""
    accuracy = record.metrics.get("test_accuracy")
    score = f" (test accuracy {accuracy * 100:.1f} %)" if isinstance(accuracy, (int, float)) else ""
    return f"pretrained: {record.name}{score}"
RUN_HINT = "pick a run directory written by hstlab train or the Train tab"
_RNG_LOCK = threading.Lock()  # seeded builds of all sessions share torch's global RNG
LAYER_CHOICES: dict[str, tuple] = {
    "attn_mode": MODES,
    "mlp_mode": MODES,
    "attention": ATTENTION_KINDS,
    "mlp_kind": MLP_KINDS,
    "residual": RESIDUALS,
}


def _stage_lines(cfg: HSTConfig | None) -> list[str]:
    """The stages of a staged config, one line each ([] when flat or no config)."""
    if cfg is None or not cfg.stages:
        return []
    from hstlab.staged import stage_lines

    return stage_lines(cfg)


def layer_specs(base: HSTConfig, table: pd.DataFrame) -> tuple[LayerSpec, ...]:
    """The per-layer specs of the layer grid ``table`` applied over ``base``'s own layer specs.

    Row i starts from ``base.layers[i]`` (rows the grid added copy the last one), so the fields
    the grid does not edit (``attn_block``, ``experts``, ``mask_policy``) keep a loaded run's values.

    Example:
        >>> base = HSTConfig.from_preset("tiny", num_steps=4).with_layer(1, attention="statten", attn_block=2)
        >>> [s.attn_block for s in layer_specs(base, layers_frame(base))]
        [None, 2]
    """
    own = base.layers
    specs = []
    for i, (_, row) in enumerate(table.iterrows()):
        source = own[min(i, len(own) - 1)] if own else LayerSpec()
        specs.append(dataclasses.replace(source, **{c: table_cell(c, row[c]) for c in LAYER_COLUMNS}))
    return tuple(specs)


def table_cell(column: str, value: Any) -> Any:
    """A table cell as the config stores it (numpy scalars -> Python numbers and bools)."""
    if column == "tim":
        return bool(value)
    if column == "mask_ratio":
        return float(value)
    return value.item() if hasattr(value, "item") else value


def checkpoint_file(run_dir: str | Path, folders: RunFolders | None = None) -> Path:
    """The checkpoint ``load_run`` reads: the run's best checkpoint
    (:func:`hstlab.train.checkpoint.run_checkpoint`), or ``run_dir`` itself if it is a checkpoint file.

    With ``folders`` (a served explorer) only paths inside them are looked at (see
    :class:`hstlab.ui.runs.RunFolders`). Raises ``ValueError`` naming the path and what a run
    directory holds.
    """
    from hstlab.train.checkpoint import CHECKPOINT_SUFFIX, LEGACY_SUFFIX, run_checkpoint

    text = str(run_dir).strip()
    if not text:
        raise ValueError(f"run_dir={text!r} is empty: {RUN_HINT}; {RUN_HOLDS}")
    path = folders.resolve(text) if folders is not None else Path(text).expanduser()
    if path.is_file():
        if path.suffix not in (CHECKPOINT_SUFFIX, LEGACY_SUFFIX):
            raise ValueError(f"run_dir={shown(text)} is a file, not a run directory or a "
                             f"{CHECKPOINT_SUFFIX} checkpoint; {RUN_HOLDS}")  # fmt: skip
        return path
    if not path.exists():
        raise ValueError(f"run_dir={shown(text)} does not exist: {RUN_HINT}; {RUN_HOLDS}")
    best = run_checkpoint(path)
    if not best.is_file() or (folders is not None and not folders.readable_path(best)):
        raise ValueError(f"run_dir={shown(text)} holds no {best.name}: {RUN_HINT}; {RUN_HOLDS}")
    return best


def read_trained(path: Path) -> tuple[torch.nn.Module, HSTConfig, dict[str, Any]]:
    """The model, config and meta of checkpoint ``path`` (as ``hstlab.train.load_checkpoint``).

    The stored config is checked against the explorer's size limits before anything is built.
    Any failure becomes a ``ValueError`` that names the file and the kind of failure but never
    repeats what the file holds.
    """
    from hstlab.model import build_model
    from hstlab.train.checkpoint import NotACheckpoint, read_checkpoint

    where = str(path)
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{where!r} is larger than the explorer loads "
                         f"({MAX_CHECKPOINT_BYTES >> 20} MiB): {RUN_HINT}")  # fmt: skip
    try:
        ckpt = read_checkpoint(path)  # safetensors; a legacy .pt only with weights_only=True
    except NotACheckpoint:
        raise ValueError(f"{where!r} is not an hstlab checkpoint: {RUN_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files fail in many ways
        raise ValueError(
            f"{where!r} could not be loaded as an hstlab checkpoint ({type(exc).__name__}); "
            f"expected the best checkpoint of a run: {RUN_HINT}; {RUN_HOLDS}"
        ) from None
    config, meta = ckpt.get("config"), ckpt.get("meta")
    if not isinstance(config, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"{where!r} is not an hstlab checkpoint: it has no config and weights")
    check_config_values(config)
    cfg = HSTConfig.from_dict(config)
    with _RNG_LOCK:
        model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"{where!r} holds weights that do not fit its own config ({type(exc).__name__}): "
            f"{RUN_HINT}"
        ) from None
    return model.eval(), cfg, meta if isinstance(meta, dict) else {}


def weights_text(path: Path, meta: dict[str, Any]) -> str:
    """``'trained: runs/x (val accuracy 0.97)'``: metrics.json of the run, else the checkpoint's meta."""
    from hstlab.train.checkpoint import run_checkpoint

    folder = path.parent if path == run_checkpoint(path.parent) else path
    metrics: dict[str, Any] = {}
    try:
        metrics = json.loads((path.parent / "metrics.json").read_text())
    except (OSError, ValueError):
        pass
    accuracy = metrics.get("val_accuracy") if isinstance(metrics, dict) else None
    if accuracy is None:
        accuracy = meta.get("val_accuracy")
    suffix = f" (val accuracy {accuracy:.3g})" if isinstance(accuracy, (int, float)) else ""
    return f"trained: {folder}{suffix}"


def same_model(a: HSTConfig, b: HSTConfig) -> bool:
    """True when ``a`` and ``b`` describe the same model, however the per-layer fields are spelled.

    Example:
        >>> cfg = HSTConfig.from_preset("tiny")
        >>> same_model(cfg, cfg.with_modes("SS")), cfg == cfg.with_modes("SS")
        (True, False)
    """

    def strip(cfg: HSTConfig) -> HSTConfig:
        return dataclasses.replace(cfg, layers=())

    return strip(a) == strip(b) and a.resolved_layers() == b.resolved_layers()


def memory_move(before: Any, after: Any) -> str:
    """The note shown when a change moved the weights to another memory level ('' otherwise)."""
    if before is None or after is None or before.memory_level == after.memory_level:
        return ""
    return (f"weights now take {after.weight_bytes / 1024:,.1f} KiB: memory moved from "
            f"{before.memory_level} to {after.memory_level}, which changes the price of "
            "every weight, membrane and activation access")


def rejection_text(exc: Exception) -> str:
    """How the explorer words a refused change: a ``ValueError``'s message as it is (the library and
    :mod:`hstlab.ui.limits` name the field), anything else prefixed with its type."""
    message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    return message or type(exc).__name__


def _seeded_build(build_model: Any, cfg: HSTConfig) -> torch.nn.Module:
    """The same config always gives the same weights (and the global RNG is left as it was).

    Sessions build in parallel threads; the lock keeps their seeding from interleaving.
    """
    with _RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(cfg).eval()


@dataclass
class Inspection:
    """One recorded forward pass on :attr:`sample` (batch of one); dicts as ``Recorder`` gives."""

    sample: Sample
    spikes: dict[str, torch.Tensor]  # name -> [T, 1, ...]
    membranes: dict[str, torch.Tensor]
    thresholds: dict[str, Any]
    attention: dict[str, torch.Tensor]  # name -> [T, 1, H, N, N]
    logits: torch.Tensor  # [1, classes]


class ExplorerState(param.Parameterized):
    """Config fields as params; every change rebuilds the model (or sets :attr:`error`).

    An invalid combination sets ``error`` to the library's message (it names the field) and
    keeps the last valid ``cfg`` / ``model``. A change publishes the config, model and parameter
    count first; BatchNorm calibration, :attr:`energy`, :attr:`inspection` and :attr:`variants`
    follow (:mod:`hstlab.ui.measure`). With ``deferred=True`` (the served app) they are measured
    in a background thread: the change answers at once, :attr:`stale` names the results still
    shown for an earlier model and :attr:`busy` is set until the job ends; a newer change cancels
    it. With ``deferred=False`` (scripts, notebooks) every change returns measured.

    Example:
        >>> state = ExplorerState(preset="tiny")
        >>> before = state.n_params
        >>> state.set_layer(0, "attn_mode", "standard")
        >>> state.cfg.modes, state.n_params != before
        ('HS', True)
        >>> state.n_head = 5
        >>> state.error.startswith("n_embd=32 is not divisible by n_head=5")
        True
    """

    preset = param.Selector(
        default="hst-small", objects=list_presets(), doc="named starting config"
    )
    n_layer = param.Integer(default=2, label="depth", doc="number of blocks")
    n_embd = param.Integer(default=64, label="width", doc="embedding width D")
    n_head = param.Integer(default=4, label="heads")
    num_steps = param.Integer(default=4, label="T (time steps)")
    tokenizer_mode = param.Selector(
        default=None, objects={STEM_FOLLOWS: None, "spiking": "spiking", "standard": "standard"},
        allow_None=True, label="stem mode",
        doc="the tokenizer's mode: spiking or standard, or following layer 0's attention mode",
    )
    tokenizer = param.Selector(default="sps", objects=list(TOKENIZERS))
    pos_encoding = param.Selector(
        default="cpg", objects=list(POS_ENCODINGS), label="positional encoding"
    )
    neuron = param.Selector(default="lif", objects=list(NEURONS))
    surrogate = param.Selector(default="atan", objects=list(SURROGATES))
    weight_bits = param.Selector(default=32, objects=list(ALLOWED_BITS), label="weight bits")
    membrane_bits = param.Selector(default=32, objects=list(ALLOWED_MEMBRANE_BITS), label="membrane bits")
    layers = param.DataFrame(default=None, columns=set(LAYER_COLUMNS), doc="per-layer toggles")
    pretrained = param.Selector(
        default=NO_PRETRAINED, objects=[NO_PRETRAINED], label="trained model",
        doc="a model of the zoo (hstlab.list_pretrained) with its trained weights",
    )

    dataset = param.Selector(
        default="digits-dvs", objects=["digits-dvs"], doc="event dataset for inputs"
    )
    sample_index = param.Integer(default=0, bounds=(0, None), label="sample")
    dataflow = param.Selector(
        default="step-major", objects=list(DATAFLOWS), label="memory dataflow",
        doc=f"energy: {DATAFLOW_HELP}",
    )

    # results (set by rebuild, read by the views)
    cfg = param.ClassSelector(class_=HSTConfig, default=None, doc="last valid config")
    model = param.ClassSelector(
        class_=torch.nn.Module, default=None, doc="model of cfg (eval mode)"
    )
    n_params = param.Integer(default=0, doc="parameters of model")
    energy = param.Parameter(default=None, doc="EnergyReport of model on sample (batch 1)")
    sample = param.ClassSelector(class_=Sample, default=None)
    inspection = param.ClassSelector(class_=Inspection, default=None, doc="None while not live")
    variants = param.Dict(
        default=None, doc="energy_variants() of the model, measured while live_comparison (else None)"
    )
    live_inspection = param.Boolean(
        default=True,
        doc="record spikes/attention on every rebuild (the app sets it while Inspect is shown)",
    )
    live_comparison = param.Boolean(
        default=False,
        doc="measure the variants on every rebuild (the app sets it while Energy is shown)",
    )
    deferred = param.Boolean(
        default=False,
        doc="answer a change with config, model and size at once and measure the rest in a "
            "background thread (the served app); False: a change returns measured",
    )
    stale = param.List(
        default=[], item_type=str,
        doc="results still shown for an earlier model: 'energy', 'inspection', 'comparison'",
    )
    busy = param.Boolean(default=False, doc="a job is measuring the shown model")
    measure_seconds = param.Number(
        default=0.0, doc="wall time from the last change until all it shows was measured"
    )
    error = param.String(default="", doc="why the last change was rejected ('' when valid)")
    weights = param.String(default=UNTRAINED, doc="where the model's weights come from")
    build_seconds = param.Number(default=0.0, doc="wall time of the last rebuild")
    memory_note = param.String(default="", doc="set when the last change moved the model across a memory level")

    # runs a job's publishing in the order of its session's browser events (the served app sets
    # it, see hstlab.ui.pool.ordered_publisher); None: the job publishes from its own thread
    publisher: Callable[[Callable[[], Any]], Future] | None = None
    _quiet_thread: int | None = None  # the thread setting fields to show a config (no rebuild)
    _base: HSTConfig | None = None  # a loaded run's config: fields edit it instead of the preset
    _trained = False  # the model holds trained weights (keep its BatchNorm statistics)
    _run_dir: Path | None = None  # folder of the loaded checkpoint

    def __init__(self, runs: RunFolders | None = None, **params: Any) -> None:
        """``runs``: the folders ``load_run`` may read (a served app passes its session's); None
        reads any path (scripts, notebooks)."""
        self._lock = threading.RLock()  # one change at a time (Panel runs events in threads)
        self._pending: dict[str, Callable[[], Any]] = {}  # work left for the thread holding it
        self._pending_guard = threading.Lock()  # guards _pending itself (held only for a dict operation)
        self._generation = 0  # counts the models shown (a new sample counts as a new one)
        self._done: dict[str, int] = {}  # measuring step -> generation it was done for
        self._failed = -1  # generation whose measuring failed (not retried)
        self._job: Job | None = None  # the job measuring the shown model
        self._idle = threading.Condition()  # notified when a step is published or busy turns False
        self._changed_at = 0.0  # perf_counter of the change being measured
        self.runs = runs
        datasets = vision_datasets()
        super().__init__(**{k: v for k, v in params.items() if k in INIT_PARAMS})
        self.param.dataset.objects = datasets or ["digits-dvs"]
        self.param.pretrained.objects = [NO_PRETRAINED, *frame_pretrained()]
        self.samples = SampleSource()
        start = params.pop("pretrained", NO_PRETRAINED)
        if start == NO_PRETRAINED or not self.load_pretrained(start):
            self._load_preset()  # also the fallback when the zoo model cannot be shown
        overrides = {k: v for k, v in params.items() if k not in INIT_PARAMS}
        if overrides:
            self.param.update(**overrides)

    # ------------------------------------------------------------------ config
    @param.depends("preset", watch=True)
    def _load_preset(self) -> None:
        """Copy the preset's fields into the params (one rebuild, not one per field)."""
        if self._quiet:
            return
        with self._exclusive():
            self._base = None
            self._show_config(HSTConfig.from_preset(self.preset))
            self._rebuild()

    def _show_config(self, cfg: HSTConfig, preset: str | None = None, dataset: str | None = None) -> None:
        """Set the fields (and ``preset`` / ``dataset`` if given) to ``cfg`` without rebuilding.

        Watchers still run, so widgets follow; ``_quiet`` keeps the field watchers from rebuilding.
        """
        values: dict[str, Any] = {f: getattr(cfg, f) for f in GLOBAL_FIELDS}
        if preset is not None:
            values["preset"] = preset
        if dataset is not None:
            values["dataset"] = dataset
        self._quiet_thread = threading.get_ident()
        try:
            self.param.update(**values, layers=layers_frame(cfg))
        finally:
            self._quiet_thread = None

    @property
    def _quiet(self) -> bool:
        """True in the thread that is setting fields to show a config (its watchers do nothing)."""
        return self._quiet_thread == threading.get_ident()

    def make_config(self) -> HSTConfig:
        """The preset (or the loaded run's config) with the global fields and the per-layer table
        applied (validated).

        Raises ``ValueError`` naming the offending field.
        """
        base = self._base or HSTConfig.from_preset(self.preset)
        table = self.layers if self.layers is not None else layers_frame(base)
        return dataclasses.replace(
            base, **{f: getattr(self, f) for f in GLOBAL_FIELDS}, layers=layer_specs(base, table)
        )

    def set_layer(self, index: int, column: str, value: Any) -> None:
        """Set one cell of the per-layer table (rebuilds the model)."""
        if column not in LAYER_COLUMNS:
            raise ValueError(
                f"column={column!r} is not allowed; allowed: {', '.join(LAYER_COLUMNS)}"
            )
        if not 0 <= index < len(self.layers):
            raise ValueError(f"layer index={index} out of range for {len(self.layers)} layers")
        table = self.layers.copy()
        table[column] = table[column].astype(object)
        table.at[index, column] = value
        self.layers = table

    def _fit_table(self) -> bool:
        """Grow or shrink the per-layer table to ``n_layer`` rows (new rows copy the last one).

        Returns True when the table changed (its own event then triggers the rebuild).
        """
        n, table = self.n_layer, self.layers
        if not isinstance(n, int) or n < 1 or table is None or len(table) == n:
            return False
        if len(table) > n:
            table = table.iloc[:n].reset_index(drop=True)
        else:
            extra = pd.DataFrame(
                [table.iloc[-1].to_dict()] * (n - len(table)), columns=table.columns
            )
            table = pd.concat([table, extra], ignore_index=True)
        self.layers = table
        return True

    # ------------------------------------------------------------------ one change at a time
    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold this state (blocking), then run the work other threads left meanwhile."""
        with self._lock:
            yield
        self._drain()

    def _coalesce(self, key: str, work: Callable[[], Any]) -> None:
        """Run ``work`` now, or, while another thread works on this state, leave it to that
        thread: a flood of events from one tab never parks the server's worker threads (and a
        burst of edits costs one rebuild with the latest values, not one per edit)."""
        with self._pending_guard:
            self._pending[key] = work
        self._drain()

    def _take_pending(self) -> Callable[[], Any] | None:
        """The oldest work left by other threads, removed from the queue (None when empty)."""
        with self._pending_guard:
            key = next(iter(self._pending), None)
            return self._pending.pop(key) if key is not None else None

    def _drain(self) -> None:
        while self._pending:
            if not self._lock.acquire(blocking=False):
                return  # the holder drains after it releases
            try:
                work = self._take_pending()
                if work is not None:
                    work()
            finally:
                self._lock.release()

    @param.depends(*GLOBAL_FIELDS, "layers", watch=True)
    def _on_field(self) -> None:
        if not self._quiet:
            self._coalesce("fields", self._apply_fields)

    def _apply_fields(self) -> None:
        try:  # before the table grows to a huge n_layer
            check_config_values({f: getattr(self, f) for f in GLOBAL_FIELDS})
        except ValueError as exc:
            self._reject(exc)
            return
        if not self._fit_table():
            self._rebuild()

    def set_field(self, name: str, value: Any) -> bool:
        """Set Build field ``name`` (a parsed widget value); returns whether the model was accepted.

        Setting the value it already has rebuilds when an error is shown, so a field typed back
        to a good value clears a message left by bad text.
        """
        if name not in GLOBAL_FIELDS:
            return self.reject(ValueError(f"{name!r} is not a Build field; fields: {GLOBAL_FIELDS}"))
        if name in LIMITS:  # checked before the field changes: the field keeps a valid value
            try:
                check_value(name, value)
            except ValueError as exc:
                return self.reject(exc)
        if getattr(self, name) == value:
            if self.error:
                self._coalesce("fields", self._apply_fields)
            return not self.error
        try:
            setattr(self, name, value)
        except Exception as exc:  # noqa: BLE001 - param refuses the type: show it
            return self.reject(exc)
        return not self.error

    # ------------------------------------------------------------------ model
    def rebuild(self) -> bool:
        """Validate, build, count, cost and record; on failure set ``error`` and keep the old model.

        Returns True when the new config was accepted.
        """
        with self._exclusive():
            return self._rebuild()

    def _rebuild(self) -> bool:
        t0 = time.perf_counter()
        try:
            check_config_values({f: getattr(self, f) for f in GLOBAL_FIELDS}
                                | {"layers": self.layers if self.layers is not None else ()})
            cfg = self.make_config()
            from hstlab.model import build_model

            self._stop_job()  # before the seeded build: the job's RNG forks must not interleave
            model = _seeded_build(build_model, cfg)
            sample = self.samples.sample(cfg, self.dataset, self.sample_index)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the inline message
            return self._reject(exc)
        self._trained, self._run_dir = False, None
        self._show_pretrained(NO_PRETRAINED)
        return self._accept(cfg, model, sample, UNTRAINED, t0, calibrated=False)

    # ------------------------------------------------------------------ zoo models
    def _show_pretrained(self, name: str) -> None:
        """Set the selector without loading (its watcher does nothing in this thread)."""
        if self.pretrained == name:
            return
        self._quiet_thread = threading.get_ident()
        try:
            self.pretrained = name
        finally:
            self._quiet_thread = None

    @param.depends("pretrained", watch=True)
    def _on_pretrained(self) -> None:
        if self._quiet:
            return
        name = self.pretrained
        if name == NO_PRETRAINED:
            self._coalesce("fields", self._apply_fields)  # an untrained build of the shown fields
        else:
            self._coalesce("pretrained", lambda: self._load_pretrained(name))

    def load_pretrained(self, name: str) -> bool:
        """Show zoo entry ``name`` with its trained weights (see :func:`hstlab.load_pretrained`).

        The fields show its config (editing one builds an untrained model, as after Load run) and
        :attr:`weights` names the entry and its recorded test accuracy. On failure ``error`` says
        why, the old model is kept and False is returned.

        Example:
            >>> state = ExplorerState(preset="tiny")
            >>> state.load_pretrained("hst-small-digits-dvs"), state.cfg.modes
            (True, 'SS')
            >>> state.weights
            'pretrained: hst-small-digits-dvs (test accuracy 98.9 %)'
        """
        with self._exclusive():
            return self._load_pretrained(name)

    def _load_pretrained(self, name: str) -> bool:
        from hstlab.zoo import load_pretrained

        t0 = time.perf_counter()
        self._stop_job()  # loading builds a model: no RNG fork of a job in between
        try:
            if name not in self.param.pretrained.objects[1:]:
                raise ValueError(f"trained model {name!r} is not one the explorer can show; "
                                 f"allowed: {', '.join(self.param.pretrained.objects[1:])}")
            with _RNG_LOCK:
                model = load_pretrained(name)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the inline message
            return self._reject(exc)
        record = model.zoo_record
        dataset = record.dataset if record.dataset in self.param.dataset.objects else self.dataset
        return self._show_trained(model, model.cfg, dataset, Path(record.weights_file),
                                  pretrained_text(record), None, name, t0)

    def load_run(self, run_dir: str | Path) -> bool:
        """Show a trained model: the best checkpoint of ``run_dir`` (or a checkpoint file), BatchNorm
        as trained.

        The fields show the run's config (editing one builds an untrained model again) and
        :attr:`weights` names the run. On failure ``error`` says why, the old model is kept and
        False is returned.

        Example:
            >>> state = ExplorerState(preset="hst-small")
            >>> state.load_run("runs/hst-small-digits-dvs-s0-20250101-000000")  # doctest: +SKIP
            True
            >>> state.weights  # doctest: +SKIP
            'trained: runs/hst-small-digits-dvs-s0-20250101-000000 (val accuracy 0.97)'
        """
        with self._exclusive():
            return self._load_run(run_dir)

    def _load_run(self, run_dir: str | Path) -> bool:
        t0 = time.perf_counter()
        self._stop_job()  # loading builds a model: no RNG fork of a job in between
        try:
            path = checkpoint_file(run_dir, self.runs)
            model, cfg, meta = read_trained(path)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the inline message
            return self._reject(exc)
        return self._show_trained(model, cfg, self._run_dataset(path), path, weights_text(path, meta),
                                  path.parent, NO_PRETRAINED, t0)

    def _show_trained(self, model: torch.nn.Module, cfg: HSTConfig, dataset: str, where: Path,
                      weights: str, run_dir: Path | None, pretrained: str, t0: float) -> bool:
        """Show a model that holds trained weights (a run's or the zoo's) with its config (its
        measuring follows); ``where`` names its file in messages, ``run_dir`` is its run (None
        for the zoo)."""
        try:
            self._check_fits(cfg, where, dataset)
            sample = self.samples.sample(cfg, dataset, self.sample_index)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the inline message
            return self._reject(exc)
        preset = cfg.name if cfg.name in self.param.preset.objects else None
        self._show_config(cfg, preset, dataset)
        self._show_pretrained(pretrained)
        self._base, self._trained, self._run_dir = cfg, True, run_dir
        return self._accept(cfg, model, sample, weights, t0, calibrated=True)  # trained BatchNorm

    def _reject(self, exc: Exception) -> bool:
        """Show why a change failed (``ValueError`` messages as they are) and keep the old model.

        The one place a refused change of this state ends up (fields, typed text, Load run). A
        job the change had stopped resumes measuring the kept model.
        """
        self.error = rejection_text(exc)
        self._ensure_job()
        return False

    def reject(self, exc: Exception) -> bool:
        """Refuse a change the views could not even parse (e.g. ``'abc'`` typed as a width)."""
        with self._exclusive():
            return self._reject(exc)

    def _accept(self, cfg: HSTConfig, model: torch.nn.Module, sample: Sample, weights: str,
                t0: float, calibrated: bool) -> bool:
        """Publish an accepted model at once (one param event batch) and start measuring it.

        ``calibrated``: its BatchNorm statistics stay as they are (trained weights). The results
        of the model it replaces stay shown, listed in :attr:`stale`, until they are measured
        again; an Inspect recording or comparison that is not live is dropped.
        """
        self._stop_job()
        self._generation += 1
        self._done = {"calibrate": self._generation} if calibrated else {}
        self._changed_at = t0
        dropped = {"inspection": None} if not self.live_inspection else {}
        if not self.live_comparison:
            dropped["variants"] = None
        self.param.update(
            **dropped,
            memory_note="",
            cfg=cfg,
            model=model,
            n_params=sum(p.numel() for p in model.parameters()),
            sample=sample,
            weights=weights,
            error="",
            build_seconds=time.perf_counter() - t0,
            stale=self._missing(),
        )
        self._ensure_job()
        return True

    # ------------------------------------------------------------------ measuring (hstlab.ui.measure)
    def _missing(self) -> list[str]:
        """The shown results not yet measured for the shown model (in measuring order)."""
        wanted = {"energy": True, "inspection": self.live_inspection,
                  "comparison": self.live_comparison}
        return [s for s in SHOWN if wanted[s] and self._done.get(s) != self._generation]

    def _next_step(self) -> str | None:
        if self._done.get("calibrate") != self._generation:
            return "calibrate"
        missing = self._missing()
        return missing[0] if missing else None

    def _ensure_job(self) -> None:
        """Start measuring what the shown model lacks, unless a job of it already runs (it picks
        up what became wanted meanwhile) or its measuring failed. Called holding the lock."""
        self.stale = self._missing()
        job = self._job
        if job is not None and job.generation == self._generation and not job.cancelled.is_set():
            return
        if self.model is None or self._next_step() is None or self._failed == self._generation:
            self._set_busy(False)
            return
        self._job = Job(self._generation, started=self._changed_at)
        self._set_busy(True)
        if self.deferred:
            self._job.start(self._run_job)
        else:
            self._run_job(self._job)  # inline: the caller gets the measured model

    def _stop_job(self) -> None:
        """Cancel the running job and wait for its thread to leave (holding the lock: the job
        never waits for it once cancelled)."""
        if self._job is not None:
            self._job.stop()
            self._job = None

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        if not busy:
            with self._idle:
                self._idle.notify_all()

    @contextmanager
    def _holding(self, job: Job) -> Iterator[bool]:
        """The state's lock for ``job``: yields False (without the lock) once the job is cancelled
        or replaced, so that a change holding the lock while it stops the job never waits on it."""
        while not self._lock.acquire(timeout=0.05):
            if job.cancelled.is_set():
                yield False
                return
        try:
            yield not job.cancelled.is_set() and job.generation == self._generation
        finally:
            self._lock.release()
        if self.deferred:
            self._drain()  # a change left while this job held the lock runs now, not after the job

    def _run_job(self, job: Job) -> None:
        """Measure the missing steps of ``job.generation`` one by one, publishing each result."""
        try:
            while True:
                with self._holding(job) as current:
                    if not current:
                        return
                    step = self._next_step()
                    inputs = (self.cfg, self.model, self.sample, self.energy, self._trained, self.dataflow)
                if step is None:
                    if self._hand_over(job, lambda: self._finish(job)) is not False:
                        return  # finished, or replaced
                    continue  # a view asked for more meanwhile
                try:
                    result = self._measure(step, *inputs, job.cancelled)
                except Superseded:
                    return
                except Exception as exc:  # noqa: BLE001 - any failure becomes the inline message
                    self._hand_over(job, lambda step=step, exc=exc: self._fail(job, step, exc))
                    return
                if step == "calibrate":  # nothing shown: booked here (model_copy waits for it)
                    with self._holding(job) as current:
                        if current:
                            self._done[step] = job.generation
                    with self._idle:
                        self._idle.notify_all()
                elif self._hand_over(job, lambda step=step, result=result: self._publish(step, result)) is None:
                    return
        finally:
            with self._idle:  # a job that stopped early: let settle() look again
                self._idle.notify_all()

    def _hand_over(self, job: Job, work: Callable[[], Any]) -> Any:
        """``work()`` holding the lock while ``job`` is current (None once it is not).

        With a :attr:`publisher` (a served session) the work runs in that session's event order,
        so that no view is redrawn by this job and by a browser event at once; the job waits for
        it, but stops waiting once a newer change cancels it.
        """
        def locked() -> Any:
            with self._holding(job) as current:
                return work() if current else None

        if self.publisher is None or self._job is not job or job.thread is None:
            return locked()
        future = self.publisher(locked)
        while True:
            try:
                return future.result(timeout=0.05)
            except FutureTimeout:
                if job.cancelled.is_set():
                    return None

    def _finish(self, job: Job) -> bool:
        """End ``job`` when nothing is missing (True); False when a view asked for more meanwhile."""
        if self._next_step() is not None:
            return False
        self._job = None
        self.measure_seconds = time.perf_counter() - job.started
        self._set_busy(False)
        return True

    def _fail(self, job: Job, step: str, exc: Exception) -> bool:
        """The shown model stays, its earlier results stay marked stale, the message says why."""
        self._failed, self._job = job.generation, None
        self.error = (f"The model is shown, but measuring its {step} failed "
                      f"({', '.join(self._missing())} not updated): {rejection_text(exc)}")
        self._set_busy(False)
        return True

    def _measure(self, step: str, cfg: HSTConfig, model: torch.nn.Module, sample: Sample,
                 energy: Any, trained: bool, dataflow: str, cancelled: threading.Event) -> Any:
        """One step's result (no state is changed; runs without the lock)."""
        with cancellable(model, cancelled):
            if step == "calibrate":
                return calibrate_batchnorm(model, sample.x)  # untrained: real statistics
            if step == "energy":
                return self._energy(model, sample, dataflow)
            if step == "inspection":
                return self._inspect(model, sample)
        return self._measure_variants(cfg, model, sample, energy, trained, dataflow, cancelled)

    def _publish(self, step: str, result: Any) -> bool:
        """Show one step's result for the shown model (called holding the lock)."""
        self._done[step] = self._generation
        values: dict[str, Any] = {}
        if step == "energy":
            if result.dataflow != self.dataflow:  # the dataflow changed while it was measured
                result = result.with_dataflow(self.dataflow)
            values = {"energy": result, "memory_note": memory_move(self.energy, result)}
        elif step == "inspection":
            values = {"inspection": result}
        elif step == "comparison":
            values = {"variants": {k: r if r.dataflow == self.dataflow else r.with_dataflow(self.dataflow)
                                   for k, r in result.items()}}
        self.param.update(**values, stale=self._missing())
        with self._idle:
            self._idle.notify_all()
        return True

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until the shown model is measured (or its measuring failed); False on timeout.

        Example:
            >>> state = ExplorerState(preset="tiny", deferred=True)
            >>> state.n_layer = 1  # answers at once; the energy follows
            >>> state.settle(60), state.stale, state.energy.total_j > 0
            (True, [], True)
        """
        return self._wait(self._settled, timeout)

    def _settled(self) -> bool:
        """No job runs, no change is left pending or being made (by any thread)."""
        if self.busy or self._pending or not self._lock.acquire(blocking=False):
            return False
        try:
            return not self.busy and not self._pending
        finally:
            self._lock.release()

    def _wait(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``ready()`` (checked whenever a step is published or a job ends, and every
        50 ms for changes other threads make)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while not ready():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(0.05 if left is None else min(0.05, left))
            return True

    @property
    def run_dir(self) -> Path | None:
        """Folder of the loaded run while the model holds its trained weights, else None."""
        return self._run_dir

    def _run_dataset(self, path: Path) -> str:
        """The dataset the run was trained on (its ``run.json``) if the selector offers it, else the
        current one."""
        try:
            name = json.loads((path.parent / "run.json").read_text()).get("dataset")
        except (OSError, ValueError, AttributeError):
            name = None
        return name if name in self.param.dataset.objects else self.dataset

    def _check_fits(self, cfg: HSTConfig, path: Path, dataset: str) -> None:
        """Raise ``ValueError`` when the dataset's frames cannot feed a model of ``cfg``.

        A dataset that is not on disk is no reason to refuse (the sample is then a random input).
        """
        if cfg.tokenizer == "linear":
            raise ValueError(
                f"{str(path)!r} holds a sequence model (tokenizer='linear'); the explorer feeds "
                f"event frames of {dataset}: pick a run trained on {dataset}"
            )
        from hstlab.data import DatasetUnavailable

        try:
            ds = self.samples.dataset(dataset, cfg.input_steps)
            shape = tuple(ds[0][0].shape[1:]) if len(ds) else None
        except (DatasetUnavailable, ValueError, OSError):
            return
        if shape is not None and shape != tuple(cfg.input_shape):
            raise ValueError(
                f"{str(path)!r} holds a model for input_shape {tuple(cfg.input_shape)} but "
                f"{dataset} frames are {shape}: pick a run trained on {dataset}"
            )

    @param.depends("dataset", "sample_index", watch=True)
    def refresh_sample(self) -> None:
        """Re-record the current model on the chosen sample (no rebuild).

        An untrained model's BatchNorm is recalibrated on the new sample; trained weights are kept
        as they are.
        """
        if self.model is None or self._quiet:  # _quiet: load_run sets the dataset with its own sample
            return
        self._coalesce("sample", self._refresh_sample)

    def _refresh_sample(self) -> None:
        t0 = time.perf_counter()
        try:
            sample = self.samples.sample(self.cfg, self.dataset, self.sample_index)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the inline message
            self._reject(exc)
            return
        # the same model on a new sample: measured again (an untrained one calibrated on it)
        self._accept(self.cfg, self.model, sample, self.weights, t0, calibrated=self._trained)

    @param.depends("live_inspection", "live_comparison", watch=True)
    def _on_live(self) -> None:
        """A view that became visible wants its results: measure what the shown model lacks."""
        with self._exclusive():
            self._ensure_job()

    def reload_data(self) -> None:
        """Forget loaded splits (e.g. after building a dataset) and re-record."""
        self.samples.forget()
        self.refresh_sample()

    @param.depends("dataflow", watch=True)
    def _on_dataflow(self) -> None:
        if self.energy is None:
            return
        with self._exclusive():
            try:  # a stale report too: the job reprices the new one when it arrives
                flow = self.dataflow
                variants = self.variants and {k: r.with_dataflow(flow) for k, r in self.variants.items()}
                self.param.update(energy=self.energy.with_dataflow(flow), variants=variants, error="")
            except Exception as exc:  # noqa: BLE001 - any failure becomes the inline message
                self._reject(exc)

    def _energy(self, model: torch.nn.Module, sample: Sample, dataflow: str | None = None) -> Any:
        from hstlab.energy import energy_report

        return energy_report(model, sample.x, dataflow=dataflow or self.dataflow)

    @staticmethod
    def _inspect(model: torch.nn.Module, sample: Sample) -> Inspection:
        from hstlab.recorder import Recorder

        model.reset_state()
        with torch.no_grad(), Recorder(model) as rec:
            logits = model(sample.x)
        model.reset_state()
        return Inspection(sample, rec.spikes, rec.membranes, rec.thresholds, rec.attention, logits)

    def model_copy(self, timeout: float | None = None) -> torch.nn.Module:
        """An independent copy of the current model (for training in the background), once its
        BatchNorm is calibrated (waits for the job that calibrates it)."""
        def calibrated() -> bool:
            return not self.busy or self._done.get("calibrate") == self._generation

        while True:
            self._wait(calibrated, timeout)
            with self._exclusive():
                if self.model is None:
                    raise ValueError("no valid model yet; fix the configuration first")
                calibrated = self._done.get("calibrate") == self._generation
                if calibrated or not self.busy:  # not busy: its measuring failed; copy as it is
                    return copy.deepcopy(self.model)

    # ------------------------------------------------------------------ energy variants
    def zoo_comparison(self) -> dict[str, Inspection]:
        """The current sample through the zoo's trained spiking model and its trained standard
        twin (:data:`ZOO_PAIR`), recorded side by side: ``{"spiking": ..., "standard": ...}``.

        Both models are loaded once per state; each sees the chosen digits-dvs sample at its own
        shape (so this works whatever is built in the Build tab).
        """
        with self._exclusive():
            if not hasattr(self, "_zoo_pair"):
                from hstlab.zoo import load_pretrained

                with _RNG_LOCK:
                    self._zoo_pair = {kind: load_pretrained(name) for kind, name in ZOO_PAIR.items()}
            out = {}
            for kind, model in self._zoo_pair.items():
                sample = self.samples.sample(model.cfg, "digits-dvs", self.sample_index)
                out[kind] = self._inspect(model, sample)
            return out

    def energy_variants(self) -> dict[str, Any]:
        """Energy reports of the current model, its all-spiking and 8-bit variants, and the
        standard, int8 and bit-matched twins of :func:`hstlab.twins.twins` (the same baselines a
        model card uses), all measured on the same input as :attr:`energy`.

        With trained weights the 8-bit variant quantizes them; models that cannot reuse them are
        marked "(untrained)" (a dense twin's energy does not depend on its weights).
        """
        self.settle()
        with self._exclusive():
            if self.variants is not None and self._done.get("comparison") == self._generation:
                return dict(self.variants)
            if self.energy is None or "energy" in self.stale:
                raise ValueError(f"the energy of the shown model is not measured: {self.error}")
            return self._measure_variants(self.cfg, self.model, self.sample, self.energy,
                                          self._trained, self.dataflow)

    def _measure_variants(self, cfg: HSTConfig, model: torch.nn.Module, sample: Sample, energy: Any,
                          trained: bool, dataflow: str,
                          cancelled: threading.Event | None = None) -> dict[str, Any]:
        """The reports of :meth:`energy_variants` for ``model`` (of ``cfg``, measured as ``energy``;
        ``trained``: it holds trained weights). ``cancelled``: stop at the next module call."""
        from hstlab.energy import energy_report
        from hstlab.twins import twins

        reports = {f"current ({cfg.modes}, {cfg.weight_bits}-bit)": energy}
        for name, variant in (("all spiking", cfg.with_modes("S" * cfg.n_layer)),
                              ("current, 8-bit weights", dataclasses.replace(cfg, weight_bits=8))):
            if same_model(variant, cfg):  # the current model itself, measured already
                continue
            variant_model, reused = self._variant_model(variant, cfg, model, sample, trained, cancelled)
            label = name if reused or not trained else f"{name} (untrained)"
            with cancellable(variant_model, cancelled):
                reports[label] = energy_report(variant_model, sample.x, dataflow=dataflow)
        for twin in twins(cfg):
            twin_model, reused = self._variant_model(twin.cfg, cfg, model, sample, trained, cancelled)
            label = twin.name if reused or not trained else f"{twin.name} (untrained)"
            with cancellable(twin_model, cancelled):
                reports[label] = twin.energy_report(twin_model, sample.x, dataflow=dataflow)
        return reports

    @staticmethod
    def _variant_model(variant: HSTConfig, cfg: HSTConfig, model: torch.nn.Module, sample: Sample,
                       trained: bool, cancelled: threading.Event | None = None
                       ) -> tuple[torch.nn.Module, bool]:  # fmt: skip
        """``(model of variant, holds the trained weights)``: the trained weights of ``model`` when
        only the weight bits differ, else a seeded build calibrated on the sample."""
        from hstlab.model import build_model

        built = _seeded_build(build_model, variant)
        if trained and same_model(dataclasses.replace(variant, weight_bits=cfg.weight_bits), cfg):
            built.load_state_dict(model.state_dict())
            return built, True
        with cancellable(built, cancelled):
            calibrate_batchnorm(built, sample.x)
        return built, False

    def summary(self) -> dict[str, Any]:
        """Plain numbers for the summary line and for tests."""
        return {
            "preset": self.preset,
            "modes": self.cfg.modes if self.cfg else None,
            "stem": (f"{self.cfg.stem_mode}" + (f" ({STEM_FOLLOWS})" if self.cfg.tokenizer_mode is None else ""))
            if self.cfg else None,
            "params": self.n_params,
            "energy_j": self.energy.total_j if self.energy is not None else None,
            "memory": f"{self.energy.memory_level}, {self.energy.dataflow}" if self.energy is not None else None,
            "build_seconds": self.build_seconds,
            "measure_seconds": self.measure_seconds,
            "stale": list(self.stale),  # shown for an earlier model (being measured while busy)
            "busy": self.busy,
            "input": self.sample.source if self.sample else None,
            "stages": _stage_lines(self.cfg),
        }
