"""EMSA (SEMM, NeurIPS 2024): head-wise spiking experts mixed by a spiking router.

The embedding splits into ``m = experts`` heads of width ``d = D / m``; each head is one SSA
expert. A spiking router picks, per step and token, which experts pass their output on. The
router and the experts are combined element-wise: no softmax, no top-k, so the number of
experts a token uses is whatever its router spikes say (zero to all m):

    R   = SN(BN(x W_r))                           # [T, B, N, m]  router spikes (x: [T, B, N, D])
    E_h = SN_θa(s · Q_h (K_hᵀ V_h))               # [T, B, m, N, d]  expert h = SSA head h
    O_h = R[..., h] ⊙ E_h                         # [T, B, m, N, d]  (R broadcast over the head's d)
    out = BN(Linear(concat_h O_h))                # [T, B, N, D]

With ``causal=True`` an expert is causal SSA (the masked ``Q Kᵀ`` map times V). Energy: the
router's Linear and neuron are their own rows; here, the experts cost SSA's products and the gate
one masked add per router spike per channel of its head (``nnz(R) · d``; an I-LIF router's
spike S counts S times).
"""

from __future__ import annotations

import torch
from torch import nn

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers.attention.base import ATTENTION, event_total
from hstlab.layers.attention.ssa import SpikingSelfAttention
from hstlab.layers.norm import TokenBatchNorm
from hstlab.layers.quant import QuantLinear
from hstlab.neurons import build_neuron


class SpikingRouter(nn.Module):
    """``SN(BN(x W_r))``: one spike per (step, token, expert) that lets the expert through.

    Example:
        >>> from hstlab import HSTConfig
        >>> SpikingRouter(HSTConfig.from_preset("tiny"), 4)(torch.rand(2, 1, 3, 32)).shape
        torch.Size([2, 1, 3, 4])
    """

    def __init__(self, cfg: HSTConfig, experts: int) -> None:
        super().__init__()
        self.linear = QuantLinear(cfg.n_embd, experts, bias=False, weight_bits=cfg.weight_bits)
        self.norm = TokenBatchNorm(experts)
        self.neuron = build_neuron(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D] -> [T, B, N, m]
        return self.neuron(self.norm(self.linear(x)))  # [T, B, N, m]


@ATTENTION.register("emsa")
class ExpertsMixtureAttention(SpikingSelfAttention):
    """EMSA: ``experts`` SSA heads, each gated per token by a spiking router (module docstring).

    The router's spikes go through ``gate_probe`` (``[T, B, N, m]``), which a
    :class:`hstlab.Recorder` records in ``rec.gates``; ``last_gate`` keeps the latest (detached)
    for the energy count.

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", attention="emsa", experts=4)
        >>> ExpertsMixtureAttention(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "emsa"

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg, layer)
        self.n_head, self.head_dim = layer.experts, cfg.n_embd // layer.experts  # one head per expert
        self.router = SpikingRouter(cfg, layer.experts)
        self.gate_probe = nn.Identity()
        self.last_gate: torch.Tensor | None = None

    def mix(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # x: [T, B, N, D], out: [T, B, m, N, d]
        gate = self.gate_probe(self.router(x))  # [T, B, N, m]
        self.last_gate = gate.detach()  # [T, B, N, m], kept for matmul_ops
        return out * gate.transpose(-1, -2).unsqueeze(-1)  # [T, B, m, N, d] ⊙ [T, B, m, N, 1]

    def matmul_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> tuple[float, float]:
        """The m SSA experts' products, plus the gate: d masked adds per router event (an I-LIF gate S
        is S events, a ternary gate one)."""
        macs, acs = super().matmul_ops(q, k, v)  # the m SSA experts
        if self.last_gate is None:
            return macs, acs
        gate = self.last_gate  # [T, B, N, m]
        if getattr(self.router.neuron, "signed_spikes", False):
            gate = gate.ne(0).to(gate.dtype)  # a ternary spike is one event whatever its sign and size
        return macs, acs + event_total(gate) * self.head_dim  # router events x d
