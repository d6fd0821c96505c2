"""Small helpers shared by the viz modules: array conversion, backend loading, unit scaling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import holoviews as hv
import numpy as np


def to_numpy(x: Any, name: str = "x") -> np.ndarray:
    """Convert a torch tensor, numpy array or nested sequence to a float-or-native numpy array.

    Example:
        >>> to_numpy([[0, 1], [1, 0]]).shape
        (2, 2)
    """
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu()
        if getattr(x, "dtype", None) is not None and str(x.dtype) in (
            "torch.bfloat16",
            "torch.float16",
        ):
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - only for exotic inputs
        raise ValueError(
            f"{name} of type {type(x).__name__} cannot be converted to an array"
        ) from exc


def check_ndim(arr: np.ndarray, name: str, ndim: int | tuple[int, ...], layout: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``arr`` does not have ``ndim`` dimensions."""
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        raise ValueError(f"{name} has shape {tuple(arr.shape)}; expected {layout}")


def check_index(value: int, name: str, size: int) -> int:
    """Validate an index into an axis of length ``size`` (negative indices allowed)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not -size <= value < size
    ):
        raise ValueError(f"{name}={value!r} is out of range; allowed: integers in [0, {size})")
    return int(value) % size


def ensure_backend(backend: str = "bokeh") -> None:
    """Load a HoloViews plotting backend on first use (no ``hv.extension``, no notebook output).

    Loading registers the backend's options so ``.opts(..., backend=backend)`` validates; the
    current backend only changes when no backend was loaded before. Also makes notebook output
    render offline (:func:`hstlab.viz.offline.inline_stylesheets`).
    """
    from hstlab.viz.offline import inline_stylesheets

    inline_stylesheets()
    if backend not in hv.Store.renderers:
        import importlib

        importlib.import_module(f"holoviews.plotting.{backend}")


def bokeh_opts(element: hv.core.Dimensioned, **options: Any) -> Any:
    """Apply Bokeh plot/style options to ``element`` after making sure the backend is loaded."""
    ensure_backend("bokeh")
    if "title" in options:
        options.setdefault("fontsize", {"title": "10pt"})
    if options.get("shared_axes") is False:  # also keep a Layout from normalising ranges
        options.setdefault("axiswise", True)
    return element.opts(backend="bokeh", **options)


def pick_indices(size: int, max_count: int) -> np.ndarray:
    """Evenly spaced, sorted, unique indices into ``range(size)``, at most ``max_count`` of them."""
    if max_count < 1:
        raise ValueError(f"max_count={max_count!r} must be an integer >= 1")
    if size <= max_count:
        return np.arange(size)
    return np.unique(np.linspace(0, size - 1, max_count).round().astype(np.int64))


def select_layer(data: Any, layer: str | None, name: str) -> tuple[str, Any]:
    """Pick one entry from a Recorder dict (``layer`` or the first key) or pass a single tensor.

    Returns ``(label, value)``; the label is the layer name, or ``name`` for a bare tensor.
    """
    if isinstance(data, Mapping):
        if not data:
            raise ValueError(f"{name} is an empty dict; record at least one layer")
        if layer is None:
            layer = next(iter(data))
        if layer not in data:
            raise ValueError(
                f"layer={layer!r} is not in {name}; allowed: {', '.join(map(str, data))}"
            )
        return str(layer), data[layer]
    return (layer or name), data
