"""Standard multi-head attention ``softmax(Q Kᵀ / √d) V`` for standard-mode layers."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers.attention.base import ATTENTION, AttentionBase, causal_mask
from hstlab.layers.quant import QuantLinear


@ATTENTION.register("softmax")
class SoftmaxAttention(AttentionBase):
    """Real-valued attention; a time-stepped network runs it on every step (T folded into batch).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny")
        >>> SoftmaxAttention(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "softmax"
    mode = "standard"

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg)
        self.qkv = QuantLinear(cfg.n_embd, 3 * cfg.n_embd, bias=True, weight_bits=cfg.weight_bits)
        self.proj = QuantLinear(cfg.n_embd, cfg.n_embd, bias=True, weight_bits=cfg.weight_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, N, D]
        q, k, v = (self.split_heads(part) for part in self.qkv(x).chunk(3, dim=-1))  # [T, B, H, N, d]
        q, k, v = self.q_probe(q), self.k_probe(k), self.v_probe(v)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # [T, B, H, N, d]
        return self.proj(self.merge_heads(out))

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if self.causal:
            scores = scores.masked_fill(~causal_mask(q.shape[-2], q.device), float("-inf"))
        return scores.softmax(dim=-1)

    def matmul_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> tuple[float, float]:
        """``Q Kᵀ`` and ``A V``: ``2 · N² · d`` MACs per (step, sample, head); softmax not included."""
        *lead, n, d = q.shape
        return 2.0 * math.prod(lead) * n * n * d, 0.0
