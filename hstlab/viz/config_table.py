"""The per-layer table of a config: one row per layer, every override resolved."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from hstlab.config import HSTConfig

# The per-layer fields a table shows (and the explorer's layer grid edits).
LAYER_COLUMNS = ("attn_mode", "mlp_mode", "attention", "mlp_kind", "tim", "residual", "mask_ratio")


def layers_frame(cfg: HSTConfig) -> pd.DataFrame:
    """The per-layer table of ``cfg``: one row per layer, every override resolved.

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny").with_modes("ST")
        >>> layers_frame(cfg)[["attn_mode", "mlp_mode"]].values.tolist()
        [['spiking', 'spiking'], ['standard', 'standard']]
    """
    rows = [{c: getattr(layer, c) for c in LAYER_COLUMNS} for layer in cfg.resolved_layers()]
    return pd.DataFrame(rows, columns=list(LAYER_COLUMNS))
