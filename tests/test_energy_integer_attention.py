"""Attention products of integer (I-LIF) and ternary spikes, counted by hand.

The convention is the one Linear and Conv follow: an integer spike S is S binary spikes on the
neuron's D virtual steps, so it costs S times what one spike costs, and a pair of integer spikes
S_q, S_k that meet costs S_q · S_k accumulates; a ternary spike {-α, 0, α} is one event.

Every attention below gets Q, K, V from an I-LIF neuron fed a fixed current, so the operands are
known integers; the engine's report is checked against hand counts, against the same operands
expanded to D binary virtual steps and priced with the binary (non-zero) rule, and against the
generic product pricing of :mod:`hstlab.energy.products`.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from hstlab import HSTConfig
from hstlab.energy.counting import CountContext, OpCounter, operand_events
from hstlab.energy.products import price_matmul
from hstlab.layers.attention import ATTENTION
from hstlab.neurons import ILIF, TernaryLIF, expand_spikes

D = 3  # the largest integer spike
# Q, K, V for T=1, B=1, H=1, N=2 tokens, d=2 channels (values 0..D)
Q = [[1, 0], [2, 1]]
K = [[3, 0], [1, 1]]
V = [[2, 1], [0, 1]]


class FixedSpikes(nn.Module):
    """Stands in for an attention's Q/K/V projection: a neuron fed a fixed current ``[T, B, N, parts·D]``."""

    def __init__(self, neuron: nn.Module, current: torch.Tensor, parts: int) -> None:
        super().__init__()
        self.neuron, self.parts = neuron, parts
        self.register_buffer("current", current)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # [T, B, N, D] (ignored)
        return self.neuron(self.current).chunk(self.parts, dim=-1)


def ilif_current(*parts: list[list[int]]) -> torch.Tensor:
    """The current that makes ``ILIF(tau=2, threshold=1)`` emit ``parts`` on its first step:
    η = x / τ, S = round(η), so x = 2 S."""
    spikes = torch.cat([torch.tensor(p, dtype=torch.float32) for p in parts], dim=-1)  # [N, parts·d]
    return (2.0 * spikes)[None, None]  # [T=1, B=1, N, parts·d]


def integer_attention(kind: str, causal: bool = False, steps: int = 1,
                      **fields) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The attention ``kind`` (1 head of width 2) whose Q, K[, V] are I-LIF integer spikes Q, K, V on
    each of ``steps`` steps (hard reset: every step starts from u = 0 and fires the same)."""
    cfg = HSTConfig(n_layer=1, n_embd=2, n_head=1, num_steps=steps, attention=kind, neuron="ilif", spike_max=D,
                    causal=causal, **fields)
    module = ATTENTION.get(kind)(cfg, cfg.layer(0)).eval()
    parts = 3 if module.uses_v else 2
    current = ilif_current(Q, K, V)[..., : 2 * parts].expand(steps, -1, -1, -1)  # [T, B, N, parts·d]
    module.qkv = FixedSpikes(ILIF(tau=2.0, max_spike=D, reset="hard"), current, parts)
    captured: dict[str, torch.Tensor] = {}
    for role in ("q", "k", "v"):
        getattr(module, f"{role}_probe").register_forward_hook(
            lambda m, i, o, role=role: captured.__setitem__(role, o.detach()))
    return module, captured


def measure(module: nn.Module) -> tuple[float, float, str]:
    """``(MACs, ACs, input kind)`` of the attention's own row (its products), one forward."""
    steps = module.qkv.current.shape[0]
    with torch.no_grad(), OpCounter(module, CountContext(batch_size=1, act_bits=32)) as counter:
        module(torch.zeros(steps, 1, 2, 2))  # [T, B, N, D]
    tally = counter.tallies[""]
    return tally.macs, tally.acs, tally.input_kind


def binary_ssa_adds(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> float:
    """SSA's ``Kᵀ V`` and ``Q (Kᵀ V)`` adds for binary operands: the non-zero rule."""
    kv = float(((k != 0).sum(-1) * (v != 0).sum(-1)).sum())
    return kv + float(q.count_nonzero()) * q.shape[-1]


# ------------------------------------------------------------------------------------- SSA
def test_ssa_prices_integer_spikes_by_hand():
    module, captured = integer_attention("ssa")
    macs, acs, kind = measure(module)
    assert captured["q"][0, 0, 0].tolist() == Q and captured["k"][0, 0, 0].tolist() == K  # the operands
    assert captured["v"][0, 0, 0].tolist() == V
    # Kᵀ V: per token (Σ_i k)(Σ_j v) = 3·3 + 2·1 = 11 adds; Q (Kᵀ V): 1+2+1 = 4 query spikes x d=2 = 8
    assert acs == 11 + 8
    assert macs == 4  # s · on the 4 entries of [T, B, H, N, d]
    assert kind == "counts"


def test_ssa_integer_spikes_cost_what_their_virtual_binary_spikes_cost():
    module, captured = integer_attention("ssa")
    _, acs, _ = measure(module)
    q, k, v = (expand_spikes(captured[r], D) for r in "qkv")  # [D, B, H, N, d] binary virtual steps
    assert set(q.unique().tolist()) <= {0.0, 1.0}
    # every virtual spike of K meets every virtual spike of V on its token; each Q spike adds a row
    pairs = sum(binary_ssa_adds(q[0:0], k[a : a + 1], v[b : b + 1]) for a in range(D) for b in range(D))
    assert acs == pairs + float(q.count_nonzero()) * 2
    # the generic product pricing (a matmul of two count tensors, outside any module) agrees on Kᵀ V
    kt, vv = captured["k"].transpose(-1, -2), captured["v"]
    assert price_matmul(kt, vv, "counts", "counts").acs == 11


def test_causal_ssa_prices_integer_spikes_by_hand():
    module, _ = integer_attention("ssa", causal=True)
    macs, acs, _ = measure(module)
    # masked Q Kᵀ: q0·k0 = 3, q1·k0 = 6, q1·k1 = 3 -> 12 adds (one per pair of virtual spikes)
    assert acs == 12
    # s ·: 4 MACs; score x V: row 0 has one non-zero score, V events of token 0: 3; row 1: 3 + 1 -> 7
    assert macs == 4 + 7


# ------------------------------------------------------------------------ the other spiking kinds
def test_sdsa_prices_integer_spikes_by_hand():
    module, _ = integer_attention("sdsa")
    macs, acs, _ = measure(module)
    # Σ_N K ⊙ V: k ⊙ v = [[6, 0], [0, 1]] -> 7 pairs of virtual spikes; Q ⊙ mask: 4 query spikes
    assert (macs, acs) == (0, 7 + 4)


def test_qk_attention_prices_integer_spikes_by_hand():
    module, _ = integer_attention("qk")
    macs, acs, _ = measure(module)
    # the Q sums: 4 query spikes; the K mask: 3 + 0 + 1 + 1 = 5 key spikes
    assert (macs, acs) == (0, 4 + 5)


def test_statten_prices_integer_spikes_as_ssa():
    ssa, _ = integer_attention("ssa", steps=2)
    statten, captured = integer_attention("statten", steps=2, attn_block=2)
    # a block of 2 steps: K̃ᵀ Ṽ pairs each (step, token)'s k and v spikes: 2 x 11; 2 x 4 query spikes x d=2
    assert measure(statten)[:2] == measure(ssa)[:2] == (8, 2 * 11 + 2 * 4 * 2)
    assert captured["q"][1, 0, 0].tolist() == Q  # the second step fires as the first


def test_emsa_gate_counts_integer_router_spikes():
    cfg = HSTConfig(n_layer=1, n_embd=4, n_head=1, num_steps=1, attention="emsa", experts=2, neuron="ilif",
                    spike_max=D)
    module = ATTENTION.get("emsa")(cfg, cfg.layer(0))
    module.last_gate = torch.tensor([[[[2.0, 0.0], [1.0, 3.0]]]])  # [T, B, N, m]: 6 router spikes
    zeros = torch.zeros(1, 1, 2, 2, 2)  # [T, B, m, N, d]: experts with no spikes cost nothing
    assert module.matmul_ops(zeros, zeros, zeros) == (8.0, 6 * 2)  # s · on 8 entries; 6 spikes x d=2


def test_linear_and_attention_follow_one_convention():
    """An integer spike S costs S accumulates per weight in a Linear, and S per pair in attention."""
    neuron = ILIF(tau=2.0, max_spike=D)
    net = nn.Sequential(neuron, nn.Linear(2, 5, bias=False))
    x = ilif_current(Q)  # [1, 1, 2, 2]: spikes Q
    with torch.no_grad(), OpCounter(net, CountContext(batch_size=1, act_bits=32)) as counter:
        net(x)
    assert counter.tallies["1"].acs == 4 * 5  # 4 spikes x 5 outputs
    module, _ = integer_attention("ssa")
    assert measure(module)[1] == 11 + 4 * 2  # the same 4 spikes of Q, each adding a row of d=2


# ---------------------------------------------------------------------------- ternary spikes
def test_ssa_prices_ternary_spikes_as_one_event_each():
    cfg = HSTConfig(n_layer=1, n_embd=2, n_head=1, num_steps=1, attention="ssa", neuron="ternary")
    module = ATTENTION.get("ssa")(cfg, cfg.layer(0)).eval()
    alpha = 0.5
    current = torch.tensor([[[[4.0, 0.0, -4.0, 4.0, 4.0, 0.0], [-4.0, 4.0, 0.0, 0.0, 4.0, -4.0]]]])
    module.qkv = FixedSpikes(TernaryLIF(tau=2.0, alpha_init=alpha), current, 3)  # ±α where |x| = 4
    macs, acs, kind = measure(module)
    # q = [[α, 0], [-α, α]]: 3 events; k = [[-α, α], [0, 0]]: (2, 0); v = [[α, 0], [α, -α]]: (1, 2)
    assert acs == (2 * 1 + 0 * 2) + 3 * 2
    assert kind == "signed"


# ------------------------------------------------------------------------------- the events
@pytest.mark.parametrize(("values", "kind", "events"), [
    ([0.0, 1.0], "spikes", [0.0, 1.0]),
    ([0.0, 3.0], "counts", [0.0, 3.0]),
    ([-0.5, 0.5, 0.0], "signed", [1.0, 1.0, 0.0]),
    ([-2.0, 1.0, 0.0], "real", [2.0, 1.0, 0.0]),
    ([0.25, 0.0], "real", [1.0, 0.0]),
])
def test_operand_events(values, kind, events):
    assert operand_events(torch.tensor(values), kind).tolist() == events


def test_binary_operands_are_priced_as_before():
    """0/1 spikes are their own events: every kind's count on binary operands is its non-zero rule."""
    cfg = dataclasses.replace(HSTConfig(n_layer=1, n_embd=2, n_head=1, num_steps=1), attention="ssa")
    module = ATTENTION.get("ssa")(cfg, cfg.layer(0))
    q, k, v = (torch.tensor(x, dtype=torch.float32).clamp(max=1)[None, None, None] for x in (Q, K, V))
    assert module.matmul_ops(q, k, v) == (4.0, binary_ssa_adds(q, k, v))


def test_spike_gate_counts_ternary_and_integer_gate_events():
    from hstlab.layers.attention.spikegpt import SpikeGate

    class Gated(nn.Module):
        def __init__(self, neuron: nn.Module) -> None:
            super().__init__()
            self.neuron, self.gate = neuron, SpikeGate()

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 4]
            return self.gate(self.neuron(x), torch.ones_like(x))

    def gate_acs(neuron: nn.Module, x: torch.Tensor) -> float:
        net = Gated(neuron)
        with torch.no_grad(), OpCounter(net, CountContext(batch_size=1, act_bits=32)) as counter:
            net(x)
        return counter.tallies["gate"].acs

    x = torch.tensor([[[4.0, -4.0, 0.0, -4.0]]])  # [T=1, B=1, 4]
    assert gate_acs(TernaryLIF(tau=2.0, alpha_init=0.5), x) == 3  # +α, -α, -α: 3 events (a sum gives -0.5)
    assert gate_acs(ILIF(tau=2.0, max_spike=D), x.abs() * 1.5) == 3 + 3 + 0 + 3  # η = 3 -> S = 3
