"""Shared machinery of every attention kind: head split/merge, probes, spiking Q/K/V projections.

Every kind maps ``[T, B, N, D] -> [T, B, N, D]``. Q, K, V pass through ``nn.Identity`` probes
(``q_probe``, ``k_probe``, ``v_probe``) as ``[T, B, H, N, d]`` so a :class:`hstlab.Recorder` or
the energy engine can see them from outside; ``attention_map`` forms the N×N map only on request.
"""

from __future__ import annotations

import torch
from torch import nn

from hstlab.config import ATTENTION_KINDS, HSTConfig, ResolvedLayer
from hstlab.layers.masking import SpikeMasking
from hstlab.layers.norm import TokenBatchNorm
from hstlab.layers.quant import QuantLinear
from hstlab.layers.stabilize import head_grad_norm
from hstlab.layers.tim import TemporalInteraction
from hstlab.neurons import build_neuron
from hstlab.registry import Registry

ATTENTION: Registry = Registry("attention", declared=ATTENTION_KINDS)


def causal_mask(n: int, device: torch.device) -> torch.Tensor:
    """Lower-triangular ``[N, N]`` mask: token i sees tokens j <= i."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def event_total(x: torch.Tensor) -> float:
    """Binary events in an event tensor (see :meth:`AttentionBase.matmul_ops`): ``Σ|x|``, which is
    ``nnz(x)`` for 0/1 spikes and ``Σ S`` for integer spikes S."""
    return float(x.abs().sum())


class AttentionBase(nn.Module):
    """Head bookkeeping and probes shared by all kinds."""

    attention_kind: str = ""
    mode: str = "spiking"

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        self.causal = cfg.causal
        self.q_probe, self.k_probe, self.v_probe = nn.Identity(), nn.Identity(), nn.Identity()

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D] -> [T, B, H, N, d]
        t, b, n, _ = x.shape
        return x.view(t, b, n, self.n_head, self.head_dim).transpose(2, 3)

    @staticmethod
    def merge_heads(x: torch.Tensor) -> torch.Tensor:  # [T, B, H, N, d] -> [T, B, N, D]
        t, b, h, n, d = x.shape
        return x.transpose(2, 3).reshape(t, b, n, h * d)

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The token-to-token map ``[T, B, H, N, N]`` (for inspection only)."""
        raise NotImplementedError

    def matmul_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> tuple[float, float]:
        """``(MACs, ACs)`` of the operand products for the whole batch.

        ``q``, ``k``, ``v`` (``[T, B, H, N, d]``) are event tensors, as the energy engine passes them
        (:func:`hstlab.energy.counting.operand_events`): each entry the number of binary spikes it
        stands for. 0/1 spikes are their own events; an I-LIF integer spike S is S events (S binary
        spikes on its D virtual steps), so it costs S times what one spike costs and a pair of integer
        spikes ``S_q, S_k`` that meet costs ``S_q · S_k`` accumulates, as in Linear and Conv; a
        ternary spike is one event."""
        raise NotImplementedError


class SpikingProjection(nn.Module):
    """``SN(BN(Linear(x)))`` for ``parts`` outputs at once (Q, K[, V]), split on the way out.

    One fused GEMM, batch norm and neuron call instead of one per part; the parameters equal
    Spikformer's separate conv1x1-BN-LIF projections (``parts · (D² + 2D)``).
    """

    def __init__(self, cfg: HSTConfig, parts: int = 1) -> None:
        super().__init__()
        self.parts = parts
        self.linear = QuantLinear(cfg.n_embd, parts * cfg.n_embd, bias=False, weight_bits=cfg.weight_bits)
        self.norm = TokenBatchNorm(parts * cfg.n_embd)
        self.neuron = build_neuron(cfg)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # [T, B, N, D] -> parts × [T, B, N, D]
        return self.neuron(self.norm(self.linear(x))).chunk(self.parts, dim=-1)


class SpikingAttention(AttentionBase):
    """Spiking Q/K(/V), optional TIM on Q, random spike masking, then a kind-specific ``core``.

    Subclasses set ``uses_v`` and implement ``core(q, k, v) -> [T, B, H, N, d]``. The output
    projection is ``BN(Linear(.))``; the block adds the output neuron (or the membrane shortcut).
    """

    uses_v: bool = True

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg)
        self.scale = cfg.attn_scale
        self.qkv = self.make_qkv(cfg, parts=3 if self.uses_v else 2)
        self.tim = TemporalInteraction(cfg) if layer.tim else None
        self.masking = (SpikeMasking(layer.mask_ratio, layer.mask_policy, cfg.mask_in_eval)
                        if layer.mask_ratio > 0 else None)
        self.grad_stabilization = cfg.grad_stabilization
        self.proj = QuantLinear(cfg.n_embd, cfg.n_embd, bias=True, weight_bits=cfg.weight_bits)
        self.proj_norm = TokenBatchNorm(cfg.n_embd)

    def make_qkv(self, cfg: HSTConfig, parts: int) -> nn.Module:
        """A module mapping ``x`` to the ``parts`` spike tensors Q, K[, V]."""
        return SpikingProjection(cfg, parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, N, D]
        q, k, *rest = (self.split_heads(part) for part in self.qkv(x))  # each [T, B, H, N, d]
        v = rest[0] if rest else None
        if self.tim is not None:
            q = self.tim(q)
        if self.masking is not None:
            q, k = self.masking(q), self.masking(k)
        if self.grad_stabilization and q.requires_grad:
            q = head_grad_norm(q)
        q, k = self.q_probe(q), self.k_probe(k)
        v = self.v_probe(v) if v is not None else None
        out = self.mix(x, self.core(q, k, v))  # [T, B, H, N, d]
        if self.masking is not None:
            out = self.masking(out)
        return self.proj_norm(self.proj(self.merge_heads(out)))  # [T, B, N, D]

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def mix(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Combine the heads' outputs ``[T, B, H, N, d]`` using the block input ``x`` ``[T, B, N, D]``
        (a router, for expert kinds); the default keeps them as they are."""
        return out


def binary_qk_overlap(q: torch.Tensor, k: torch.Tensor, causal: bool) -> torch.Tensor:
    """``Q Kᵀ`` of binary operands (overlap counts), causally masked if asked.  # [T, B, H, N, N]"""
    scores = q @ k.transpose(-1, -2)
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], q.device), 0.0)
    return scores
