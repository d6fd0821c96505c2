"""Attention maps per layer, head and time step, for every attention kind.

Input is ``rec.attention`` (dict name -> ``[T, B, H, N, N]``) or one such tensor. Spiking kinds
give integer-valued (binary-operand) maps, softmax gives probabilities; both draw the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import holoviews as hv
import numpy as np

from hstlab.viz._util import bokeh_opts, check_index, check_ndim, select_layer, to_numpy

KEY = hv.Dimension("key", label="key token")
QUERY = hv.Dimension("query", label="query token")
WEIGHT = hv.Dimension("weight", label="attention score")
HEAD = hv.Dimension("head", label="head")
STEP = hv.Dimension("t", label="time step")


def _maps(value: Any) -> np.ndarray:
    arr = to_numpy(value, "attention")
    check_ndim(arr, "attention", 5, "[T, B, H, N, N] (time, batch, heads, queries, keys)")
    return arr  # [T, B, H, Nq, Nk]


STEP_SUMMARIES = ("mean", "peak")  # t= a summary instead of one step (spiking maps are empty at t=0)


def _pick_step(arr: np.ndarray, t: int | str, sample: int, head: int) -> tuple[np.ndarray, int | str]:
    """``([Nq, Nk] map, what it is)`` for ``t`` = a step, ``"mean"`` over steps, or ``"peak"``: the
    step with the largest total score (spiking neurons charge before they fire, so t=0 is often
    empty)."""
    maps = arr[:, sample, head]  # [T, Nq, Nk]
    if t == "mean":
        return maps.mean(axis=0), f"mean over {maps.shape[0]} steps"
    if t == "peak":
        step = int(np.argmax(maps.reshape(maps.shape[0], -1).sum(axis=1)))
        return maps[step], f"t={step} (most active step)"
    if isinstance(t, str):
        raise ValueError(f"t={t!r} is not allowed; allowed: a time step index, {', '.join(STEP_SUMMARIES)}")
    ti = check_index(t, "t", arr.shape[0])
    return maps[ti], ti


def _image(arr: np.ndarray, label: str, head: int, step: int | str, sample: int) -> hv.Image:
    """Draw one ``[Nq, Nk]`` map with query 0 at the top; ``step``: its index or what it summarizes."""
    nq, nk = arr.shape
    grid = np.asarray(arr, dtype=np.float64)
    low, high = float(np.nanmin(grid)), float(np.nanmax(grid))
    if low < 0:  # signed scores: diverging map centred on zero
        bound = max(abs(low), abs(high), 1e-12)
        cmap, clim = "coolwarm", (-bound, bound)
    else:
        cmap, clim = "fire", (0.0, high if high > 0 else 1.0)
    element = hv.Image((np.arange(nk), np.arange(nq), grid), kdims=[KEY, QUERY], vdims=[WEIGHT])
    return bokeh_opts(
        element,
        title=f"Attention: {label}, head {head}, {step if isinstance(step, str) else f't={step}'}, sample {sample}",
        cmap=cmap,
        clim=clim,
        colorbar=True,
        tools=["hover"],
        invert_yaxis=True,
        shared_axes=False,
        width=380,
        height=340,
    )


def attention_map(
    attention: Any, layer: str | None = None, head: int = 0, t: int | str = 0, sample: int = 0
) -> hv.Image:
    """One attention map (query x key) for a chosen layer, head, time step and sample.

    ``t`` is a step index, ``"mean"`` (the mean over steps) or ``"peak"`` (the most active step);
    the title says which. Spiking kinds' maps are often empty at t=0, while neurons charge.

    Example:
        >>> img = attention_map(rec.attention, "blocks.0.attn.branch", head=1, t=1)
        >>> attention_map(rec.attention, "blocks.0.attn.branch", t="mean").opts.get().kwargs["title"]
        'Attention: blocks.0.attn.branch, head 0, mean over 2 steps, sample 0'
    """
    label, value = select_layer(attention, layer, "attention")
    arr = _maps(value)
    bi = check_index(sample, "sample", arr.shape[1])
    hi = check_index(head, "head", arr.shape[2])
    grid, which = _pick_step(arr, t, bi, hi)  # [Nq, Nk]
    return _image(grid, label, hi, which, bi)


def attention_holomap(
    attention: Any,
    layer: str | None = None,
    sample: int = 0,
    heads: Sequence[int] | None = None,
    steps: Sequence[int] | None = None,
) -> hv.HoloMap:
    """All maps of one layer in a ``HoloMap`` keyed by (head, t): sliders in a notebook/Panel.

    Call ``.layout().cols(n)`` or ``.grid()`` on the result for a grid of every head and step.

    Example:
        >>> hmap = attention_holomap(rec.attention, "blocks.0.attn.branch")
        >>> one = hmap[1, 0]  # head 1, time step 0
    """
    label, value = select_layer(attention, layer, "attention")
    arr = _maps(value)
    bi = check_index(sample, "sample", arr.shape[1])
    heads = (
        range(arr.shape[2])
        if heads is None
        else [check_index(h, "heads", arr.shape[2]) for h in heads]
    )
    steps = (
        range(arr.shape[0])
        if steps is None
        else [check_index(s, "steps", arr.shape[0]) for s in steps]
    )
    items = {(h, s): _image(arr[s, bi, h], label, h, s, bi) for h in heads for s in steps}
    return hv.HoloMap(items, kdims=[HEAD, STEP])


def attention_dynamicmap(attention: Mapping[str, Any], sample: int = 0) -> hv.DynamicMap:
    """A ``DynamicMap`` keyed by (layer, head, t) that draws maps on demand (cheap for big models).

    Layers with fewer heads or steps than the largest are clamped to their last head/step.

    Example:
        >>> dmap = attention_dynamicmap(rec.attention)
        >>> one = dmap["blocks.0.attn.branch", 0, 0]
    """
    if not isinstance(attention, Mapping) or not attention:
        raise ValueError(
            "attention must be a non-empty dict name -> [T, B, H, N, N] (rec.attention)"
        )
    arrays = {str(name): _maps(value) for name, value in attention.items()}
    for name, arr in arrays.items():
        sample = check_index(sample, f"sample (layer {name!r})", arr.shape[1])
    n_heads = max(a.shape[2] for a in arrays.values())
    n_steps = max(a.shape[0] for a in arrays.values())

    def draw(layer: str, head: int, t: int) -> hv.Image:
        arr = arrays[layer]
        h, s = min(int(head), arr.shape[2] - 1), min(int(t), arr.shape[0] - 1)
        return _image(arr[s, sample, h], layer, h, s, sample)

    kdims = [
        hv.Dimension("layer", values=list(arrays)),
        HEAD.clone(values=list(range(n_heads))),
        STEP.clone(values=list(range(n_steps))),
    ]
    return hv.DynamicMap(draw, kdims=kdims)
