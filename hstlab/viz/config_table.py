"""The per-layer table of a config: one row per layer, every override resolved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from hstlab.config import HSTConfig, ResolvedLayer

# The per-layer fields a table shows (and the explorer's layer grid edits).
LAYER_COLUMNS = ("attn_mode", "mlp_mode", "attention", "mlp_kind", "tim", "residual", "mask_ratio")
# Read-only per-layer facts, shown after LAYER_COLUMNS only when a layer of the config uses them (the
# table stays narrow): the layer's stage in a staged config, the statten block size, the expert count
# of EMSA attention or an EMSP MLP. A layer they do not apply to shows <NA>.
LAYER_DETAIL_COLUMNS = ("stage", "attn_block", "experts")


def _details(layer: ResolvedLayer) -> dict[str, Any]:
    """The :data:`LAYER_DETAIL_COLUMNS` values that apply to ``layer`` (the kinds built decide)."""
    out: dict[str, Any] = {}
    if layer.stage is not None:
        out["stage"] = layer.stage
    if layer.attention_kind == "statten":
        out["attn_block"] = layer.attn_block
    if layer.attention_kind == "emsa" or layer.mlp_built == "emsp":
        out["experts"] = layer.experts
    return out


def layers_frame(cfg: HSTConfig) -> pd.DataFrame:
    """The per-layer table of ``cfg``: one row per layer, every override resolved.

    The :data:`LAYER_COLUMNS` always; each of :data:`LAYER_DETAIL_COLUMNS` when a layer uses it
    (``stage`` in a staged config, ``attn_block`` where a layer builds statten, ``experts`` where it
    builds EMSA attention or an EMSP MLP), ``<NA>`` on the layers it does not apply to.

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny").with_modes("ST")
        >>> layers_frame(cfg)[["attn_mode", "mlp_mode"]].values.tolist()
        [['spiking', 'spiking'], ['standard', 'standard']]
        >>> cfg = HSTConfig.from_preset("tiny", num_steps=4).with_layer(1, attention="statten", attn_block=4)
        >>> frame = layers_frame(cfg)
        >>> frame["attention"].tolist(), frame["attn_block"].tolist()
        (['ssa', 'statten'], [<NA>, 4])
    """
    layers = cfg.resolved_layers()
    rows = [{c: getattr(layer, c) for c in LAYER_COLUMNS} for layer in layers]
    details = [_details(layer) for layer in layers]
    shown = [c for c in LAYER_DETAIL_COLUMNS if any(c in d for d in details)]
    frame = pd.DataFrame(rows, columns=list(LAYER_COLUMNS))
    for column in shown:
        frame[column] = pd.array([d.get(column) for d in details], dtype="Int64")
    return frame
