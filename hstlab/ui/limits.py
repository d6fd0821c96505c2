"""Size limits of the explorer: every number a browser can send is checked here before work starts.

One served explorer is shared by all its browser tabs, so a field that asks for a huge model
would take memory and CPU from every session. These bounds keep the largest accepted rebuild
at a few seconds and a few hundred MB on a laptop CPU (hst-small at width 1024: about 2 s,
28 M parameters). They apply to the Build fields, to the config of a loaded run (checked on the
raw dict, before ``HSTConfig`` is made) and to the Train settings. A rejected value costs
microseconds: nothing is built.

Example:
    >>> check_config_values({"n_embd": 20000})
    Traceback (most recent call last):
    ...
    ValueError: n_embd=20000 is too large for the explorer: allowed 1 to 1024
    >>> parse_number("n_layer", "1.5")
    Traceback (most recent call last):
    ...
    ValueError: n_layer='1.5' is not a whole number: allowed 1 to 24
    >>> parse_number("lr", "3e-4")
    0.0003
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# field -> (smallest, largest) accepted by the explorer (the library may allow more).
CONFIG_LIMITS: dict[str, tuple[float, float]] = {
    "n_layer": (1, 24),
    "n_embd": (1, 1024),
    "n_head": (1, 64),
    "num_steps": (1, 32),
    "num_classes": (1, 10_000),
    "cpg_neurons": (2, 4096),
    "mlp_ratio": (0.0, 16.0),
    "patch_size": (1, 64),
    "event_subbins": (1, 64),
    "seq_len": (1, 4096),
    "conv_kernel": (1, 31),
    "tim_kernel": (1, 31),
}
TRAIN_LIMITS: dict[str, tuple[float, float]] = {
    "limit": (1, 20_000),  # samples per split
    "batch_size": (1, 512),
    "epochs": (1, 100),
    "lr": (1e-8, 10.0),
}
LAYER_LIMITS: dict[str, tuple[float, float]] = {"mask_ratio": (0.0, 0.99)}
LIMITS = {**CONFIG_LIMITS, **TRAIN_LIMITS, **LAYER_LIMITS}
FLOAT_FIELDS = frozenset({"mlp_ratio", "lr", "mask_ratio"})  # all others are whole numbers
# Whole-model bounds: depth and width together (12 * n_layer * n_embd**2 is the blocks' weight
# count) and the values of one input step (C * H * W, or C of a sequence) and stem widths.
MAX_BLOCK_PARAMS = 64_000_000
MAX_INPUT_VALUES = 4 * 128 * 128
MAX_CHECKPOINT_BYTES = 1 << 30  # a loaded best checkpoint (the largest accepted model is ~0.5 GiB)
MAX_LIST_ENTRIES = 64  # layers, mode_schedule, sps_channels entries of a loaded config


def allowed(name: str) -> str:
    """``'1 to 1024'``: the accepted range of ``name``, as the messages and field labels show it."""
    low, high = LIMITS[name]
    return f"{low:g} to {high:g}"


def check_value(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number within its limits."""
    low, high = LIMITS[name]
    whole = name not in FLOAT_FIELDS
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} is not a number: allowed {allowed(name)}")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not a finite number: allowed {allowed(name)}")
    if whole and value != int(value):
        raise ValueError(f"{name}={value!r} is not a whole number: allowed {allowed(name)}")
    if value < low:
        raise ValueError(f"{name}={value!r} is too small for the explorer: allowed {allowed(name)}")
    if value > high:
        raise ValueError(f"{name}={value!r} is too large for the explorer: allowed {allowed(name)}")


def parse_number(name: str, text: str) -> int | float:
    """The number typed into field ``name`` (``int`` for whole-number fields), within its limits.

    Raises ``ValueError`` naming the field, what was typed and the allowed range; never
    converts ``'1.5'`` to 1 or ``'abc'`` to the old value.
    """
    raw = str(text).strip()
    shown = raw if len(raw) <= 40 else raw[:40] + "..."
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={shown!r} is not a number: allowed {allowed(name)}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}={shown!r} is not a finite number: allowed {allowed(name)}")
    if name not in FLOAT_FIELDS:
        if value != int(value):
            raise ValueError(f"{name}={shown!r} is not a whole number: allowed {allowed(name)}")
        value = int(value)
    check_value(name, value)
    return value


def check_config_values(values: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field of ``values`` (config fields, as a dict) that
    the explorer will not build. Cheap: runs before ``HSTConfig`` (whose own checks may be slow
    for huge widths) and before any tensor is made.

    Plug-in point for a library-level size estimate: call it at the end of this function (on
    the same values) so that the explorer also rejects what the library would refuse.
    """
    for name in CONFIG_LIMITS:
        if name in values:
            check_value(name, values[name])
    for name in ("layers", "mode_schedule", "sps_channels", "sps_pools", "input_shape"):
        entries = values.get(name)
        if entries is not None and (not hasattr(entries, "__len__") or len(entries) > MAX_LIST_ENTRIES):
            raise ValueError(f"{name} has too many entries for the explorer: allowed at most "
                             f"{MAX_LIST_ENTRIES}")  # fmt: skip
    for c in values.get("sps_channels") or ():
        if isinstance(c, (int, float)) and not 1 <= c <= CONFIG_LIMITS["n_embd"][1]:
            raise ValueError(f"sps_channels entry {c!r} is out of range for the explorer: allowed "
                             f"1 to {CONFIG_LIMITS['n_embd'][1]}")  # fmt: skip
    shape = values.get("input_shape")
    if shape is not None:
        if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise ValueError(f"input_shape={tuple(shape)!r} must be positive integers")
        if math.prod(shape) > MAX_INPUT_VALUES:
            raise ValueError(f"input_shape={tuple(shape)!r} is too large for the explorer: at most "
                             f"{MAX_INPUT_VALUES:,} values per time step")  # fmt: skip
    depth, width = values.get("n_layer"), values.get("n_embd")
    if isinstance(depth, int) and isinstance(width, int):
        block_params = 12 * depth * width * width
        if block_params > MAX_BLOCK_PARAMS:
            raise ValueError(
                f"n_layer={depth} with n_embd={width} is too large for the explorer "
                f"(about {block_params / 1e6:.0f} M block weights; allowed at most "
                f"{MAX_BLOCK_PARAMS / 1e6:.0f} M): make the model shallower or narrower"
            )
