"""The explorer's GUI-free state: config fields as params, the model, its size, energy and recordings.

Every number comes from the library: ``HSTConfig`` validates, ``build_model`` builds,
``energy_report`` costs, ``Recorder`` looks inside. Views only lay these out.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import param
import torch

from hstlab.config import (
    ALLOWED_BITS,
    ATTENTION_KINDS,
    MODES,
    NEURONS,
    POS_ENCODINGS,
    RESIDUALS,
    SURROGATES,
    TOKENIZERS,
    HSTConfig,
    LayerSpec,
)
from hstlab.layers.norm import calibrate_batchnorm
from hstlab.presets import list_presets
from hstlab.ui.samples import Sample, SampleSource, vision_datasets

GLOBAL_FIELDS = (
    "n_layer",
    "n_embd",
    "n_head",
    "num_steps",
    "tokenizer",
    "pos_encoding",
    "neuron",
    "surrogate",
    "weight_bits",
)
INIT_PARAMS = ("preset", "dataset", "sample_index", "live_inspection")  # set before the first build
LAYER_COLUMNS = ("attn_mode", "mlp_mode", "attention", "tim", "residual", "mask_ratio")
LAYER_CHOICES: dict[str, tuple] = {
    "attn_mode": MODES,
    "mlp_mode": MODES,
    "attention": ATTENTION_KINDS,
    "residual": RESIDUALS,
}


def layers_frame(cfg: HSTConfig) -> pd.DataFrame:
    """The per-layer table of ``cfg``: one row per layer, every override resolved."""
    rows = [{c: getattr(layer, c) for c in LAYER_COLUMNS} for layer in cfg.resolved_layers()]
    return pd.DataFrame(rows, columns=list(LAYER_COLUMNS))


def table_cell(column: str, value: Any) -> Any:
    """A table cell as the config stores it (numpy scalars -> Python numbers and bools)."""
    if column == "tim":
        return bool(value)
    if column == "mask_ratio":
        return float(value)
    return value.item() if hasattr(value, "item") else value


def _seeded_build(build_model: Any, cfg: HSTConfig) -> torch.nn.Module:
    """The same config always gives the same weights (and the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
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
    keeps the last valid ``cfg`` / ``model``.

    Example:
        >>> state = ExplorerState(preset="tiny")
        >>> before = state.n_params
        >>> state.set_layer(0, "attn_mode", "standard")
        >>> state.cfg.modes, state.n_params != before
        ('TS', True)
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
    tokenizer = param.Selector(default="sps", objects=list(TOKENIZERS))
    pos_encoding = param.Selector(
        default="cpg", objects=list(POS_ENCODINGS), label="positional encoding"
    )
    neuron = param.Selector(default="lif", objects=list(NEURONS))
    surrogate = param.Selector(default="atan", objects=list(SURROGATES))
    weight_bits = param.Selector(default=32, objects=list(ALLOWED_BITS), label="weight bits")
    layers = param.DataFrame(default=None, columns=set(LAYER_COLUMNS), doc="per-layer toggles")

    dataset = param.Selector(
        default="digits-dvs", objects=["digits-dvs"], doc="event dataset for inputs"
    )
    sample_index = param.Integer(default=0, bounds=(0, None), label="sample")

    # results (set by rebuild, read by the views)
    cfg = param.ClassSelector(class_=HSTConfig, default=None, doc="last valid config")
    model = param.ClassSelector(
        class_=torch.nn.Module, default=None, doc="model of cfg (eval mode)"
    )
    n_params = param.Integer(default=0, doc="parameters of model")
    energy = param.Parameter(default=None, doc="EnergyReport of model on sample (batch 1)")
    sample = param.ClassSelector(class_=Sample, default=None)
    inspection = param.ClassSelector(class_=Inspection, default=None, doc="None while not live")
    live_inspection = param.Boolean(
        default=True,
        doc="record spikes/attention on every rebuild (the app sets it while Inspect is shown)",
    )
    error = param.String(default="", doc="why the last change was rejected ('' when valid)")
    build_seconds = param.Number(default=0.0, doc="wall time of the last rebuild")

    def __init__(self, **params: Any) -> None:
        datasets = vision_datasets()
        super().__init__(**{k: v for k, v in params.items() if k in INIT_PARAMS})
        self.param.dataset.objects = datasets or ["digits-dvs"]
        self.samples = SampleSource()
        self._load_preset()
        overrides = {k: v for k, v in params.items() if k not in INIT_PARAMS}
        if overrides:
            self.param.update(**overrides)

    # ------------------------------------------------------------------ config
    @param.depends("preset", watch=True)
    def _load_preset(self) -> None:
        """Copy the preset's fields into the params (one rebuild, not one per field)."""
        base = HSTConfig.from_preset(self.preset)
        with param.parameterized.discard_events(self):
            self.param.update(
                **{f: getattr(base, f) for f in GLOBAL_FIELDS}, layers=layers_frame(base)
            )
        self.rebuild()

    def make_config(self) -> HSTConfig:
        """The preset with the global fields and the per-layer table applied (validated).

        Raises ``ValueError`` naming the offending field.
        """
        base = HSTConfig.from_preset(self.preset)
        table = self.layers if self.layers is not None else layers_frame(base)
        specs = tuple(
            LayerSpec(**{c: table_cell(c, row[c]) for c in LAYER_COLUMNS})
            for _, row in table.iterrows()
        )
        return dataclasses.replace(
            base, **{f: getattr(self, f) for f in GLOBAL_FIELDS}, layers=specs
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

    @param.depends(*GLOBAL_FIELDS, "layers", watch=True)
    def _on_field(self) -> None:
        if not self._fit_table():
            self.rebuild()

    # ------------------------------------------------------------------ model
    def rebuild(self) -> bool:
        """Validate, build, count, cost and record; on failure set ``error`` and keep the old model.

        Returns True when the new config was accepted.
        """
        t0 = time.perf_counter()
        try:
            cfg = self.make_config()
            from hstlab.model import build_model

            model = _seeded_build(build_model, cfg)
            sample = self.samples.sample(cfg, self.dataset, self.sample_index)
            calibrate_batchnorm(model, sample.x)  # untrained: normalize with real statistics
            energy = self._energy(model, sample)
            inspection = self._inspect(model, sample) if self.live_inspection else None
        except Exception as exc:  # noqa: BLE001 - any failure becomes the inline message
            message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            self.error = message or type(exc).__name__
            return False
        self.param.update(
            cfg=cfg,
            model=model,
            n_params=sum(p.numel() for p in model.parameters()),
            sample=sample,
            energy=energy,
            inspection=inspection,
            error="",
            build_seconds=time.perf_counter() - t0,
        )
        return True

    @param.depends("dataset", "sample_index", watch=True)
    def refresh_sample(self) -> None:
        """Re-record the current model on the chosen sample (no rebuild)."""
        if self.model is None:
            return
        try:
            sample = self.samples.sample(self.cfg, self.dataset, self.sample_index)
            calibrate_batchnorm(self.model, sample.x)
            energy = self._energy(self.model, sample)
            inspection = self._inspect(self.model, sample) if self.live_inspection else None
        except Exception as exc:  # noqa: BLE001
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.param.update(sample=sample, energy=energy, inspection=inspection, error="")

    @param.depends("live_inspection", watch=True)
    def _on_live(self) -> None:
        if self.live_inspection and self.inspection is None and self.model is not None:
            self.inspection = self._inspect(self.model, self.sample)

    def reload_data(self) -> None:
        """Forget loaded splits (e.g. after building a dataset) and re-record."""
        self.samples.forget()
        self.refresh_sample()

    @staticmethod
    def _energy(model: torch.nn.Module, sample: Sample) -> Any:
        from hstlab.energy import energy_report

        return energy_report(model, sample.x)

    @staticmethod
    def _inspect(model: torch.nn.Module, sample: Sample) -> Inspection:
        from hstlab.recorder import Recorder

        model.reset_state()
        with torch.no_grad(), Recorder(model) as rec:
            logits = model(sample.x)
        model.reset_state()
        return Inspection(sample, rec.spikes, rec.membranes, rec.thresholds, rec.attention, logits)

    def model_copy(self) -> torch.nn.Module:
        """An independent copy of the current model (for training in the background)."""
        if self.model is None:
            raise ValueError("no valid model yet; fix the configuration first")
        return copy.deepcopy(self.model)

    # ------------------------------------------------------------------ energy variants
    def energy_variants(self) -> dict[str, Any]:
        """Energy reports of the current model and its spiking / standard / int8 variants.

        Each variant is built from the current config (``with_modes`` / ``weight_bits=8``) and
        measured on the same input as :attr:`energy`.
        """
        from hstlab.model import build_model

        cfg = self.cfg
        variants = {
            f"current ({cfg.modes}, {cfg.weight_bits}-bit)": cfg,
            "all spiking": cfg.with_modes("S" * cfg.n_layer),
            "all standard": cfg.with_modes("T" * cfg.n_layer),
            "current, 8-bit weights": dataclasses.replace(cfg, weight_bits=8),
        }
        reports = {}
        for name, variant in variants.items():
            if variant == cfg:  # the current model itself, measured already (or a duplicate)
                if not reports:
                    reports[name] = self.energy
                continue
            variant_model = _seeded_build(build_model, variant)
            calibrate_batchnorm(variant_model, self.sample.x)
            reports[name] = self._energy(variant_model, self.sample)
        return reports

    def summary(self) -> dict[str, Any]:
        """Plain numbers for the summary line and for tests."""
        return {
            "preset": self.preset,
            "modes": self.cfg.modes if self.cfg else None,
            "params": self.n_params,
            "energy_j": self.energy.total_j if self.energy is not None else None,
            "build_seconds": self.build_seconds,
            "input": self.sample.source if self.sample else None,
        }
