"""hstlab's op counts against NeuroBench (SynapticOperations, NeuronOperations, ActivationSparsity)
and SpikingJelly's op counter (SynOpCounter, MACCounter) on the same models and inputs.

Every row where the conventions agree must agree exactly: accumulates of binary (spike) inputs,
dense MACs, neuron updates and activation sparsity. Where they differ the test pins the difference
(see README, "Energy model"): NeuroBench's effective MACs skip zero inputs, NeuroBench binarizes
count inputs (a SEW sum of 2 is one operation, and makes the layer non-spiking), NeuroBench's
dense count leaves out zero padding, and NeuroBench's membrane updates skip unchanged membranes.
No tool counts biases. The tools are optional: each test skips when its tool is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from energy_support import row
from torch import nn

from hstlab.energy import EnergyReport, energy_report

torch.manual_seed(0)


@dataclass
class Layer:
    """One connection layer's operations per sample, as a tool counts them."""

    ops: float = 0.0  # effective operations (NeuroBench) or SynOps (SpikingJelly)
    spiking: bool = True
    dense: float = 0.0


def neurobench_layers(net: nn.Module, run: Callable[[], object], batch: int,
                      activations: tuple[type, ...] = ()) -> tuple[dict[str, Layer], dict[str, float]]:
    """NeuroBench's per-layer synaptic operations (the loop of ``SynapticOperations``, kept per layer)
    and its metrics, per sample."""
    pytest.importorskip("neurobench")
    from neurobench.metrics.utils.layers import single_layer_MACs
    from neurobench.metrics.workload import ActivationSparsity, NeuronOperations, SynapticOperations
    from neurobench.models import TorchModel

    model = TorchModel(net)
    for kind in activations:
        model.add_activation_module(kind)
    model.register_hooks()
    try:
        with torch.no_grad():
            preds = run()
        names = {m: n for n, m in net.named_modules()}
        layers: dict[str, Layer] = {}
        for hook in model.connection_hooks:
            layer = layers.setdefault(names[hook.layer], Layer())
            for inputs in hook.inputs:
                spikes = inputs[0] if len(inputs) == 1 else inputs
                ops, spiking = single_layer_MACs(spikes, hook.layer)
                dense, _ = single_layer_MACs(spikes, hook.layer, total=True)
                layer.ops += float(ops) / batch
                layer.dense += float(dense) / batch
                layer.spiking = layer.spiking and bool(spiking)
        data = (torch.empty(batch), None)
        metrics = {"sparsity": ActivationSparsity()(model, preds, data)}
        synops = SynapticOperations()(model, preds, data)
        metrics.update({"effective_macs": synops["Effective_MACs"], "effective_acs": synops["Effective_ACs"],
                        "dense": synops["Dense"]})
        if any(h.post_fire_mem_potential for h in model.activation_hooks):
            metrics["neuron_ops_dense"] = NeuronOperations()(model, preds, data)["Neuron Dense Ops"]
    finally:
        model.cleanup_hooks()
    return layers, metrics


def spikingjelly_layers(net: nn.Module, run: Callable[[], object], batch: int) -> dict[str, Layer]:
    """SpikingJelly's SynOps and MACs per module, per sample."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based.op_counter import (
        DispatchCounterMode,
        MACCounter,
        SynOpCounter,
    )

    synops, macs = SynOpCounter(), MACCounter()
    with torch.no_grad(), DispatchCounterMode([synops, macs]):
        run()
    root = type(net).__name__
    layers = {}
    for name, module in net.named_modules():
        scope = f"{root}.{name}" if name else root
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and scope in synops.get_counts():
            syn = sum(synops.get_counts()[scope].values()) / batch
            mac = sum(macs.get_counts()[scope].values()) / batch
            layers[name] = Layer(syn, mac == 0, mac)  # MACCounter counts only layers without a spike operand
    return layers


def hstlab_sparsity(report: EnergyReport, kinds: tuple[str, ...] = ("neuron",)) -> float:
    """1 - fired / all over the activation rows (neurons: one output per update; ReLU: per element)."""
    rows = report.layers[report.layers["kind"].isin(kinds)]
    sizes = [report.breakdown[n].get("updates", a) for n, a in zip(rows["name"], rows["acs"])]
    fired = sum(rate * size for rate, size in zip(rows["output_rate"], sizes))
    return 1.0 - fired / sum(sizes)


def dense_macs(report: EnergyReport, name: str) -> float:
    return report.breakdown[name]["dense_macs"]


# ------------------------------------------------------------------------------------------- models
class SnnTorchNet(nn.Module):
    """fc1 -> Leaky -> fc2 -> Leaky, one call per step (snnTorch's usual loop)."""

    def __init__(self) -> None:
        import snntorch as snn

        super().__init__()
        self.fc1, self.lif1 = nn.Linear(8, 12), snn.Leaky(beta=0.8, init_hidden=True)
        self.fc2, self.lif2 = nn.Linear(12, 4), snn.Leaky(beta=0.8, init_hidden=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 8] -> [T, B, 4]
        return torch.stack([self.lif2(self.fc2(self.lif1(self.fc1(x_t)))) for x_t in x])


def snntorch_net() -> SnnTorchNet:
    pytest.importorskip("snntorch")
    torch.manual_seed(0)
    net = SnnTorchNet()
    with torch.no_grad():
        net.fc1.weight.mul_(4.0)  # enough current that both layers fire
        net.fc2.weight.mul_(4.0)
    return net


def reset_snntorch(net: nn.Module) -> None:
    from snntorch import utils

    utils.reset(net)


class Folded(nn.Module):
    """A plain [B, ...] network run on [T, B, ...] with time folded into the batch."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(0, 1))


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.ReLU())


T, B = 4, 3


# ------------------------------------------------------------------------------------------- tests
def test_snntorch_network_on_spikes() -> None:
    net = snntorch_net()
    x = (torch.rand(T, B, 8, generator=torch.Generator().manual_seed(3)) < 0.4).float()  # [T, B, 8]
    report = energy_report(net, x, memory=False)
    import snntorch as snn

    def run():
        reset_snntorch(net)
        return net(x)

    nb, metrics = neurobench_layers(net, run, B, activations=(snn.SpikingNeuron,))
    sj = spikingjelly_layers(net, run, B)
    for name in ("fc1", "fc2"):
        r = row(report, name)
        assert r["mode"] == "spiking" and r["macs"] == 0
        assert nb[name].spiking and sj[name].spiking
        assert r["acs"] == pytest.approx(nb[name].ops) == pytest.approx(sj[name].ops)  # binary-input ACs
        assert dense_macs(report, name) == pytest.approx(nb[name].dense)  # no padding: the same dense count
    updates = sum(report.breakdown[n]["updates"] for n in ("lif1", "lif2"))
    assert updates == T * (12 + 4)
    neuron_ops = metrics["neuron_ops_dense"]  # NeuroBench: 4 operations per Leaky update
    assert neuron_ops == pytest.approx(4 * updates)
    assert hstlab_sparsity(report) == pytest.approx(metrics["sparsity"])
    assert 0 < metrics["sparsity"] < 1
    assert report.unpriced == []


def test_snntorch_network_on_real_currents() -> None:
    net = snntorch_net()
    x = torch.rand(T, B, 8, generator=torch.Generator().manual_seed(4)) + 0.05  # no zeros
    report = energy_report(net, x, memory=False)

    def run():
        reset_snntorch(net)
        return net(x)

    nb, _ = neurobench_layers(net, run, B)
    sj = spikingjelly_layers(net, run, B)
    r = row(report, "fc1")
    assert (r["mode"], r["acs"], nb["fc1"].spiking, sj["fc1"].spiking) == ("standard", 0, False, False)
    assert r["macs"] == pytest.approx(nb["fc1"].ops) == pytest.approx(nb["fc1"].dense) == pytest.approx(sj["fc1"].dense)
    assert row(report, "fc2")["acs"] == pytest.approx(nb["fc2"].ops) == pytest.approx(sj["fc2"].ops)


@pytest.mark.parametrize("inputs", ["real", "pixels"])
def test_plain_mlp(inputs: str) -> None:
    net = mlp()
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(B, 8, generator=gen) + 0.05 if inputs == "real" else torch.randint(1, 256, (B, 8), generator=gen).float()
    report = energy_report(Folded(net), x[None], memory=False)  # [T=1, B, 8]
    nb, metrics = neurobench_layers(net, lambda: net(x), B)
    sj = spikingjelly_layers(net, lambda: net(x), B)
    for name in ("0", "2"):
        r = row(report, f"net.{name}")
        assert (r["mode"], r["acs"], r["input_kind"]) == ("standard", 0, "real")
        assert not nb[name].spiking and not sj[name].spiking
        assert r["macs"] == pytest.approx(nb[name].dense) == pytest.approx(sj[name].dense)  # dense MACs
    assert row(report, "net.0")["macs"] == pytest.approx(nb["0"].ops)  # no zero input: effective = dense
    relu_rate = row(report, "net.1")["output_rate"]
    assert nb["2"].ops == pytest.approx(relu_rate * 16 * 4)  # NeuroBench's effective MACs skip ReLU zeros
    assert 1 - relu_rate == pytest.approx(metrics["sparsity"])


@pytest.mark.parametrize("inputs", ["real", "spikes"])
def test_plain_cnn(inputs: str) -> None:
    net = cnn()
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(B, 2, 6, 6, generator=gen) + 0.05
    if inputs == "spikes":
        x = (x < 0.3).float()
    report = energy_report(Folded(net), x[None], memory=False)  # [T=1, B, C, H, W]
    nb, _ = neurobench_layers(net, lambda: net(x), B)
    sj = spikingjelly_layers(net, lambda: net(x), B)
    first, second = row(report, "net.0"), row(report, "net.2")
    assert dense_macs(report, "net.0") == 4 * 36 * 2 * 9  # out_numel x C_in x k², padding taps included
    padding_taps = 4 * 36 * 2 * 9 - nb["0"].dense
    assert padding_taps == 4 * 2 * (36 * 9 - 16 * 9 - 4 * 4 * 6 - 4 * 4)  # border outputs lose taps to padding
    if inputs == "spikes":
        assert first["mode"] == "spiking" and nb["0"].spiking and sj["0"].spiking
        assert first["acs"] == pytest.approx(nb["0"].ops) == pytest.approx(sj["0"].ops)  # padding excluded by all
    else:
        assert first["macs"] == pytest.approx(sj["0"].dense)  # SpikingJelly counts padding taps too
    assert second["macs"] == pytest.approx(nb["2"].dense) == pytest.approx(sj["2"].dense)  # no padding: agree


def test_tiny_hstlab_preset() -> None:
    from hstlab import HSTConfig, build_model, example_input

    cfg = HSTConfig.from_preset("tiny", threshold=0.05)  # untrained: a low threshold so that every layer fires
    torch.manual_seed(0)
    model = build_model(cfg)
    x = example_input(cfg, batch_size=2, rate=0.3)  # [T, B, C, H, W] binary events
    report = energy_report(model, x, memory=False)
    neuron_types = tuple({type(m) for m in model.modules() if getattr(m, "is_spiking_neuron", False)})

    def run():
        model.reset_state()
        return model(x)

    model.eval()
    nb, metrics = neurobench_layers(model, run, 2, activations=neuron_types)
    sj = spikingjelly_layers(model, run, 2)
    agree = counts = 0
    for name, layer in nb.items():
        r = row(report, name)
        if r["kind"] == "linear":  # no padding: NeuroBench's dense count is hstlab's
            assert dense_macs(report, name) == pytest.approx(layer.dense), name
        if not sj[name].spiking:  # SpikingJelly's MACs of a non-spike input are hstlab's dense MACs
            assert dense_macs(report, name) == pytest.approx(sj[name].dense), name
        if r["input_kind"] == "spikes":  # binary input: all three count the same accumulates
            assert layer.spiking and sj[name].spiking
            assert r["acs"] == pytest.approx(layer.ops) == pytest.approx(sj[name].ops), name
            agree += 1
        elif r["input_kind"] == "counts":  # SEW-ADD sums: NeuroBench binarizes them, SpikingJelly goes dense
            assert not layer.spiking and not sj[name].spiking
            assert r["acs"] >= layer.ops
            counts += 1
    assert agree >= 6 and counts >= 2
    assert hstlab_sparsity(report) == pytest.approx(metrics["sparsity"])
