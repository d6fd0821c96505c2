"""Energy engine: analytic op counts per module type, the memory model, the report object."""

from __future__ import annotations

import importlib.util
import json
import math

import pandas as pd
import pytest
import torch
from energy_support import row
from torch import nn

from hstlab.energy import (
    ENERGY_PRESETS,
    MEMORY_LEVELS,
    energy_per_sample,
    energy_report,
    memory_energy,
    op_energy,
    select_memory_level,
)
from hstlab.energy.constants import get_memory_level, layer_op_energy
from hstlab.energy.counting import time_steps

FP32 = ENERGY_PRESETS["45nm-fp32"].ops


def spikes(*shape: int, rate: float = 0.3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=gen) < rate).float()


class Heaviside(nn.Module):
    """A stateless spiking neuron (fires where input > 0.5)."""

    is_spiking_neuron = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0.5).float()


class IFNeuron(nn.Module):
    """Integrate-and-fire with state that persists across calls until ``reset_state``."""

    is_spiking_neuron = True

    def __init__(self) -> None:
        super().__init__()
        self.v: torch.Tensor | None = None
        self.resets = 0

    def reset_state(self) -> None:
        self.v = None
        self.resets += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, ...]
        out = []
        v = torch.zeros_like(x[0]) if self.v is None else self.v
        for x_t in x:
            v = v + x_t
            s = (v >= 1.0).float()
            v = v * (1 - s)
            out.append(s)
        self.v = v
        return torch.stack(out)


class FakeSoftmaxAttention(nn.Module):
    """Implements the hstlab attention protocol: probes and ``matmul_ops`` on ``[T, B, N, D]``."""

    attention_kind = "softmax"
    mode = "standard"

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_probe, self.k_probe, self.v_probe = nn.Identity(), nn.Identity(), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        t, b, n, d = x.shape
        q, k, v = (p.view(t, b, n, self.heads, self.head_dim).transpose(2, 3) for p in self.qkv(x).chunk(3, -1))
        q, k, v = self.q_probe(q), self.k_probe(k), self.v_probe(v)  # [T, B, H, N, d]
        out = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), -1) @ v
        return out.transpose(2, 3).reshape(t, b, n, d)

    def matmul_ops(self, q, k, v):
        *lead, n, d = q.shape
        return 2.0 * math.prod(lead) * n * n * d, 0.0


class FakeSpikingAttention(FakeSoftmaxAttention):
    """SSA-like ``Q (Kᵀ V)`` on spikes; ``matmul_ops`` counts from the non-zero operands."""

    attention_kind = "ssa"
    mode = "spiking"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, n, d = x.shape
        q, k, v = ((p > 0).float().view(t, b, n, self.heads, self.head_dim).transpose(2, 3)
                   for p in self.qkv(x).chunk(3, -1))
        q, k, v = self.q_probe(q), self.k_probe(k), self.v_probe(v)
        return (q @ (k.transpose(-1, -2) @ v)).transpose(2, 3).reshape(t, b, n, d)

    def matmul_ops(self, q, k, v):
        kv = float(((k != 0).sum(-1) * (v != 0).sum(-1)).sum())
        return 0.0, kv + float(torch.count_nonzero(q)) * q.shape[-1]


# ------------------------------------------------------------------------------------ constants
def test_op_energy_matches_horowitz_and_scaling_rule() -> None:
    assert op_energy(32, "float").mac_j == pytest.approx(4.6e-12)
    assert op_energy(16, "float").ac_j == pytest.approx(0.4e-12)
    assert op_energy(8, "int").mac_j == pytest.approx(0.23e-12)
    assert op_energy(8, "int").ac_j == pytest.approx(0.03e-12)
    int4 = op_energy(4, "int")
    assert int4.mac_j == pytest.approx(0.2e-12 / 4 + 0.03e-12 / 2)
    assert int4.ac_j == pytest.approx(0.015e-12)
    assert layer_op_energy(ENERGY_PRESETS["45nm-fp16"], 32).name == "fp16"
    assert layer_op_energy(ENERGY_PRESETS["45nm-fp32"], 4).name == "int4"


def test_memory_model_levels_and_cost() -> None:
    assert select_memory_level(0).name == "sram-8kb"
    assert select_memory_level(8 * 1024).name == "sram-8kb"
    assert select_memory_level(8 * 1024 + 1).name == "sram-32kb"
    assert select_memory_level(1024**2).name == "sram-1mb"
    assert select_memory_level(1024**2 + 1).name == "dram"
    assert [m.access_j for m in MEMORY_LEVELS] == sorted(m.access_j for m in MEMORY_LEVELS)
    assert memory_energy(64, get_memory_level("sram-8kb")) == pytest.approx(10e-12)
    assert memory_energy(32, get_memory_level("dram")) == pytest.approx(0.65e-9)
    with pytest.raises(ValueError, match="memory_level='l9'"):
        get_memory_level("l9")


# ----------------------------------------------------------------------------------------- linear
def test_linear_on_known_spikes_costs_nnz_times_out_features() -> None:
    x = spikes(5, 2, 7)  # [T, B, in]
    layer = nn.Linear(7, 3)
    report = energy_report(layer, x, memory=False)
    r = row(report, "")
    assert (r["kind"], r["mode"]) == ("linear", "spiking")
    assert r["acs"] == pytest.approx(int(x.count_nonzero()) * 3 / 2)  # per sample: B = 2
    assert r["macs"] == 0
    assert r["input_rate"] == pytest.approx(float(x.mean()))
    assert report.compute_j == pytest.approx(r["acs"] * FP32.ac_j)


def test_spike_counts_cost_one_accumulate_per_spike() -> None:
    """Event counts declared as such: a count c on one synapse is c accumulates."""
    x = torch.tensor([[[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]])  # [T=1, B=2, in=3]
    r = row(energy_report(nn.Linear(3, 4), x, memory=False, input_kind="counts"), "")
    assert (r["mode"], r["macs"], r["input_kind"]) == ("spiking", 0, "counts")
    assert r["acs"] == pytest.approx(6 * 4 / 2)  # 6 spikes x 4 outputs, per sample
    undeclared = row(energy_report(nn.Linear(3, 4), x, memory=False), "")  # integers, but not from spikes
    assert (undeclared["mode"], undeclared["acs"], undeclared["macs"]) == ("standard", 0, 3 * 4 / 2 * 2)
    with pytest.raises(ValueError, match="input_kind='counts'.*allowed input_kind values: auto, spikes"):
        energy_report(nn.Linear(3, 4), -x, input_kind="counts")


def test_all_zero_spikes_cost_zero_compute() -> None:
    model = nn.Sequential(nn.Linear(6, 4), Heaviside(), nn.Linear(4, 2))
    report = energy_report(model, torch.zeros(3, 2, 6), memory=False)
    assert row(report, "0")["compute_j"] == 0
    assert row(report, "0")["mode"] == "spiking"
    assert row(report, "2")["compute_j"] == 0  # its input (the neuron's spikes) is all zero too


def test_float_input_costs_dense_macs() -> None:
    x = torch.rand(4, 3, 5, 8) + 0.1  # [T, B, N, in], real
    report = energy_report(nn.Linear(8, 6), x, memory=False)
    r = row(report, "")
    assert (r["mode"], r["acs"]) == ("standard", 0)
    assert r["macs"] == pytest.approx(4 * 5 * 8 * 6)  # per sample: T * N * in * out
    assert r["steps"] == 4
    assert report.compute_j == pytest.approx(4 * 5 * 8 * 6 * FP32.mac_j)


def test_doubling_time_steps_doubles_spiking_compute() -> None:
    model = nn.Sequential(nn.Linear(10, 8), Heaviside(), nn.Linear(8, 4))
    x = spikes(3, 2, 10)
    one = energy_report(model, x)
    two = energy_report(model, torch.cat([x, x]))  # T: 3 -> 6, same spikes twice
    assert one.acs > 0
    assert two.acs == pytest.approx(2 * one.acs)
    assert two.compute_j == pytest.approx(2 * one.compute_j)
    assert two.total_j == pytest.approx(2 * one.total_j)


def test_quantized_weights_use_their_bit_width() -> None:
    class QuantLinear(nn.Linear):
        weight_bits = 4

    x = torch.rand(2, 1, 8)
    report = energy_report(QuantLinear(8, 8), x, memory=False)
    assert row(report, "")["format"] == "int4"
    assert report.compute_j == pytest.approx(2 * 8 * 8 * op_energy(4, "int").mac_j)
    int8 = energy_report(nn.Linear(8, 8), x, preset="45nm-int8", memory=False)
    assert int8.compute_j == pytest.approx(2 * 8 * 8 * 0.23e-12)


# ------------------------------------------------------------------------------------------ conv
def test_conv_real_input_costs_out_numel_times_fan_in() -> None:
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    x = torch.rand(3 * 2, 4, 5, 5) + 0.1  # time folded into the batch: [T*B, C, H, W]
    model = _FoldTime(conv)
    report = energy_report(model, x.view(3, 2, 4, 5, 5), memory=False)
    r = row(report, "conv")
    assert r["macs"] == pytest.approx(3 * (6 * 5 * 5) * (4 // 2) * 9)  # per sample: T * out_numel * C_in/g * k²
    assert r["steps"] == 3


class _FoldTime(nn.Module):
    """Runs a stateless layer on every step by folding T into the batch (design.md §2)."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, C, H, W]
        return self.conv(x.flatten(0, 1)).unflatten(0, x.shape[:2])


def test_conv_spike_input_counts_exact_accumulates() -> None:
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    x = spikes(2, 2, 3, 6, 6, rate=0.25)  # [T, B, C, H, W]
    report = energy_report(_FoldTime(conv), x, memory=False)
    r = row(report, "conv")
    # brute force: every (non-zero input, kernel tap) pair inside the padded window, times C_out
    cols = nn.functional.unfold(x.flatten(0, 1), 3, padding=1)  # [TB, C*9, positions]
    assert r["mode"] == "spiking"
    assert r["acs"] == pytest.approx(float(cols.sum()) * 5 / 2)
    assert r["macs"] == 0


# ------------------------------------------------------------------------------------- attention
def test_multihead_attention_matches_closed_form() -> None:
    tokens, batch, embed, heads = 6, 4, 8, 2
    mha = nn.MultiheadAttention(embed, heads)
    x = torch.rand(tokens, batch, embed) + 0.1  # [L, Nb, E]: here Nb = B (one step)

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    report = energy_report(Wrap(), x, memory=False)  # B = x.shape[1]
    r, proj = row(report, "attn"), row(report, "attn.out_proj")
    per_sample = 1 / batch
    parts = report.breakdown["attn"]
    assert parts["products_macs"] == pytest.approx(2 * batch * tokens * tokens * embed * per_sample)
    assert parts["softmax_macs"] == pytest.approx(3 * batch * heads * tokens * tokens * per_sample)
    assert parts["in_proj_q_macs"] == pytest.approx(tokens * batch * embed * embed * per_sample)
    assert r["macs"] == pytest.approx(sum(v for k, v in parts.items() if k.endswith("macs")))
    assert proj["macs"] == pytest.approx(tokens * embed * embed)
    assert set(report.layers["name"]) <= set(dict(Wrap().named_modules()))


def test_protocol_softmax_attention_products_and_probes() -> None:
    t, b, n, d, h = 2, 3, 5, 8, 2
    model = FakeSoftmaxAttention(d, h)
    report = energy_report(model, torch.rand(t, b, n, d), memory=False)
    parts = report.breakdown[""]
    assert parts["products_macs"] == pytest.approx(2 * t * h * n * n * (d // h))  # per sample
    assert parts["softmax_macs"] == pytest.approx(3 * t * h * n * n)
    assert row(report, "qkv")["macs"] == pytest.approx(t * n * d * 3 * d)
    assert row(report, "")["mode"] == "standard"


def test_protocol_spiking_attention_counts_from_nonzero_operands() -> None:
    model = FakeSpikingAttention(8, 2)
    x = spikes(2, 2, 4, 8, rate=0.5)
    report = energy_report(model, x, memory=False)
    r = row(report, "")
    assert (r["mode"], r["macs"]) == ("spiking", 0)
    assert r["acs"] > 0
    assert "softmax_macs" not in report.breakdown[""]


# ---------------------------------------------------------------------------------------- neurons
def test_neuron_updates_cost_a_multiply_and_two_adds() -> None:
    model = nn.Sequential(nn.Linear(4, 6), IFNeuron())
    x = torch.rand(3, 2, 4)
    report = energy_report(model, x, memory=False)
    r = row(report, "1")
    assert (r["kind"], r["mode"]) == ("neuron", "neuron")
    assert r["macs"] == r["acs"] == pytest.approx(3 * 6)  # per sample: T * neurons
    assert r["compute_j"] == pytest.approx(18 * (FP32.mac_j + FP32.ac_j))


def test_fixed_point_membranes_are_priced_at_their_width() -> None:
    from hstlab.energy.constants import op_energy
    from hstlab.neurons import LIF

    x = torch.rand(3, 2, 4)
    rows = {}
    for bits in (None, 8):
        model = nn.Sequential(nn.Linear(4, 6), LIF(membrane_bits=bits))
        torch.manual_seed(0)
        model[0].reset_parameters()
        report = energy_report(model, x, memory=True)
        rows[bits] = (row(report, "1"), report.memory_access_j)
    (r32, access), (r8, _) = rows[None], rows[8]
    updates = 3 * 6  # per sample: T * neurons
    int8 = op_energy(8, "int")
    assert r8["format"] == "int8" and r8["compute_j"] == pytest.approx(updates * (int8.mac_j + int8.ac_j))
    current_bits = updates * 32  # the input current, a real-valued fp32 activation
    spike_bits = r8["output_rate"] * updates  # 1 bit per spike written
    assert r8["memory_j"] == pytest.approx((current_bits + 2 * updates * 8 + spike_bits) / 64 * access)
    spike_bits = r32["output_rate"] * updates
    assert r32["memory_j"] == pytest.approx((current_bits + 2 * updates * 32 + spike_bits) / 64 * access)


def test_state_is_reset_so_reports_repeat() -> None:
    neuron = IFNeuron()
    model = nn.Sequential(nn.Linear(4, 6), neuron, nn.Linear(6, 2))
    x = torch.rand(3, 2, 4)
    first, second = energy_report(model, x), energy_report(model, x)
    assert first.layers.equals(second.layers)
    assert neuron.resets >= 2 and neuron.v is None


def test_hooks_leave_outputs_flags_and_hooks_untouched() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), Heaviside(), nn.Linear(6, 2))
    model.train()
    x = torch.rand(3, 2, 4)
    before = model(x)
    energy_report(model, x)
    assert model.training
    assert torch.equal(model(x), before)
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_removed_when_forward_raises() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            self.fc(x)
            raise RuntimeError("boom")

    model = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        energy_report(model, torch.rand(2, 1, 4))
    assert not model.fc._forward_hooks and model.training


def test_batchnorm_folds_and_layernorm_counts_elementwise() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(2), nn.LayerNorm(6))
    report = energy_report(model, torch.rand(3, 2, 4) + 0.1)
    assert row(report, "1")["mode"] == "folded" and row(report, "1")["total_j"] == 0
    assert row(report, "2")["macs"] == pytest.approx(4 * 3 * 6)  # 4 MAC-equivalents per element
    assert any("folded" in a for a in report.assumptions)


# ----------------------------------------------------------------------------------------- memory
def test_linear_memory_traffic_by_hand() -> None:
    x = spikes(4, 1, 16, rate=0.25)  # [T, B=1, in]
    layer = nn.Linear(16, 8, bias=False)
    report = energy_report(layer, x, memory_level="sram-8kb")
    bits = 4 * 16 * 8 * 32 + int(x.count_nonzero()) * 1 + 4 * 8 * 32  # weights per step + spikes + outputs
    assert report.memory_j == pytest.approx(bits / 64 * 10e-12)
    assert report.memory_level == "sram-8kb"
    auto = energy_report(layer, x)
    assert auto.memory_level == select_memory_level(16 * 8 * 4).name
    assert energy_report(layer, x, memory=False).memory_j == 0


def test_memory_uses_preset_width_and_quantized_weight_bits() -> None:
    class QuantLinear(nn.Linear):
        weight_bits = 4

    x = torch.rand(3, 2, 5, 16) + 0.1  # [T, B, N, in], real
    layer = nn.Linear(16, 8)  # 136 parameters
    fp16 = energy_report(layer, x, preset="45nm-fp16", memory_level="sram-32kb")
    bits = 3 * 136 * 16 + 3 * 5 * 16 * 16 + 3 * 5 * 8 * 16  # weights per step, input read, output write
    assert fp16.memory_j == pytest.approx(bits / 64 * 20e-12)
    quant = energy_report(QuantLinear(16, 8), x, memory_level="sram-32kb")
    bits = 3 * 136 * 4 + 3 * 5 * 16 * 32 + 3 * 5 * 8 * 32
    assert quant.memory_j == pytest.approx(bits / 64 * 20e-12)
    assert quant.weight_bytes == 136 * 4 / 8 and fp16.weight_bytes == 136 * 2


def test_time_batched_dataflow_reads_weights_once_per_call() -> None:
    x = spikes(4, 1, 16, rate=0.25)  # [T, B=1, in]
    layer = nn.Linear(16, 8, bias=False)
    report = energy_report(layer, x, memory_level="sram-8kb", dataflow="time-batched")
    bits = 1 * 16 * 8 * 32 + int(x.count_nonzero()) * 1 + 4 * 8 * 32  # weights once + spikes + outputs
    assert report.memory_j == pytest.approx(bits / 64 * 10e-12)
    assert report.dataflow == "time-batched" and any("time-batched" in a for a in report.assumptions)
    step = energy_report(layer, x, memory_level="sram-8kb")
    assert step.dataflow == "step-major" and step.compute_j == report.compute_j

    class StepByStep(nn.Module):  # a single-step loop: one call per step, so no reuse to exploit
        def __init__(self) -> None:
            super().__init__()
            self.fc = layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, in] -> [T, B, out]
            return torch.stack([self.fc(x_t) for x_t in x])

    looped = energy_report(StepByStep(), x, memory_level="sram-8kb", dataflow="time-batched")
    assert looped.memory_j == pytest.approx(step.memory_j)


def test_time_batched_dataflow_keeps_membranes_in_registers() -> None:
    from hstlab.neurons import LIF

    x = torch.rand(3, 2, 4)  # [T, B, in]
    model = nn.Sequential(nn.Linear(4, 6), LIF(membrane_bits=8))
    reports = {flow: energy_report(model, x, memory_level="sram-8kb", dataflow=flow)
               for flow in ("step-major", "time-batched")}
    neuron = {flow: row(r, "1") for flow, r in reports.items()}
    assert neuron["step-major"]["compute_j"] == neuron["time-batched"]["compute_j"]
    # per sample: 3 steps x 6 neurons updates; the membrane moves 2x per update vs 2x per neuron per call
    saved_bits = 2 * 3 * 6 * 8 - 2 * 6 * 8
    saved = neuron["step-major"]["memory_j"] - neuron["time-batched"]["memory_j"]
    assert saved == pytest.approx(saved_bits / 64 * 10e-12)
    linear_saved = row(reports["step-major"], "0")["memory_j"] - row(reports["time-batched"], "0")["memory_j"]
    assert linear_saved == pytest.approx((3 - 1) * 30 * 32 / 64 * 10e-12)  # 30 parameters, read 3x vs once


def test_time_batched_reads_folded_conv_and_attention_weights_once() -> None:
    T, B, L, E = 3, 2, 4, 8

    class Folded(nn.Module):  # time folded into the batch, as the SPS stem and nn.MultiheadAttention take it
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)  # 2*3*9 + 3 = 57 parameters
            self.attn = nn.MultiheadAttention(E, 2)  # in-projections 3*8*8 + 24 = 216, out_proj 8*8 + 8 = 72

        def forward(self, frames: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            self.conv(frames.flatten(0, 1))  # [T*B, 2, 5, 5]
            seq = tokens.permute(2, 0, 1, 3).reshape(L, T * B, E)  # [L, T*B, E]
            return self.attn(seq, seq, seq, need_weights=False)[0]

    model = Folded()
    tokens = torch.rand(T, B, L, E) + 0.1

    class Both(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, frames: torch.Tensor) -> torch.Tensor:  # frames [T, B, 2, 5, 5]
            return self.inner(frames, tokens)

    frames = torch.rand(T, B, 2, 5, 5) + 0.1
    step, batched = (energy_report(Both(), frames, memory_level="sram-8kb", dataflow=f)
                     for f in ("step-major", "time-batched"))
    word = 10e-12 / 64  # joules per bit at the 8 KB SRAM
    for name, params in (("inner.conv", 57), ("inner.attn", 216), ("inner.attn.out_proj", 72)):
        saved = row(step, name)["memory_j"] - row(batched, name)["memory_j"]
        assert saved == pytest.approx((T - 1) * params * 32 * word), name  # read T times vs once


def test_with_dataflow_reprices_the_same_pass_like_a_fresh_measurement() -> None:
    from hstlab.neurons import LIF

    model = nn.Sequential(nn.Linear(4, 6), LIF(), nn.Linear(6, 3))
    x = torch.rand(3, 2, 4)  # [T, B, in]
    step = energy_report(model, x)
    for flow in ("time-batched", "step-major"):
        repriced, fresh = step.with_dataflow(flow), energy_report(model, x, dataflow=flow)
        pd.testing.assert_frame_equal(repriced.layers, fresh.layers)
        assert (repriced.dataflow, repriced.assumptions, repriced.baseline_note) == (
            fresh.dataflow, fresh.assumptions, fresh.baseline_note)
    assert step.with_dataflow("time-batched").with_dataflow("step-major").total_j == step.total_j


def test_unknown_dataflow_names_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="dataflow=.layerwise.*step-major, time-batched, fused"):
        energy_report(nn.Linear(4, 2), torch.rand(2, 1, 4), dataflow="layerwise")
    with pytest.raises(ValueError, match="dataflow=.layerwise.*step-major, time-batched, fused"):
        energy_report(nn.Linear(4, 2), torch.rand(2, 1, 4)).with_dataflow("layerwise")


def test_time_steps_rule() -> None:
    assert time_steps(torch.zeros(5, 2, 3, 4), 2) == 5  # [T, B, N, D]
    assert time_steps(torch.zeros(10, 3, 4), 2) == 5  # [T*B, N, D]
    assert time_steps(torch.zeros(2, 4), 2) == 1  # [B, D]


# ----------------------------------------------------------------------------------------- report
def test_report_api_compare_dict_summary() -> None:
    model = nn.Sequential(nn.Linear(8, 8), Heaviside(), nn.Linear(8, 4))
    x = spikes(3, 2, 8)
    spiking = energy_report(model, x)
    dense = energy_report(model, torch.rand(3, 2, 8) + 2.0)  # every neuron fires: a real then all-ones input
    ratios = spiking.compare(dense)
    assert ratios["energy_ratio"] == pytest.approx(dense.total_j / spiking.total_j)
    assert ratios["total_j_self_over_other"] == pytest.approx(spiking.total_j / dense.total_j)
    assert ratios["energy_ratio"] > 1
    assert spiking.compare(spiking)["energy_ratio"] == pytest.approx(1.0)
    data = json.loads(json.dumps(spiking.to_dict()))
    assert data["total_j"] == pytest.approx(spiking.total_j)
    assert [r["name"] for r in data["layers"]] == spiking.layers["name"].tolist()
    assert spiking.total_j == pytest.approx(spiking.compute_j + spiking.memory_j)
    assert list(spiking.layers.columns[:8]) == ["name", "kind", "mode", "macs", "acs", "input_rate",
                                                "compute_j", "memory_j"]
    text = spiking.summary()
    assert "total" in text and "linear" in text and "T=3" in spiking.baseline_note
    assert energy_per_sample(model, x) == pytest.approx(spiking.total_j)


@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "7nm"}, "preset='7nm'"),
    ({"example_input": torch.zeros(4)}, "example_input"),
    ({"memory_level": "l3"}, "memory_level"),
])
def test_bad_arguments_raise_value_error(kwargs, match) -> None:
    args = {"example_input": torch.zeros(2, 1, 4), **kwargs}
    with pytest.raises(ValueError, match=match):
        energy_report(nn.Linear(4, 2), **args)


# ------------------------------------------------------------------------------ hstlab integration
needs_model = pytest.mark.skipif(importlib.util.find_spec("hstlab.model") is None,
                                 reason="hstlab.model (lead) not written yet")


@needs_model
def test_tiny_spiking_vs_standard_model() -> None:
    from hstlab import HSTConfig, build_model, example_input

    cfg = HSTConfig.from_preset("tiny")
    x = example_input(cfg)
    reports = {}
    for modes in ("SS", "TT"):
        model = build_model(cfg.with_modes(modes))
        report = energy_report(model, x)
        names = dict(model.named_modules())
        assert set(report.layers["name"]) <= set(names)
        reports[modes] = report
        assert report.total_j > 0
    weighted = ["linear", "conv", "attention"]
    spiking = reports["SS"].layers
    spiking = spiking[spiking["name"].str.startswith("blocks.") & spiking["kind"].isin(weighted)]
    spike_driven = spiking[spiking["mode"] == "spiking"]
    assert len(spike_driven[spike_driven["kind"] == "linear"]) >= 2  # layers fed by neurons
    assert (spike_driven.loc[spike_driven["kind"] == "linear", "macs"] == 0).all()
    assert set(spiking.loc[spiking["kind"] == "attention", "mode"]) == {"spiking"}
    assert (reports["SS"].layers.query("kind == 'neuron'")["acs"] > 0).all()
    standard = reports["TT"].layers
    standard = standard[standard["name"].str.startswith("blocks.") & standard["kind"].isin(weighted)]
    assert set(standard["mode"]) == {"standard"}
    assert (standard["acs"] == 0).all() and (standard["macs"] > 0).all()
    assert "neuron" not in set(reports["TT"].layers["kind"][reports["TT"].layers["name"].str.startswith("blocks.")])


@needs_model
def test_time_batched_dataflow_on_an_hstlab_model() -> None:
    from hstlab import HSTConfig, build_model, example_input

    cfg = HSTConfig.from_preset("tiny")
    model, x = build_model(cfg), example_input(cfg)
    step = energy_report(model, x)
    batched = energy_report(model, x, dataflow="time-batched")
    assert batched.compute_j == pytest.approx(step.compute_j) and batched.macs == step.macs
    neurons = batched.layers["kind"] == "neuron"
    assert (batched.layers.loc[neurons, "memory_j"] < step.layers.loc[neurons, "memory_j"]).all()
    assert batched.memory_j < step.memory_j
    assert step.compare(batched)["same_dataflow"] is False
    assert json.loads(json.dumps(batched.to_dict()))["dataflow"] == "time-batched"


def test_cli_registers_energy_subcommand() -> None:
    import argparse

    from hstlab.energy.cli import register, run

    parser = argparse.ArgumentParser(prog="hstlab")
    register(parser.add_subparsers())
    args = parser.parse_args(["energy-model", "--model", "tiny", "--energy-preset", "45nm-int8", "--no-memory"])
    assert (args.func, args.energy_preset, args.no_memory) == (run, "45nm-int8", True)
    with pytest.raises(SystemExit):
        parser.parse_args(["energy-model", "--energy-preset", "3nm"])


@needs_model
def test_cli_prints_summary(capsys) -> None:
    import argparse

    from hstlab.energy.cli import run

    assert run(argparse.Namespace(model="tiny", modes="SS", energy_preset="45nm-fp32", memory_level=None,
                           no_memory=False, batch_size=1, compare="TT", json=False, dataflow="time-batched")) == 0
    out = capsys.readouterr().out
    assert "total" in out and "vs modes TT" in out and "Assumptions" in out
    assert "Dataflow time-batched" in out


# ------------------------------------------------------------------------------ bit-matched twin
def test_bit_matched_twin_prices_low_bit_activations() -> None:
    from hstlab.energy import mixed_op_energy, twin_activation_bits

    class QuantLinear(nn.Linear):
        weight_bits = 4

    assert [twin_activation_bits(t) for t in (1, 3, 4, 7, 8)] == [1, 2, 3, 3, 4]
    x = torch.rand(2, 1, 8) + 0.1  # [T, B=1, in], real
    bits = twin_activation_bits(4)  # 3
    report = energy_report(QuantLinear(8, 4), x, memory_level="sram-8kb", activation_bits=bits)
    r = row(report, "")
    mac = 0.2e-12 * (4 / 8) * (3 / 8) + 0.03e-12 * 4 / 8  # 4-bit weight x 3-bit activation
    assert mixed_op_energy(4, 3).mac_j == pytest.approx(mac) and r["format"] == "int4x3"
    assert report.compute_j == pytest.approx(2 * 8 * 4 * mac)
    traffic = 2 * 36 * 4 + 2 * 8 * 3 + 2 * 4 * 3  # weights per step at 4 bits, input and output at 3 bits
    assert report.memory_j == pytest.approx(traffic / 64 * 10e-12)
    assert report.to_dict()["activation_bits"] == 3 and any("3-bit integers" in a for a in report.assumptions)
    with pytest.raises(ValueError, match="activation_bits=0 must be an integer from 1 to 32"):
        energy_report(QuantLinear(8, 4), x, activation_bits=0)


def test_activation_bits_leave_membranes_at_their_width() -> None:
    model = nn.Sequential(nn.Linear(4, 6), IFNeuron())
    x = torch.rand(3, 1, 4)
    plain, twin = (row(energy_report(model, x, memory_level="sram-8kb", activation_bits=b), "1") for b in (None, 4))
    updates = 3 * 6
    saved = (updates * 32 - updates * 4) / 64 * 10e-12  # only the real-valued input current narrows
    assert plain["memory_j"] - twin["memory_j"] == pytest.approx(saved)
