"""Temporal interaction module (TIM): causal cross-step mixing of the query.

``Q̃_1 = Q_1``, ``Q̃_t = SN(α · SN(Conv1d(Q̃_{t-1})) + (1 - α) · Q_t)``; the Conv1d runs over
each head's channel axis with one shared kernel (as in the TIM paper).
"""

from __future__ import annotations

import torch
from torch import nn

from hstlab.config import HSTConfig
from hstlab.neurons import build_neuron


class TemporalInteraction(nn.Module):
    """TIM on ``[T, B, H, N, d]`` query spikes.

    Example:
        >>> from hstlab import HSTConfig
        >>> tim = TemporalInteraction(HSTConfig.from_preset("tiny"))
        >>> tim(torch.ones(3, 1, 2, 4, 8)).shape
        torch.Size([3, 1, 2, 4, 8])
    """

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__()
        self.alpha = cfg.tim_alpha
        self.conv = nn.Conv1d(1, 1, cfg.tim_kernel, padding=cfg.tim_kernel // 2, bias=False)
        self.inner_neuron = build_neuron(cfg)
        self.outer_neuron = build_neuron(cfg)

    def forward(self, q: torch.Tensor) -> torch.Tensor:  # q: [T, B, H, N, d]
        steps = [q[0]]
        for t in range(1, q.shape[0]):
            prev = steps[-1]
            mixed = self.conv(prev.reshape(-1, 1, prev.shape[-1])).view_as(prev)  # [B, H, N, d]
            carried = self.inner_neuron(mixed[None])[0]
            steps.append(self.outer_neuron((self.alpha * carried + (1 - self.alpha) * q[t])[None])[0])
        return torch.stack(steps)
