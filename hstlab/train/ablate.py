"""Cumulative ablation: a plain spiking transformer, then one enhanced component added at a time.

Every variant trains through :func:`hstlab.train.run.train_run` with the same seed and the same
:class:`~hstlab.train.config.TrainConfig`; the table holds accuracy and energy per sample of
each. The runner returns data and draws nothing: ``hstlab.viz.ablation_waterfall`` (and
``hstlab.viz.save_ablation_waterfall`` for an offline HTML page) show what each step changed.

The baseline is the base preset with the components switched off: ``pos_encoding="none"``,
``tim=False``, ``residual="add"``, ``mask_ratio=0`` (per-layer overrides of those fields
cleared). Steps are registered in :data:`ABLATION_STEPS`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hstlab.config import HSTConfig, LayerSpec
from hstlab.registry import Registry
from hstlab.train.config import TrainConfig

DEFAULT_STEPS = ("+cpg", "+tim", "+sew", "+rsm")
DEFAULT_EPOCHS = 3  # an ablation's budget per variant unless its TrainConfig says otherwise
BASELINE_FIELDS: dict[str, Any] = {"pos_encoding": "none", "tim": False, "residual": "add", "mask_ratio": 0.0}
ABLATION_STEPS: Registry[dict[str, Any]] = Registry("ablation step")
for _name, _fields in (
    ("+cpg", {"pos_encoding": "cpg"}),  # CPG positional encoding
    ("+tim", {"tim": True}),  # temporal interaction module
    ("+sew", {"residual": "sew_add"}),  # spike-element-wise residual
    ("+rsm", {"mask_ratio": 0.25, "mask_policy": "random"}),  # random spike masking
    ("+sdsa", {"attention": "sdsa"}),  # spike-driven self-attention
    ("+conv", {"attention": "conv"}),  # convolutional self-attention
    ("+plif", {"neuron": "plif"}),  # parametric LIF (learned tau)
    ("+int8", {"weight_bits": 8}),  # 8-bit weights
    ("+statten", {"attention": "statten"}),  # STAtten: attention over blocks of attn_block steps
    ("+emsa", {"attention": "emsa"}),  # SEMM: head-wise spiking experts in attention
    ("+emsp", {"mlp_kind": "emsp"}),  # SEMM: channel-wise spiking experts in the MLP
    ("+bipolar", {"attention": "bipolar", "tim": False}),  # ternary Q/K with Shiftmax (TIM would binarise Q)
    ("+lateral", {"attention": "lateral"}),  # SpiLiFormer lateral inhibition
):
    ABLATION_STEPS.register(_name)(_fields)

COLUMNS = ("step", "variant", "change", "note", "status", "accuracy", "energy_j", "val_accuracy", "test_accuracy",
           "val_firing_rate", "test_firing_rate", "delta_accuracy", "delta_energy_j", "energy_vs_baseline",
           "pos_encoding", "tim", "residual", "mask_ratio", "mask_in_eval", "attention", "mlp_kind", "neuron",
           "weight_bits", "modes", "seed", "epochs", "limit", "steps_trained", "train_seconds", "run_dir", "error")


def _set(cfg: HSTConfig, **values: Any) -> HSTConfig:
    """Replace global fields and clear the per-layer overrides of the same names (so they apply everywhere)."""
    layer_fields = {f.name for f in dataclasses.fields(LayerSpec)} & set(values)
    layers = tuple(dataclasses.replace(spec, **dict.fromkeys(layer_fields)) for spec in cfg.layers)
    return dataclasses.replace(cfg, layers=layers, **values)


def baseline_config(base: HSTConfig) -> HSTConfig:
    """``base`` with CPG-PE, TIM, SEW and RSM off: the plain spiking transformer of the waterfall."""
    return _set(base, **BASELINE_FIELDS)


def check_steps(steps: Sequence[str] | str) -> tuple[str, ...]:
    """Validate step names (a sequence or one comma-separated string); unknown or repeated -> ``ValueError``."""
    if isinstance(steps, str):
        steps = [s.strip() for s in steps.split(",") if s.strip()]
    steps = tuple(steps)
    if not steps:
        raise ValueError(f"steps=() is empty; name at least one of: {', '.join(ABLATION_STEPS.names())}")
    for s in steps:
        if s not in ABLATION_STEPS:
            raise ValueError(f"steps: unknown ablation step {s!r}; allowed: {', '.join(ABLATION_STEPS.names())}")
    repeated = sorted({s for s in steps if steps.count(s) > 1})
    if repeated:
        raise ValueError(f"steps={list(steps)!r} repeats {repeated}; each step can be added once")
    return steps


def ablation_configs(base: HSTConfig | str, steps: Sequence[str] | str = DEFAULT_STEPS) -> list[tuple[str, str, HSTConfig]]:
    """``[(variant, change, cfg), ...]``: the baseline then one row per cumulative step.

    Example:
        >>> [v for v, _, _ in ablation_configs("tiny", ("+cpg", "+tim"))]
        ['baseline', '+cpg', '+tim']
    """
    steps = check_steps(steps)
    cfg = HSTConfig.from_preset(base) if isinstance(base, str) else base
    if not isinstance(cfg, HSTConfig):
        raise ValueError(f"base_preset={base!r} must be a preset name or an HSTConfig")  # noqa: TRY004
    cfg = baseline_config(cfg)
    out = [("baseline", ", ".join(f"{k}={v!r}" for k, v in BASELINE_FIELDS.items()), cfg)]
    for step in steps:
        values = ABLATION_STEPS.get(step)
        change = ", ".join(f"{k}: {getattr(cfg, k)!r} -> {v!r}" for k, v in values.items() if getattr(cfg, k) != v)
        change = change or "no field changed"
        cfg = _set(cfg, **values)
        out.append((step, change, cfg))
    return out


def same_network(a: HSTConfig, b: HSTConfig, seed: int = 0) -> bool:
    """True when ``a`` and ``b`` build the same parameters and, from the same init and RNG, give
    the same training-mode output and the same (surrogate) gradient of every parameter on one
    example batch: the step changed nothing the optimizer can see. Gradients matter because a
    freshly built spiking network may emit no attention spikes yet."""
    import torch

    from hstlab.model import build_model, example_input

    results = []
    for cfg in (a, b):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build_model(cfg).train()
            x = example_input(cfg, batch_size=2, seed=seed, rate=0.3)
            out = model(x)
            weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
            (out * weights).sum().backward()
        grads = {n: (p.grad.clone() if p.grad is not None else None) for n, p in model.named_parameters()}
        results.append((out.detach(), grads))
    (out_a, grads_a), (out_b, grads_b) = results
    if grads_a.keys() != grads_b.keys() or not torch.equal(out_a, out_b):
        return False
    for name, ga in grads_a.items():
        gb = grads_b[name]
        if (ga is None) != (gb is None) or (ga is not None and (ga.shape != gb.shape or not torch.equal(ga, gb))):
            return False
    return True


def ablation_train_config(base: HSTConfig | str, dataset: str, **fields: Any) -> TrainConfig:
    """The TrainConfig every variant shares: the recipe of ``base`` on ``dataset`` with
    :data:`DEFAULT_EPOCHS` epochs, then ``fields`` (``epochs``, ``lr``, ``limit``, ...).

    Example:
        >>> ablation_train_config("tiny", "digits-dvs", lr=0.01).epochs
        3
    """
    from hstlab.train.recipes import recipe_for

    name = base if isinstance(base, str) else base.name
    return recipe_for(name, dataset).train.replace(epochs=DEFAULT_EPOCHS).replace(**fields)


def _row(index: int, variant: str, change: str, cfg: HSTConfig, seed: int) -> dict[str, Any]:
    return {"step": index, "variant": variant, "change": change, "note": "", "status": "ok",
            **{k: getattr(cfg, k) for k in ("pos_encoding", "tim", "residual", "mask_ratio", "mask_in_eval",
                                            "attention", "mlp_kind", "neuron", "weight_bits", "modes")}, "seed": seed, "error": ""}


def run_ablation(
    base_preset: HSTConfig | str,
    dataset: str,
    steps: Sequence[str] | str = DEFAULT_STEPS,
    train_config: TrainConfig | None = None,
    *,
    seed: int = 0,
    out_dir: str | os.PathLike = "runs/ablation",
    train_fn: Callable[..., dict[str, Any]] | None = None,
    **train_kwargs: Any,
) -> pd.DataFrame:
    """Train the baseline and each cumulative variant with the same seed and ``train_config``.

    ``train_config`` defaults to :func:`ablation_train_config` (the recipe, 3 epochs); keywords
    naming its fields (``epochs=2, limit=256, lr=...``) replace single fields, other keywords go
    to ``train_run`` (``max_seconds``, ...). Writes ``ablation.csv`` and ``ablation.md`` in
    ``out_dir``, one run directory per variant under it, and returns the table (draw it with
    ``hstlab.viz.ablation_waterfall``). ``accuracy`` is the test accuracy of each variant's best
    validation checkpoint (validation accuracy where there is no test split); ``energy_j`` the
    energy per sample of that checkpoint on one validation batch (45nm-fp32). A variant that
    fails (e.g. diverges) gets ``status="failed"`` and its error; the others still run.

    Example:
        >>> df = run_ablation("hst-small", "digits-dvs", epochs=2, limit=256)  # doctest: +SKIP
        >>> df[["variant", "accuracy", "energy_j"]]  # doctest: +SKIP
    """
    from hstlab.train.run import train_run

    variants = ablation_configs(base_preset, steps)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")
    for key in ("run_dir", "resume", "modes", "out"):
        if key in train_kwargs:
            raise ValueError(f"{key}= cannot be passed to run_ablation (each variant gets its own run directory)")
    fields = {k: train_kwargs.pop(k) for k in TrainConfig.defaults() if k in train_kwargs}
    if train_config is None:
        train_config = ablation_train_config(base_preset, dataset, **fields)
    elif not isinstance(train_config, TrainConfig):
        raise ValueError(f"train_config={train_config!r} must be a TrainConfig (hstlab.train.config)")  # noqa: TRY004
    else:
        train_config = train_config.replace(**fields)
    train = train_fn or train_run
    if train_fn is None:  # each variant's folder belongs to this ablation: a rerun replaces it
        train_kwargs = {"force": True, **train_kwargs}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (variant, change, cfg) in enumerate(variants):
        row = _row(i, variant, change, cfg, seed)
        if i and same_network(variants[i - 1][2], cfg, seed):
            row["note"] = "same network as the previous row: identical outputs and gradients from the same init"
        run_dir = out / f"{i:02d}-{variant.lstrip('+') or 'x'}"
        try:
            metrics = train(cfg, dataset, train_config=train_config, seed=seed, run_dir=run_dir, **train_kwargs)
        except Exception as exc:  # noqa: BLE001 -- a failed variant is a result; the others continue
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}", run_dir=str(run_dir))
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text(traceback.format_exc())
            rows.append(row)
            continue
        test_acc, val_acc = metrics.get("test_accuracy"), metrics.get("val_accuracy")
        row.update(accuracy=test_acc if test_acc is not None else val_acc, energy_j=metrics.get("energy_per_sample_j"),
                   val_accuracy=val_acc, test_accuracy=test_acc, val_firing_rate=metrics.get("val_firing_rate"),
                   test_firing_rate=metrics.get("test_firing_rate"), epochs=metrics.get("epochs_completed"),
                   limit=metrics.get("limit", train_config.limit), steps_trained=metrics.get("steps"),
                   train_seconds=metrics.get("train_seconds"), run_dir=metrics.get("run_dir", str(run_dir)))
        rows.append(row)
    df = _with_deltas(pd.DataFrame(rows).reindex(columns=list(COLUMNS)))
    write_ablation(df, out, dataset=dataset, base=base_preset if isinstance(base_preset, str) else base_preset.name)
    return df


def _with_deltas(df: pd.DataFrame) -> pd.DataFrame:
    """Change from the previous successful row, and energy relative to the baseline."""
    df = df.copy()
    acc = pd.to_numeric(df["accuracy"], errors="coerce")
    energy = pd.to_numeric(df["energy_j"], errors="coerce")
    df["delta_accuracy"] = acc - acc.ffill().shift(1)
    df["delta_energy_j"] = energy - energy.ffill().shift(1)
    base = energy.iloc[0] if len(energy) else math.nan
    df["energy_vs_baseline"] = energy / base if base and math.isfinite(base) else math.nan
    return df


def write_ablation(df: pd.DataFrame, out_dir: str | os.PathLike, dataset: str = "", base: str = "") -> dict[str, Path]:
    """Write ``ablation.csv`` and ``ablation.md``; returns their paths."""
    out = Path(out_dir)
    paths = {"csv": out / "ablation.csv", "md": out / "ablation.md"}
    df.to_csv(paths["csv"], index=False)
    paths["md"].write_text(ablation_markdown(df, dataset, base))
    return paths


def ablation_markdown(df: pd.DataFrame, dataset: str = "", base: str = "") -> str:
    """The table as Markdown, with the budget and what the columns mean."""
    def fmt(v: Any, spec: str) -> str:
        return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)

    def micro(v: Any, spec: str) -> str:
        return "–" if v is None or not pd.notna(v) else f"{format(v * 1e6, spec)} µJ"

    ok = df[df["status"] == "ok"]
    lines = [f"# Cumulative ablation: {base} on {dataset}", ""]
    if len(ok):
        first = ok.iloc[0]
        limit = first["limit"] if pd.notna(first["limit"]) else "none: full splits"
        lines += [(f"Same seed ({first['seed']}), epochs ({first['epochs']}), data limit ({limit}) "
                  "and optimizer settings for every variant. accuracy = test accuracy of the best-validation "
                  "checkpoint; energy = energy per sample of that checkpoint on one validation batch (45nm-fp32, "
                  "hstlab.energy_report); deltas are against the previous successful row."), ""]
    lines += [("| # | variant | change | accuracy | Δ acc | energy / sample | Δ energy | vs baseline | "
              "val fr | status | note |"), "|" + "---|" * 11]
    for _, r in df.iterrows():
        status = r["status"] if r["status"] == "ok" else f"failed: {r['error']}"
        lines.append(
            f"| {r['step']} | {r['variant']} | {str(r['change']).replace('|', '/')} | {fmt(r['accuracy'], '.3f')} | "
            f"{fmt(r['delta_accuracy'], '+.3f')} | {micro(r['energy_j'], '.4g')} | {micro(r['delta_energy_j'], '+.4g')} | "
            f"{fmt(r['energy_vs_baseline'], '.3f')}× | {fmt(r['val_firing_rate'], '.4f')} | "
            f"{status.replace('|', '/')} | {r['note'] if isinstance(r['note'], str) else ''} |")
    masked = df[(pd.to_numeric(df["mask_ratio"], errors="coerce") > 0) & df["mask_in_eval"].eq(False)]
    if len(masked):
        lines += ["", ("Note: spike masking (RSM) is active only in training here (mask_in_eval=False), so it "
                       "cannot lower the inference energy measured above; any change on those rows comes from "
                       "how training with masks shaped the weights and firing rates.")]
    return "\n".join(lines) + "\n"
