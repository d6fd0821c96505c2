"""STAtten (spatial-temporal attention, CVPR 2025): SSA over blocks of time steps × tokens.

The T steps split into ``T / b`` blocks of ``b = attn_block`` steps. Within a block every query
(step t, token i) attends to every key (step t', token j) of the block, so attention mixes time as
well as space; blocks stay independent and the spiking neuron still runs step by step:

    Q̃, K̃, Ṽ = fold(Q), fold(K), fold(V)         # [T/b, B, H, b·N, d]: the block's steps become tokens
    M = Q̃ (K̃ᵀ Ṽ)                                # [T/b, B, H, b·N, d] via [T/b, B, H, d, d]
    out = SN_θa(s · unfold(M))                    # [T, B, H, N, d]

With ``b = 1`` this is exactly SSA. The linear order ``Q (Kᵀ V)`` never forms the (b·N)² map, and
it costs what SSA costs: ``Kᵀ V`` adds one value per non-zero (k, v) pair wherever the pair sits in
the block, and each query spike adds one row of d values. Only which pairs are summed together
changes, not how many.
"""

from __future__ import annotations

import torch

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers.attention.base import ATTENTION
from hstlab.layers.attention.ssa import SpikingSelfAttention


def fold_steps(x: torch.Tensor, block: int) -> torch.Tensor:  # [T, B, H, N, d] -> [T/b, B, H, b·N, d]
    """Fold each block of ``block`` consecutive steps into the token axis (step-major inside a block)."""
    t, b, h, n, d = x.shape
    x = x.reshape(t // block, block, b, h, n, d)  # [T/b, b, B, H, N, d]
    return x.permute(0, 2, 3, 1, 4, 5).reshape(t // block, b, h, block * n, d)  # [T/b, B, H, b·N, d]


def unfold_steps(x: torch.Tensor, block: int) -> torch.Tensor:  # [T/b, B, H, b·N, d] -> [T, B, H, N, d]
    """Inverse of :func:`fold_steps`."""
    nb, b, h, bn, d = x.shape
    x = x.reshape(nb, b, h, block, bn // block, d)  # [T/b, B, H, b, N, d]
    return x.permute(0, 3, 1, 2, 4, 5).reshape(nb * block, b, h, bn // block, d)  # [T, B, H, N, d]


@ATTENTION.register("statten")
class SpatialTemporalAttention(SpikingSelfAttention):
    """STAtten: SSA whose keys and values span ``attn_block`` time steps (see the module docstring).

    Same parameters as SSA (a state dict moves between the two); ``causal=True`` is refused by the
    config, as the linear order cannot mask later tokens.

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", attention="statten", attn_block=2)
        >>> SpatialTemporalAttention(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "statten"

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg, layer)
        self.block = layer.attn_block

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        qf, kf, vf = (fold_steps(x, self.block) for x in (q, k, v))  # [T/b, B, H, b·N, d]
        mixed = qf @ (kf.transpose(-1, -2) @ vf)  # [T/b, B, H, b·N, d] via [T/b, B, H, d, d]
        return self.attn_neuron(unfold_steps(mixed, self.block) * self.scale)  # [T, B, H, N, d]

    def block_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The full spatial-temporal map ``s · Q̃ K̃ᵀ`` of each block: ``[T/b, B, H, b·N, b·N]``."""
        qf, kf = fold_steps(q, self.block), fold_steps(k, self.block)  # [T/b, B, H, b·N, d]
        return qf @ kf.transpose(-1, -2) * self.scale  # [T/b, B, H, b·N, b·N]

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Token-to-token weights ``[T, B, H, N, N]``: query (t, i) to token j, summed over the key
        steps t' of t's block (``s · Σ_t' Q_t Kᵀ_t'``); :meth:`block_map` keeps the steps apart."""
        t, b, h, n, _ = q.shape
        full = self.block_map(q, k)  # [T/b, B, H, b·N, b·N]
        full = full.reshape(t // self.block, b, h, self.block * n, self.block, n).sum(-2)  # [T/b, B, H, b·N, N]
        return unfold_steps(full, self.block)  # [T, B, H, N, N]
