r"""SpikeGPT-style token and channel mixing: an RWKV linear recurrence over the token axis.

Order of one layer, as in SpikeGPT (Zhu, Zhao, Eshraghian 2023; its released ``model_run.py``):
``x = x + SN(TimeMix(x))`` then ``x = x + SN(ChannelMix(x))``; here the block's residual supplies
the shortcut (SEW ``x + SN(.)``, or with ``residual="membrane"`` SpikeGPT's real-valued stream
read through a neuron, ``x + Mix(SN(x))``, as the ``spikegpt-small`` preset uses), this module is
the ``TimeMix`` branch (attention kind ``"spikegpt"``) and :class:`SpikingChannelMix` the MLP
branch of the same layer.

Token mixing, per spiking step ``t`` (the recurrence runs over the tokens ``n``, every step ``t``
of ``[T, B, N, D]`` on its own), with ``s_n`` the layer input and ``s_{n-1}`` the token shift:

.. math::

    [k_n, v_n, r_n] &= [BN(W_k z_n),\ BN(W_v z_n),\ SN(BN(W_r z_n))],\quad z_n = [s_n; s_{n-1}] \\
    wkv_n &= \frac{\sum_{j<n} e^{-(n-1-j) w + k_j} v_j + e^{u + k_n} v_n}
                 {\sum_{j<n} e^{-(n-1-j) w + k_j} + e^{u + k_n}},\qquad w = e^{\text{time\_decay}} > 0 \\
    y_n &= BN(W_o\, SN_{\theta_a}(r_n \odot wkv_n))

per channel. RWKV's token shift ``mu * s_n + (1 - mu) * s_{n-1}`` becomes one projection of the
stacked ``[s_n; s_{n-1}]`` (``mu`` folds into the weights): the weights then read the spikes
(one accumulate per spike) instead of a real-valued mix. SpikeGPT's sigmoid receptance becomes a
spiking gate ``r`` (a binary mask), and the gated average spikes before ``W_o``, as SSA's output.
Only the recurrence itself is real-valued; :meth:`SpikeGPTTimeMix.matmul_ops` prices it at
``WKV_MACS_PER_ELEMENT`` MACs per element of ``k`` (exp, three multiply-adds, output mix, divide).

The recurrence keeps ``(a, b, p)``: numerator and denominator scaled by ``e^{-p}``, ``p`` the
running maximum exponent, so nothing overflows. Streaming (:mod:`hstlab.generate`) hands the
state from one call to the next; a call with ``stream`` unset starts from zeros.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers.attention.base import ATTENTION, AttentionBase
from hstlab.layers.norm import TokenBatchNorm
from hstlab.layers.quant import QuantLinear
from hstlab.neurons import build_neuron

WKV_MACS_PER_ELEMENT = 7  # e^k; e^k v; a <- e^-w a + e^k v; b <- e^-w b + e^k; two bonus mixes; divide
_NEG = -1e30  # initial running maximum exponent (e^{-1e30 - x} = 0 without inf - inf)

WKVState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def wkv_scan(k: torch.Tensor, v: torch.Tensor, decay: torch.Tensor, bonus: torch.Tensor,
             state: WKVState | None = None) -> tuple[torch.Tensor, WKVState]:
    """RWKV's ``wkv`` over the token axis (dim 2) of ``k, v`` ``[T, B, N, D]``; ``decay`` ``w > 0`` and
    ``bonus`` ``u`` are ``[D]``. Returns ``wkv`` ``[T, B, N, D]`` and the state after the last token.

    Example:
        >>> k, v = torch.zeros(1, 1, 3, 1), torch.tensor([1.0, 3.0, 5.0]).view(1, 1, 3, 1)
        >>> out, _ = wkv_scan(k, v, torch.tensor([math.log(2.0)]), torch.zeros(1))  # weights 1/2, 1, 1
        >>> [round(x, 4) for x in out.flatten().tolist()]  # 1, (1 + 3) / 2, (1/2 + 3 + 5) / (5/2)
        [1.0, 2.0, 3.4]
    """
    t, b, n, d = k.shape
    if state is None:
        num = k.new_zeros(t, b, d)  # [T, B, D]
        den = k.new_zeros(t, b, d)  # [T, B, D]
        top = k.new_full((t, b, d), _NEG)  # [T, B, D]
    else:
        num, den, top = state
    outs = []
    for i in range(n):
        k_i, v_i = k[:, :, i], v[:, :, i]  # [T, B, D]
        now = bonus + k_i  # [T, B, D] exponent of the current token
        m = torch.maximum(top, now)  # [T, B, D]
        e_past, e_now = torch.exp(top - m), torch.exp(now - m)  # [T, B, D]
        outs.append((e_past * num + e_now * v_i) / (e_past * den + e_now))  # [T, B, D]
        decayed = top - decay  # [T, B, D] exponent of the past after one more token
        m = torch.maximum(decayed, k_i)  # [T, B, D]
        e_past, e_new = torch.exp(decayed - m), torch.exp(k_i - m)  # [T, B, D]
        num, den, top = e_past * num + e_new * v_i, e_past * den + e_new, m  # [T, B, D] each
    return torch.stack(outs, dim=2), (num, den, top)  # [T, B, N, D]


class Streamed(nn.Module):
    """A module with recurrent state over tokens that can carry it from one call to the next.

    ``stream`` is ``None`` (each call starts from zeros, as a training forward) or a dict the
    forward reads its initial state from and writes its final state to (detached). It is not a
    neuron memory: ``reset_state()`` leaves it alone.
    """

    stream: dict[str, torch.Tensor | tuple] | None = None

    def begin_stream(self) -> None:
        self.stream = {}

    def end_stream(self) -> None:
        self.stream = None

    def carried(self, key: str) -> torch.Tensor | tuple | None:
        return None if self.stream is None else self.stream.get(key)

    def carry(self, key: str, value: torch.Tensor | tuple) -> None:
        if self.stream is not None:
            self.stream[key] = tuple(x.detach() for x in value) if isinstance(value, tuple) else value.detach()


def token_shift(x: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """``[s_n; s_{n-1}]`` along the last axis of ``x`` ``[T, B, N, D]`` -> ``[T, B, N, 2D]``
    (``previous`` ``[T, B, D]``: the token before the first, zeros if None)."""
    first = x.new_zeros(x.shape[0], x.shape[1], 1, x.shape[3]) if previous is None else previous.unsqueeze(2)
    shifted = torch.cat([first, x[:, :, :-1]], dim=2)  # [T, B, N, D]
    return torch.cat([x, shifted], dim=-1)  # [T, B, N, 2D]


class SpikeGate(nn.Module):
    """``gate ⊙ x`` with a binary ``gate``: each spike passes one value (priced as one accumulate)."""

    def forward(self, gate: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # [..., D] each
        return gate * x


class SpikingChannelMix(Streamed):
    """SpikeGPT's channel mixing with spikes: ``r ⊙ BN(W_v SN(BN(W_k z)))``, ``r = SN(BN(W_r z))``,
    ``z = [s_n; s_{n-1}]`` (RWKV's ``sigmoid(r) * W_v relu(k)²`` with spiking key and gate).

    Example:
        >>> from hstlab import HSTConfig
        >>> SpikingChannelMix(HSTConfig.from_preset("tiny"))(torch.rand(2, 1, 4, 32)).shape
        torch.Size([2, 1, 4, 32])
    """

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__()
        hidden = int(cfg.n_embd * cfg.mlp_ratio)
        self.key = QuantLinear(2 * cfg.n_embd, hidden, bias=False, weight_bits=cfg.weight_bits)
        self.key_norm = TokenBatchNorm(hidden)
        self.key_neuron = build_neuron(cfg)
        self.receptance = QuantLinear(2 * cfg.n_embd, cfg.n_embd, bias=False, weight_bits=cfg.weight_bits)
        self.receptance_norm = TokenBatchNorm(cfg.n_embd)
        self.receptance_neuron = build_neuron(cfg)
        self.value = QuantLinear(hidden, cfg.n_embd, bias=False, weight_bits=cfg.weight_bits)
        self.value_norm = TokenBatchNorm(cfg.n_embd)
        self.gate = SpikeGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, N, D]
        z = token_shift(x, self.carried("x"))  # [T, B, N, 2D]
        self.carry("x", x[:, :, -1])  # [T, B, D] the last token, shifted into the next call
        k = self.key_neuron(self.key_norm(self.key(z)))  # [T, B, N, H] spikes
        r = self.receptance_neuron(self.receptance_norm(self.receptance(z)))  # [T, B, N, D] spikes
        return self.gate(r, self.value_norm(self.value(k)))  # [T, B, N, D]


@ATTENTION.register("spikegpt")
class SpikeGPTTimeMix(AttentionBase, Streamed):
    """SpikeGPT's token mixing (see the module docstring); always causal, linear in N.

    The probes see ``q = r`` (the spiking gate), ``k`` and ``v`` as ``[T, B, H, N, d]``; the layer's
    MLP half is :class:`SpikingChannelMix` (``spiking_mlp``).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", attention="spikegpt")
        >>> SpikeGPTTimeMix(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "spikegpt"
    spiking_mlp = SpikingChannelMix

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg)
        self.causal = True
        d = cfg.n_embd
        self.kvr = QuantLinear(2 * d, 3 * d, bias=False, weight_bits=cfg.weight_bits)
        self.kvr_norm = TokenBatchNorm(3 * d)
        self.receptance_neuron = build_neuron(cfg)
        # RWKV's initial decays: channel c forgets at rate e^{-w_c}, w spread from fast to slow
        ratio = torch.arange(d, dtype=torch.float32) / max(d - 1, 1)  # [D]
        self.time_decay = nn.Parameter(-5.0 + 8.0 * ratio ** (0.7 + 1.3 * layer.index / max(cfg.n_layer - 1, 1)))  # [D]
        self.time_first = nn.Parameter(torch.full((d,), math.log(0.3)))  # [D] bonus u of the current token
        self.gate = SpikeGate()
        self.attn_neuron = build_neuron(cfg, threshold=cfg.attn_threshold)
        self.proj = QuantLinear(d, d, bias=True, weight_bits=cfg.weight_bits)
        self.proj_norm = TokenBatchNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, N, D]
        z = token_shift(x, self.carried("x"))  # [T, B, N, 2D]
        self.carry("x", x[:, :, -1])  # [T, B, D] the last token, shifted into the next call
        k, v, r = self.kvr_norm(self.kvr(z)).chunk(3, dim=-1)  # [T, B, N, D] each
        r = self.receptance_neuron(r)  # [T, B, N, D] spikes
        r = self.merge_heads(self.q_probe(self.split_heads(r)))  # probes see [T, B, H, N, d]
        k = self.merge_heads(self.k_probe(self.split_heads(k)))
        v = self.merge_heads(self.v_probe(self.split_heads(v)))
        wkv, state = wkv_scan(k, v, self.time_decay.exp(), self.time_first, self.carried("wkv"))  # [T, B, N, D]
        self.carry("wkv", state)
        mixed = self.attn_neuron(self.gate(r, wkv))  # [T, B, N, D] spikes
        return self.proj_norm(self.proj(mixed))  # [T, B, N, D]

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Weight of token j in ``wkv_n`` averaged over each head's channels ``[T, B, H, N, N]``
        (the map of a stream starts at the first token of this call)."""
        n = k.shape[-2]
        pos = torch.arange(n, device=k.device)  # [N]
        lag = (pos.view(-1, 1) - 1 - pos.view(1, -1)).to(k.dtype)  # [N, N] n-1-j
        decay = self.split_heads(self.time_decay.exp().to(k.dtype).view(1, 1, 1, -1))[0, 0, :, 0]  # [H, d]
        first = self.split_heads(self.time_first.to(k.dtype).view(1, 1, 1, -1))[0, 0, :, 0]  # [H, d]
        expo = k.unsqueeze(-3) - lag.view(n, n, 1) * decay.view(-1, 1, 1, decay.shape[-1])  # [T, B, H, N, N, d]
        diag = first.unsqueeze(-2) + k  # [T, B, H, N, d] exponent of the current token (j = n)
        eye = torch.eye(n, dtype=torch.bool, device=k.device).view(n, n, 1)  # [N, N, 1]
        expo = torch.where(eye, diag.unsqueeze(-2).expand_as(expo), expo)  # [T, B, H, N, N, d]
        expo = expo.masked_fill((pos.view(-1, 1) < pos.view(1, -1)).view(n, n, 1), float("-inf"))  # j > n: unseen
        return expo.softmax(dim=-2).mean(dim=-1)  # [T, B, H, N, N], rows sum to 1

    def matmul_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> tuple[float, float]:
        """``(MACs, ACs)`` of the recurrence: ``WKV_MACS_PER_ELEMENT`` per element of ``k``; the gate
        (one accumulate per spike of ``r``) is the :class:`SpikeGate`'s row."""
        return float(WKV_MACS_PER_ELEMENT * k.numel()), 0.0
