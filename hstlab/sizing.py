"""Model size from the config alone, before anything is allocated.

:func:`estimate_size` counts the parameters an :class:`~hstlab.model.HSTNet` will have (exactly,
from the same layer formulas the modules use; a test checks it against built models) and
estimates the activation memory one training sample keeps for the backward pass. It runs in
microseconds for any config, so a huge config (``n_embd=20000``, ``num_classes=10**9``) is refused
by :func:`check_size` with the estimate and how to override, instead of allocating until it fails.

Limits (checked by :class:`~hstlab.model.HSTNet` and :func:`~hstlab.model.build_model`):
``DEFAULT_MAX_PARAMS`` parameters (plus the values of fixed tables such as the CPG code) and
``DEFAULT_MAX_ACTIVATION_BYTES`` of activations per training sample; override with
the environment variables ``HSTLAB_MAX_PARAMS`` / ``HSTLAB_MAX_ACTIVATION_BYTES`` or the
``max_params`` / ``max_activation_bytes`` arguments of ``build_model`` (``0`` switches a limit off).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from hstlab.config import HSTConfig

DEFAULT_MAX_PARAMS = 2_000_000_000  # 8 GB of fp32 weights (hst-100m has 1.1e8)
DEFAULT_MAX_ACTIVATION_BYTES = 8 * 2**30  # per sample; the presets need at most 0.7 GiB
FLOAT_BYTES = 4


@dataclass(frozen=True)
class SizeTerm:
    """One component's share: ``params`` parameters, ``activation_floats`` kept per sample."""

    component: str
    fields: tuple[str, ...]  # the config fields that drive it (named in errors)
    params: int = 0
    activation_floats: int = 0
    buffer_floats: int = 0


@dataclass(frozen=True)
class SizeEstimate:
    """Parameters and memory of the model a config describes (fp32).

    ``params`` is exact. ``buffer_bytes`` counts the fixed positional tables (not BatchNorm
    statistics). ``activation_bytes_per_sample`` estimates what a training forward keeps for
    the backward pass from the main tensors of every layer: 0.70-1.00 of the tensors autograd
    actually saved, measured on the presets and tiny variants (tests/test_hostile_config.py).
    """

    params: int
    param_bytes: int
    buffer_bytes: int
    activation_bytes_per_sample: int
    batch_size: int = 1
    terms: tuple[SizeTerm, ...] = field(default=(), repr=False)

    @property
    def activation_bytes(self) -> int:
        """Activation memory of one training forward at ``batch_size``."""
        return self.activation_bytes_per_sample * self.batch_size

    def largest(self, key: str) -> SizeTerm:
        """The term with the most ``params`` / ``activation_floats`` / ``buffer_floats``."""
        return max(self.terms, key=lambda t: getattr(t, key))


def estimate_size(cfg: HSTConfig, batch_size: int = 1) -> SizeEstimate:
    """Parameters and memory of ``HSTNet(cfg)`` without building it.

    Example:
        >>> est = estimate_size(HSTConfig.from_preset("spikformer-dvs-2-256"))
        >>> est.params, est.param_bytes
        (2566923, 10267692)
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")
    terms = _staged_terms(cfg) if cfg.stages else [*_stem_terms(cfg), *_block_terms(cfg)]
    d, classes = cfg.n_embd, cfg.num_classes
    last = cfg.layer(cfg.n_layer - 1)  # the membrane shortcut's classifier reads a neuron (HSTNet.head_neuron)
    head_neuron = cfg.head == "classify" and last.residual == "membrane" and last.mlp_mode == "spiking"
    terms.append(SizeTerm("head", ("n_embd", "num_classes"),
                          d * classes + classes + (_neuron_params(cfg) if head_neuron else 0), classes))
    params = sum(t.params for t in terms)
    return SizeEstimate(
        params=params, param_bytes=params * FLOAT_BYTES,
        buffer_bytes=sum(t.buffer_floats for t in terms) * FLOAT_BYTES,
        activation_bytes_per_sample=sum(t.activation_floats for t in terms) * FLOAT_BYTES,
        batch_size=batch_size, terms=tuple(terms))


def _neuron_params(cfg: HSTConfig) -> int:
    own = 1 if cfg.neuron == "plif" or (cfg.neuron == "ternary" and cfg.ternary_learn_alpha) else 0  # tau or α
    return own + (1 if cfg.threshold_balance == "learn" else 0)  # a learned threshold scale per neuron module


def _token_fields(cfg: HSTConfig) -> tuple[str, ...]:
    """The fields that set the number of tokens N."""
    return {"sps": ("input_shape", "sps_pools"), "events": ("input_shape", "patch_size")}.get(
        cfg.tokenizer, ("seq_len",))


def _stem_terms(cfg: HSTConfig) -> list[SizeTerm]:
    d, t, n = cfg.n_embd, cfg.num_steps, cfg.num_tokens
    tokens = _token_fields(cfg)
    spiking = cfg.stem_mode == "spiking"
    neuron = _neuron_params(cfg) if spiking else 0
    terms = []
    if cfg.tokenizer == "sps":
        c, h, w = cfg.input_shape
        widths = [*(cfg.sps_channels or (max(1, d // 8), max(1, d // 4), max(1, d // 2))), d]
        pool_first = cfg.sps_pool_first or cfg.residual == "membrane"
        params = acts = 0
        for c_in, c_out, pooled in zip([c, *widths[:-1]], widths, cfg.sps_pools):
            params += c_in * c_out * 9 + 2 * c_out + neuron
            h2, w2 = ((h + 1) // 2, (w + 1) // 2) if pooled else (h, w)
            acts += t * c_out * (2 * h * w + (2 * h2 * w2 if pool_first else h * w + h2 * w2))
            h, w = h2, w2
        params += d * d * 9 + 2 * d + neuron  # relative-position conv branch
        acts += 4 * t * d * n
        terms.append(SizeTerm("tokenizer (sps)", ("input_shape", "sps_channels", "n_embd", "num_steps"),
                              params, acts))
    elif cfg.tokenizer == "events":
        c, h, w = cfg.input_shape
        features = c * cfg.patch_size ** 2 * cfg.event_subbins
        terms.append(SizeTerm("tokenizer (events)", ("input_shape", "patch_size", "event_subbins", "n_embd"),
                              features * d + 2 * d + neuron,
                              t * n * (2 * features + 3 * d) + cfg.input_steps * c * h * w))
    else:
        terms.append(SizeTerm("tokenizer (linear)", ("input_shape", "seq_len", "n_embd"),
                              cfg.input_shape[0] * d + 2 * d, n * (cfg.input_shape[0] + 2 * d)))
    if cfg.pos_encoding == "cpg":
        nn_ = cfg.cpg_neurons
        terms.append(SizeTerm("pos_encoding (cpg)", ("cpg_neurons", "n_embd", *tokens),
                              (d + nn_) * d + 2 * d + neuron, t * n * (d + nn_ + 3 * d), n * nn_))
    elif cfg.pos_encoding == "sincos":
        terms.append(SizeTerm("pos_encoding (sincos)", ("n_embd", *tokens), 0, t * n * d, n * d))
    elif cfg.pos_encoding == "learned":
        terms.append(SizeTerm("pos_encoding (learned)", ("n_embd", *tokens), n * d, t * n * d))
    return terms


def _block_terms(cfg: HSTConfig) -> list[SizeTerm]:
    d, t, n, heads = cfg.n_embd, cfg.num_steps, cfg.num_tokens, cfg.n_head
    tokens = _token_fields(cfg)
    hidden = int(d * cfg.mlp_ratio)
    neuron = _neuron_params(cfg)
    terms = []
    for layer in cfg.resolved_layers():
        kind = layer.attention_kind
        if kind == "spikegpt":  # kvr on [s_n; s_{n-1}], its BN, decay + bonus, proj, its BN, two neurons
            params = 6 * d * d + 6 * d + 2 * d + d * d + d + 2 * d + 2 * neuron
            acts = t * n * d * 28  # z, k/v/r, their BN, the wkv scan's per-token temporaries, gate, spikes
        elif kind == "softmax":  # standard attention (also in a spiking half, if asked for by name)
            params = 3 * d * d + 3 * d + d * d + d
            acts = t * n * d * 8 + t * heads * n * n  # softmax probabilities
        else:
            parts = {"qk": 2, "qk_channel": 2, "lateral": 5}.get(kind, 3)
            if kind == "conv":
                params = parts * (d * d + 2 * d + d * cfg.conv_kernel + neuron)
            else:
                params = parts * (d * d + 2 * d) + neuron
            params += d * d + d + 2 * d + neuron  # proj, proj_norm, the kind's neuron
            params += _kind_extra_params(kind, cfg, layer.experts, neuron)
            acts = t * n * d * (3 * parts + 7)
            if layer.tim:
                params += cfg.tim_kernel + 2 * neuron
                acts += 4 * t * n * d
            if cfg.causal and kind in ("ssa", "sdsa", "emsa", "lateral"):
                acts += t * heads * n * n * (2 if kind == "lateral" else 1)
            if kind == "bipolar":  # scores, exponents, Shiftmax weights: quadratic in N
                acts += 3 * t * heads * n * n
        params += neuron if layer.attn_mode == "spiking" else 2 * d  # the half's neuron or LayerNorm
        terms.append(SizeTerm(f"layers[{layer.index}] attention ({kind})",
                              ("n_embd", "n_head", "num_steps", *tokens), params, acts))
        if layer.mlp_mode == "spiking" and kind == "spikegpt":  # its channel mix (no biases)
            params = 2 * d * hidden + 2 * hidden + 2 * d * d + 2 * d + hidden * d + 2 * d + 3 * neuron
            acts = t * n * (2 * d + 3 * hidden + 7 * d)
        elif layer.mlp_mode == "spiking":
            params = d * hidden + hidden + 2 * hidden + hidden * d + d + 2 * d + 2 * neuron
            if layer.mlp_built == "emsp":
                params += _router_params(d, layer.experts, neuron)
            acts = t * n * (3 * hidden + 4 * d)
        else:
            params = 2 * d + d * hidden + hidden + hidden * d + d
            acts = t * n * (2 * hidden + 3 * d)
        terms.append(SizeTerm(f"layers[{layer.index}] mlp", ("n_embd", "mlp_ratio", "num_steps", *tokens),
                              params, acts))
    return terms


def _router_params(d: int, experts: int, neuron: int) -> int:
    """SEMM's spiking router: Linear(D, m, no bias), BatchNorm(m), a neuron."""
    return d * experts + 2 * experts + neuron


def _kind_extra_params(kind: str, cfg: HSTConfig, experts: int, neuron: int) -> int:
    """Parameters an attention kind adds to the spiking projections, proj and its own neuron."""
    if kind == "emsa":
        return _router_params(cfg.n_embd, experts, neuron)
    if kind == "bipolar":
        return 2 * neuron  # the negative neuron of the ternary Q/K and V's own neuron
    if kind == "lateral":
        return cfg.n_head  # λ_h
    return 0


def _staged_terms(cfg: HSTConfig) -> list[SizeTerm]:
    """Patch embeddings and blocks of a staged config (:mod:`hstlab.staged`), stage by stage."""
    from hstlab.staged import (
        SEPCONV_EXPANSION,
        SEPCONV_KERNEL,
        embed_spiking,
        stage_bounds,
        stage_config,
    )

    t, terms = cfg.num_steps, []
    h, w = cfg.input_shape[1:]
    for i, (stage, (start, end), (h2, w2)) in enumerate(zip(cfg.stages, stage_bounds(cfg), cfg.stage_grids())):
        d, n, n_in = stage.n_embd, h2 * w2, h * w
        neuron = _neuron_params(cfg) if embed_spiking(cfg, i) else 0
        c_in = cfg.input_shape[0] if i == 0 else cfg.stages[i - 1].n_embd
        fields = (f"stages[{i}].n_embd", f"stages[{i}].embed", f"stages[{i}].stride", "input_shape")
        if stage.embed == "conv":
            k = stage.embed_kernel
            params = c_in * d * k * k + 3 * d + (neuron if i else 0)
            acts = t * ((3 if i else 1) * c_in * n_in + 2 * d * n)  # neuron in/out, conv input, BN
        else:
            widths = [max(1, d // 8), max(1, d // 4), max(1, d // 2), d] if i == 0 else [d, d]
            res_in = widths[1] if i == 0 else c_in
            params = sum(a * b * 9 + 2 * b + neuron for a, b in zip([c_in, *widths[:-1]], widths))
            params += res_in * d + 2 * d + neuron
            acts, grid, pools = t * (c_in * n_in + 3 * d * n), n_in, stage.stride.bit_length() - 1
            for j, width in enumerate(widths):  # conv-BN-[pool]-neuron at the grid of each conv
                pooled = j >= len(widths) - pools
                out = width * grid
                acts += t * (2 * out + 4 * out // 4 if pooled else 3 * out)  # BN, pool (and indices), neuron
                grid = grid // 4 if pooled else grid
        terms.append(SizeTerm(f"stages[{i}] embed ({stage.embed})", fields, params, acts))
        local = stage_config(cfg, i)
        if stage.kind == "conv":
            med, hidden = SEPCONV_EXPANSION * d, int(d * local.mlp_ratio)
            for index in range(start, end):
                layer = cfg.layer(index)
                mix_spikes, mlp_spikes = layer.attn_mode == "spiking", layer.mlp_mode == "spiking"
                mix_n = _neuron_params(cfg) if mix_spikes else 0  # a spiking half keeps more (membranes)
                mlp_n = _neuron_params(cfg) if mlp_spikes else 0
                terms.append(SizeTerm(f"layers[{index}] sepconv", (f"stages[{i}].n_embd",),
                                      2 * d * med + 2 * med + med * SEPCONV_KERNEL ** 2 + 2 * d + 2 * mix_n,
                                      t * n * (4 * med + 4 * d if mix_spikes else 3 * med + 3 * d)))
                terms.append(SizeTerm(f"layers[{index}] conv mlp", (f"stages[{i}].n_embd", "mlp_ratio"),
                                      18 * d * hidden + 2 * hidden + 2 * d + 2 * mlp_n,
                                      t * n * (4 * hidden + 4 * d if mlp_spikes else 3 * hidden + 3 * d)))
        else:
            for offset, term in enumerate(_block_terms(local)):
                index = start + offset // 2
                params = term.params
                acts = term.activation_floats
                if stage.projection == "repconv" and offset % 2 == 0 and cfg.layer(index).attn_mode == "spiking":
                    parts = 2 if local.layer(offset // 2).attention_kind in ("qk", "qk_channel") else 3
                    params += parts * (d * d + 13 * d) + d * d + 12 * d  # RepConv instead of 1x1 Q/K/V, proj
                    padded = (h2 + 2) * (w2 + 2)  # each RepConv keeps its padded map for the depthwise conv
                    acts += (parts + 1) * t * d * (4 * n + padded)
                name = term.component.replace(f"layers[{offset // 2}]", f"layers[{index}]", 1)
                terms.append(dataclasses.replace(term, component=name, params=params, activation_floats=acts,
                                                 fields=(f"stages[{i}].n_embd", f"stages[{i}].n_head", "num_steps")))
        h, w = h2, w2
    return terms


def _limit(explicit: float | None, env: str, default: float) -> float:
    """The limit in force: the argument, else the environment variable, else the default; 0: off."""
    if explicit is not None:
        value, source = explicit, "argument"
    elif os.environ.get(env, "").strip():
        text, source = os.environ[env].strip(), f"environment variable {env}"
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{env}={text!r} must be a number (0 switches the limit off)") from None
    else:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValueError(f"{env} limit {value!r} from the {source} must be a number >= 0 (0: no limit)")
    return math.inf if value == 0 else value


def check_size(cfg: HSTConfig, max_params: float | None = None,
               max_activation_bytes: float | None = None) -> SizeEstimate:
    """Raise ``ValueError`` if ``cfg``'s model exceeds the size limits (see the module docstring);
    the message names the fields that drive the size, the estimate and how to override.

    Example:
        >>> check_size(HSTConfig.from_preset("tiny")).params < 10**6
        True
    """
    est = estimate_size(cfg)
    param_limit = _limit(max_params, "HSTLAB_MAX_PARAMS", DEFAULT_MAX_PARAMS)
    act_limit = _limit(max_activation_bytes, "HSTLAB_MAX_ACTIVATION_BYTES", DEFAULT_MAX_ACTIVATION_BYTES)
    tables = est.buffer_bytes // FLOAT_BYTES
    if est.params + tables > param_limit:
        top = max(est.terms, key=lambda t: t.params + t.buffer_floats)
        extra = f" plus {tables:.3g} values in fixed tables" if tables > est.params / 100 else ""
        raise ValueError(
            f"model too large: about {est.params:.3g} parameters ({est.param_bytes / 2**30:.3g} GiB){extra}, "
            f"over the limit of {param_limit:.3g}; the largest part is {top.component} "
            f"({top.params + top.buffer_floats:.3g}), driven by {_fields_text(cfg, top.fields)}. Override with "
            f"build_model(cfg, max_params=N) or HSTLAB_MAX_PARAMS=N (0: no limit)")
    if est.activation_bytes_per_sample > act_limit:
        top = est.largest("activation_floats")
        raise ValueError(
            f"model too large: about {est.activation_bytes_per_sample / 2**30:.3g} GiB of activations per "
            f"training sample, over the limit of {act_limit / 2**30:.3g} GiB; the largest part is "
            f"{top.component}, driven by {_fields_text(cfg, top.fields)}. Override with "
            f"build_model(cfg, max_activation_bytes=N) or HSTLAB_MAX_ACTIVATION_BYTES=N (0: no limit)")
    return est


def _fields_text(cfg: HSTConfig, names: tuple[str, ...]) -> str:
    return ", ".join(f"{name}={_field_value(cfg, name)!r}" for name in names)


def _field_value(cfg: HSTConfig, name: str) -> object:
    """``cfg.<name>``, also for a stage's field: ``stages[1].n_embd``."""
    if name.startswith("stages["):
        index, _, attr = name[len("stages["):].partition("].")
        return getattr(cfg.stages[int(index)], attr)
    return getattr(cfg, name)
