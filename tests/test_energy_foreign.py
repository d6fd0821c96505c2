"""Energy of models hstlab did not build: foreign neurons, what a layer's input is, products of two
activations, and what the engine reports as unpriced. Expected values are computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from energy_support import row
from torch import nn
from torch.nn import functional as F

from hstlab.energy import energy_report
from hstlab.energy.neurons import NEURON_ADAPTERS, adapter_for
from hstlab.energy.products import Operand, price_einsum, price_matmul
from hstlab.energy.provenance import INPUT_KINDS

WORD = 10e-12 / 64  # joules per bit at the 8 KB SRAM


def fixed_linear(in_features: int, out_features: int, value: float) -> nn.Linear:
    layer = nn.Linear(in_features, out_features, bias=False)
    nn.init.constant_(layer.weight, value)
    return layer


# ------------------------------------------------------------- duck-typed stand-ins (no library needed)
def _library_class(module_name: str, class_name: str, base: type = nn.Module) -> type:
    """A class that looks, to the adapters, like ``class_name`` from ``module_name``."""
    return type(class_name, (base,), {"__module__": module_name})


SnnBase = _library_class("snntorch._neurons.neurons", "SpikingNeuron")
JellyBase = _library_class("spikingjelly.activation_based.neuron.base_node", "BaseNode")
NorseCell = _library_class("norse.torch.module.snn", "SNNCell")
NorseSequence = _library_class("norse.torch.module.snn", "SNN")


class StandInLeaky(SnnBase):
    """snnTorch-style single-step neuron: ``spk, mem = lif(cur, mem)``; a ``mem`` buffer, ``reset_mem``."""

    def __init__(self, synaptic: bool = False) -> None:
        super().__init__()
        self.register_buffer("mem", torch.zeros(0))
        if synaptic:
            self.register_buffer("syn", torch.zeros(0))
        self.resets = 0

    def reset_mem(self) -> None:
        self.resets += 1

    def forward(self, cur: torch.Tensor, mem: torch.Tensor | None = None):
        mem = cur if mem is None else 0.5 * mem + cur
        spk = (mem > 1).float()
        return spk, mem - spk


class StandInJelly(JellyBase):
    """SpikingJelly-style IF node with a step mode and one registered memory ``v``."""

    def __init__(self, step_mode: str) -> None:
        super().__init__()
        self.step_mode, self._memories = step_mode, {"v": 0.0}
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.cumsum(0) > 1).float() if self.step_mode == "m" else (x > 1).float()


class StandInNorseCell(NorseCell):
    """Norse-style cell: ``z, (v, i) = cell(x, state)``: two state tensors."""

    def forward(self, x: torch.Tensor, state=None):
        return (x > 1).float(), (x.clone(), x.clone())


class StandInNorseSequence(NorseSequence):
    def forward(self, x: torch.Tensor, state=None):  # [T, B, ...]
        return (x > 1).float(), (x[-1].clone(), x[-1].clone())


class StepLoop(nn.Module):
    """A foreign single-step network: ``fc -> neuron`` called once per step on ``x[t]``."""

    def __init__(self, neuron: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.fc, self.neuron = fc, neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, in] -> [T, B, out]
        out, state = [], None
        for x_t in x:
            result = self.neuron(self.fc(x_t), state) if state is not None else self.neuron(self.fc(x_t))
            spk, state = (result[0], result[1]) if isinstance(result, tuple) else (result, None)
            out.append(spk)
        return torch.stack(out)


def test_the_adapters_are_a_registry_and_need_no_library() -> None:
    assert NEURON_ADAPTERS.names() == ("hstlab", "snntorch", "spikingjelly", "norse")
    assert adapter_for(StandInLeaky()).library == "snntorch"
    assert adapter_for(StandInJelly("s")).library == "spikingjelly"
    assert adapter_for(StandInNorseCell()).library == "norse"
    assert adapter_for(nn.ReLU()) is None


@pytest.mark.parametrize("synaptic, states", [(False, 1), (True, 2)])
def test_snntorch_style_neuron_updates_and_membrane_traffic(synaptic: bool, states: int) -> None:
    T, B = 3, 2
    neuron = StandInLeaky(synaptic)
    model = StepLoop(neuron, fixed_linear(4, 5, 0.6))
    x = torch.ones(T, B, 4)  # current 2.4 on every neuron: fires every step
    report = energy_report(model, x, memory_level="sram-8kb")
    r = row(report, "neuron")
    updates = T * 5  # per sample: every step, 5 neurons
    assert (r["kind"], r["mode"], r["input_kind"]) == ("neuron", "neuron", "real")
    assert r["macs"] == r["acs"] == updates * states
    assert r["steps"] == T and r["calls"] == T and r["output_rate"] == 1.0
    current, membrane, spikes = updates * 32, 2 * updates * states * 32, updates
    assert r["memory_j"] == pytest.approx((current + membrane + spikes) * WORD)
    # single-step calls: time-batched keeps nothing in registers across steps
    assert row(report.with_dataflow("time-batched"), "neuron")["memory_j"] == pytest.approx(r["memory_j"])
    assert neuron.resets == 2  # before and after the measuring pass
    assert row(report, "fc")["input_kind"] == "spikes"  # the all-ones input is binary


def test_spikingjelly_style_multi_step_node_keeps_its_membrane_per_call() -> None:
    T, B, N = 4, 2, 3
    node = StandInJelly("m")
    model = nn.Sequential(fixed_linear(N, N, 1.0), node)
    x = torch.ones(T, B, N)  # [T, B, N]
    batched = energy_report(model, x, memory_level="sram-8kb", dataflow="time-batched")
    r = row(batched, "1")
    assert r["macs"] == T * N and r["steps"] == T and r["calls"] == 1
    spikes = T * N  # the cumulative sum passes 1 on every step
    assert r["memory_j"] == pytest.approx((T * N * 32 + 2 * N * 32 + spikes) * WORD)  # membrane once per call
    step = row(energy_report(model, x, memory_level="sram-8kb"), "1")
    assert step["memory_j"] == pytest.approx((T * N * 32 + 2 * T * N * 32 + spikes) * WORD)
    assert node.resets == 4


def test_spikingjelly_style_single_step_node_runs_one_step_per_call() -> None:
    model = StepLoop(StandInJelly("s"), fixed_linear(2, 3, 1.0))
    r = row(energy_report(model, torch.ones(5, 1, 2), memory=False), "neuron")
    assert (r["macs"], r["steps"], r["calls"]) == (15, 5, 5)


def test_norse_style_cells_and_sequences_count_their_state_tensors() -> None:
    T, B = 3, 2
    cell = row(energy_report(StepLoop(StandInNorseCell(), fixed_linear(2, 4, 1.0)), torch.ones(T, B, 2),
                             memory=False), "neuron")
    assert cell["macs"] == cell["acs"] == T * 4 * 2  # v and i: two state updates per neuron-step
    assert cell["steps"] == T

    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.lif = fixed_linear(2, 4, 1.0), StandInNorseSequence()

        def forward(self, x):
            return self.lif(self.fc(x))[0]

    seq = energy_report(Seq(), torch.ones(T, B, 2), memory_level="sram-8kb", dataflow="time-batched")
    r = row(seq, "lif")
    assert (r["macs"], r["steps"], r["calls"]) == (T * 4 * 2, T, 1)
    assert r["memory_j"] == pytest.approx((T * 4 * 32 + 2 * 4 * 2 * 32 + T * 4) * WORD)


# ------------------------------------------------------------------------------- the real libraries
def test_snntorch_leaky_and_synaptic() -> None:
    snn = pytest.importorskip("snntorch")
    T, B = 4, 2
    for neuron, states in ((snn.Leaky(beta=0.9), 1), (snn.Synaptic(alpha=0.8, beta=0.9), 2)):
        model = StepLoop(neuron, fixed_linear(3, 5, 0.5))
        x = torch.ones(T, B, 3)
        report = energy_report(model, x, memory=False)
        r = row(report, "neuron")
        assert r["macs"] == T * 5 * states and r["steps"] == T
        with torch.no_grad():  # the firing rate the engine reports is the neuron's own
            neuron.reset_mem()
            expected = float(model(x).mean())
        assert r["output_rate"] == pytest.approx(expected)
        assert report.unpriced == []


def test_spikingjelly_lif_node_multi_step() -> None:
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    T, B, N = 4, 2, 3
    model = nn.Sequential(fixed_linear(N, N, 0.5), neuron.LIFNode(step_mode="m"))  # current 1.5: every 2nd step
    report = energy_report(model, torch.ones(T, B, N), memory=False)
    r = row(report, "1")
    assert (r["macs"], r["steps"], r["calls"]) == (T * N, T, 1)
    assert r["output_rate"] == 0.5 and report.unpriced == []


def test_norse_lif_cell_and_lif() -> None:
    norse = pytest.importorskip("norse.torch")
    T, B = 3, 2
    cell = row(energy_report(StepLoop(norse.LIFCell(), fixed_linear(2, 4, 1.0)), torch.ones(T, B, 2),
                             memory=False), "neuron")
    assert cell["macs"] == T * 4 * 2  # LIFFeedForwardState(v, i)

    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.lif = fixed_linear(2, 4, 1.0), norse.LIF()

        def forward(self, x):  # [T, B, 2]
            return self.lif(self.fc(x))[0]

    seq = row(energy_report(Seq(), torch.ones(T, B, 2), memory=False), "lif")
    assert (seq["macs"], seq["steps"], seq["calls"]) == (T * 4 * 2, T, 1)
    recurrent = energy_report(StepLoop(norse.LIFRecurrentCell(4, 4), nn.Identity()), torch.ones(T, B, 4),
                              memory=False)
    assert any("recurrent" in entry and entry.startswith("neuron") for entry in recurrent.unpriced)


# ------------------------------------------------------------------------------------------ unpriced
def test_what_has_no_counter_is_listed_not_skipped() -> None:
    class Custom(nn.Module):  # a layer written by hand: parameters, no counter
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(4, 3))

        def forward(self, x):
            return x @ self.w

    class Integrator(nn.Module):  # a stateful neuron nobody declared
        def __init__(self) -> None:
            super().__init__()
            self.v = torch.zeros(0)

        def forward(self, x):
            self.v = x if self.v.shape != x.shape else self.v + x
            return (self.v > 1).float()

    model = nn.Sequential(Custom(), Integrator(), nn.Linear(3, 2))
    report = energy_report(model, torch.rand(2, 1, 4))
    entries = sorted(report.unpriced)
    assert entries[0].startswith("0: Custom holds 12 parameters and has no energy counter")
    assert entries[1].startswith("0:matmul: matmul with a weight operand")
    assert entries[2].startswith("1: Integrator changes its tensor state (v)")
    text = report.summary()
    assert "Not priced (3" in text and "Integrator" in text
    assert report.to_dict()["unpriced"] == report.unpriced
    assert set(report.layers["name"]) == {"2"}  # nothing made up for them


# -------------------------------------------------------------------------- what a layer's input is
class PixelMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_raw_pixels_are_real_values_unless_declared_counts() -> None:
    pixels = torch.tensor([[[0.0, 255.0, 17.0, 3.0]]])  # [T=1, B=1, 4]: integers, not spikes
    report = energy_report(PixelMLP(), pixels, memory=False)
    fc1 = row(report, "fc1")
    assert (fc1["mode"], fc1["input_kind"], fc1["macs"], fc1["acs"]) == ("standard", "real", 4 * 3, 0)
    assert report.input_kind == "real"
    counted = row(energy_report(PixelMLP(), pixels, memory=False, input_kind="counts"), "fc1")
    assert (counted["input_kind"], counted["acs"], counted["macs"]) == ("counts", 275 * 3, 0)  # the old pricing


def test_binary_input_declared_real_costs_dense_macs() -> None:
    x = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    spiking = row(energy_report(PixelMLP(), x, memory=False), "fc1")
    real = row(energy_report(PixelMLP(), x, memory=False, input_kind="real"), "fc1")
    assert (spiking["acs"], spiking["macs"]) == (2 * 3, 0)
    assert (real["acs"], real["macs"], real["input_kind"]) == (0, 4 * 3, "real")


def test_a_model_can_declare_its_input_counts() -> None:
    model = PixelMLP()
    model.input_kind = "counts"
    r = row(energy_report(model, torch.tensor([[[2.0, 0.0, 1.0, 0.0]]]), memory=False), "fc1")
    assert (r["input_kind"], r["acs"]) == ("counts", 3 * 3)
    undeclared = row(energy_report(model, torch.tensor([[[2.5, 0.0, 1.0, 0.0]]]), memory=False), "fc1")
    assert undeclared["input_kind"] == "real"  # a declaration does not make real values counts


class Fire(nn.Module):
    is_spiking_neuron = True

    def forward(self, x):
        return (x > 0.5).float()


def test_sums_of_spikes_are_counts_but_other_integers_are_not() -> None:
    class Sew(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.fc, self.fc_real = Fire(), Fire(), fixed_linear(3, 2, 1.0), fixed_linear(3, 2, 1.0)

        def forward(self, x):  # [T, B, 3]
            total = self.a(x) + self.b(x)  # SEW-ADD: 0/1/2
            doubled = torch.full_like(x, 2.0) * (x > 0.5)  # 0/2, but not made of neuron outputs
            return self.fc(total.reshape(x.shape)), self.fc_real(doubled)

    x = torch.tensor([[[1.0, 0.0, 1.0]]])
    report = energy_report(Sew(), x, memory=False)
    assert (row(report, "fc")["input_kind"], row(report, "fc")["acs"]) == ("counts", 4 * 2)  # 2+2 spikes
    assert (row(report, "fc_real")["input_kind"], row(report, "fc_real")["macs"]) == ("real", 3 * 2)


@pytest.mark.parametrize("kind", ["sparse", "", "Spikes"])
def test_unknown_input_kind_names_the_allowed_values(kind: str) -> None:
    assert tuple(INPUT_KINDS) == ("auto", "spikes", "counts", "real")
    with pytest.raises(ValueError, match=f"input_kind='{kind}' is not allowed; allowed: auto, spikes, counts, real"):
        energy_report(nn.Linear(2, 2), torch.zeros(1, 1, 2), input_kind=kind)
    with pytest.raises(ValueError, match="input_kind='spikes' but"):
        energy_report(nn.Linear(2, 2), torch.full((1, 1, 2), 2.0), input_kind="spikes")


def test_hstlab_models_declare_event_counts() -> None:
    from hstlab import HSTConfig, build_model, example_input

    cfg = HSTConfig.from_preset("tiny")
    x = example_input(cfg, batch_size=1)
    counts = x * 3  # three events wherever one arrived
    report = energy_report(build_model(cfg), counts, memory=False)
    stem = row(report, "tokenizer.convs.0")
    assert (stem["input_kind"], stem["mode"], report.input_kind) == ("counts", "spiking", "counts")
    spikes = row(energy_report(build_model(cfg), x, memory=False), "tokenizer.convs.0")
    assert stem["acs"] == pytest.approx(3 * spikes["acs"])
    assert "products" not in set(report.layers["kind"])  # attention products stay with their modules


# ------------------------------------------------------------------------ products of two activations
def test_matmul_pricing_by_hand() -> None:
    a = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # [2, 3]: 3 spikes
    b = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # [3, 2]
    assert price_matmul(a, b, "real", "real").macs == 2 * 3 * 2
    assert price_matmul(a, b, "spikes", "real").acs == 3 * 2  # each spike adds a row of b
    assert price_matmul(a, b, "real", "spikes").acs == 4 * 2  # each of b's 4 spikes adds a column of a
    # pairs that meet: inner index 0: 1 x 2, index 1: 0 x 1, index 2: 2 x 1
    assert price_matmul(a, b, "spikes", "spikes").acs == 2 + 0 + 2
    batch = price_matmul(a.expand(4, 2, 3), b, "spikes", "real")  # b broadcast over 4 batches
    assert (batch.acs, batch.dense) == (4 * 3 * 2, 4 * 12)
    vector = price_matmul(a, torch.ones(3), "real", "real")
    assert vector.macs == 2 * 3


def test_einsum_pricing_matches_matmul() -> None:
    q, k = (torch.rand(2, 3, 4) < 0.5).float(), (torch.rand(2, 5, 4) < 0.5).float()
    for kinds in (("spikes", "spikes"), ("spikes", "real"), ("real", "real")):
        costs, out = price_einsum("bnd,bmd->bnm", [Operand(q, kinds[0]), Operand(k, kinds[1])])
        assert costs == [price_matmul(q, k.transpose(-1, -2), *kinds)]
        assert out == 2 * 3 * 5
    ellipsis, _ = price_einsum("...nd,...md", [Operand(q, "real"), Operand(k, "real")])
    assert ellipsis[0].macs == 2 * 3 * 5 * 4


class ForeignAttention(nn.Module):
    """Products of two activations in a module hstlab did not build (no matmul_ops protocol)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.q_neuron, self.k_neuron, self.v_neuron = Fire(), Fire(), Fire()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, d]
        q, k, v = self.q_neuron(x), self.k_neuron(x.flip(-1)), self.v_neuron(x.roll(1, -2))
        if self.how == "matmul":
            return (q @ k.transpose(-1, -2)) @ v
        if self.how == "bmm":
            t, b, n, d = q.shape
            scores = torch.bmm(q.reshape(t * b, n, d), k.reshape(t * b, n, d).transpose(1, 2))
            return torch.bmm(scores, v.reshape(t * b, n, d)).view(t, b, n, d)
        if self.how == "einsum":
            return torch.einsum("tbnm,tbmd->tbnd", torch.einsum("tbnd,tbmd->tbnm", q, k), v)
        return F.scaled_dot_product_attention(q, k, v)


def _spike_input(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(2, 1, 3, 4, generator=gen)  # [T=2, B=1, N=3, d=4]


@pytest.mark.parametrize("how", ["matmul", "bmm", "einsum"])
def test_attention_products_in_a_foreign_module(how: str) -> None:
    x = _spike_input()
    q, k, v = (x > 0.5).float(), (x.flip(-1) > 0.5).float(), (x.roll(1, -2) > 0.5).float()
    scores = q @ k.transpose(-1, -2)  # [T, B, N, N]: spike counts
    first = float((q.sum(-2) * k.sum(-2)).sum())  # pairs of q and k spikes that meet on d
    second = float((scores.sum(-2) * v.sum(-1)).sum())  # counts x spikes meeting on m
    report = energy_report(ForeignAttention(how), x, memory=False)
    r = row(report, "")
    assert (r["kind"], r["mode"], r["macs"]) == ("products", "spiking", 0)
    assert r["acs"] == pytest.approx(first + second)
    assert r["input_kind"] in ("counts+spikes", "spikes")


def test_scaled_dot_product_attention_counts_scores_softmax_and_values() -> None:
    x = _spike_input()
    T, B, N, d = x.shape
    v = (x.roll(1, -2) > 0.5).float()
    q, k = (x > 0.5).float(), (x.flip(-1) > 0.5).float()
    r = row(energy_report(ForeignAttention("sdpa"), x, memory=False), "")
    scores = T * B * N * N
    qk = float((q.sum(-2) * k.sum(-2)).sum())
    av = float(v.sum()) * N  # each value spike adds one probability per query
    assert r["acs"] == pytest.approx(qk + av)
    assert r["macs"] == pytest.approx(3 * scores)  # the softmax, 3 MAC-equivalents per score


def test_real_valued_products_cost_macs_and_weights_are_not_activations() -> None:
    class Real(nn.Module):
        def forward(self, x):  # [T, B, N, d] real
            return torch.matmul(x, x.transpose(-1, -2)) @ x

    x = torch.rand(2, 1, 3, 4) + 0.1
    r = row(energy_report(Real(), x, memory=False), "")
    assert r["macs"] == 2 * (3 * 4 * 3 + 3 * 3 * 4) and r["acs"] == 0 and r["mode"] == "standard"


def test_multihead_attention_in_a_foreign_model_is_priced_once() -> None:
    mha = nn.MultiheadAttention(8, 2)

    class Foreign(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x)[0]  # need_weights=True: the bmm path inside

    x = torch.rand(4, 3, 8) + 0.1  # [L, Nb, E]
    report = energy_report(Foreign(), x, memory=False)
    assert set(report.layers["kind"]) == {"mha", "linear"}  # no products row on top of the closed form
    assert report.breakdown["attn"]["products_macs"] == pytest.approx(2 * 3 * 4 * 4 * 8 / 3)


def test_hstlab_attention_products_are_not_counted_twice() -> None:
    from test_energy import FakeSoftmaxAttention

    report = energy_report(FakeSoftmaxAttention(8, 2), torch.rand(2, 2, 4, 8), memory=False)
    assert "products" not in set(report.layers["kind"])
    t, n, d = 2, 4, 8
    assert report.breakdown[""]["products_macs"] == pytest.approx(2 * t * n * n * d)
    assert math.isclose(report.macs, sum(report.layers["macs"]))
