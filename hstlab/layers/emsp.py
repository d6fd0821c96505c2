"""EMSP (SEMM, NeurIPS 2024): the spiking MLP with channel-wise experts mixed by a spiking router.

The MLP's hidden layer splits into ``m = experts`` channel groups, one expert each. A spiking
router decides, per step and token, which groups reach ``fc2``; router and experts combine
element-wise (no softmax, no top-k):

    R = SN(BN(x W_r))                              # [T, B, N, m]  router spikes (x: [T, B, N, D])
    H = SN(BN(fc1 x))                              # [T, B, N, m, h/m]  hidden spikes, m groups
    out = BN(fc2(flatten(R[..., None] ⊙ H)))       # [T, B, N, D]

A standard-mode MLP half ignores ``mlp_kind`` (it is always the GELU MLP). Energy: the router is
its own Linear and neuron rows; the gate is a mask, and what it saves shows in ``fc2``, whose
accumulates follow the gated spikes (``nnz(R ⊙ H) · D``).
"""

from __future__ import annotations

import torch
from torch import nn

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers.attention.emsa import SpikingRouter
from hstlab.layers.mlp import MLPS, SpikingMLP


@MLPS.register("emsp")
class ExpertsMixtureMLP(SpikingMLP):
    """EMSP: Spikformer's MLP whose hidden channel groups are gated by a spiking router.

    The router's spikes pass ``gate_probe`` (``[T, B, N, m]``; a :class:`hstlab.Recorder` keeps
    them in ``rec.gates``).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", mlp_kind="emsp", experts=4)
        >>> ExpertsMixtureMLP(cfg, cfg.layer(0))(torch.rand(2, 1, 3, 32)).shape
        torch.Size([2, 1, 3, 32])
    """

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg)
        self.experts = layer.experts
        self.router = SpikingRouter(cfg, layer.experts)
        self.gate_probe = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        gate = self.gate_probe(self.router(x))  # [T, B, N, m]
        hidden = self.neuron1(self.norm1(self.fc1(x)))  # [T, B, N, h]
        groups = hidden.unflatten(-1, (self.experts, -1))  # [T, B, N, m, h/m]
        gated = (groups * gate.unsqueeze(-1)).flatten(-2)  # [T, B, N, h]
        return self.norm2(self.fc2(gated))  # [T, B, N, D]
