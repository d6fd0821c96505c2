"""Energy engine, ``"fused"`` dataflow: which Linear/Conv outputs a fused epilogue keeps in registers."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from energy_support import row
from torch import nn
from torch.overrides import _get_current_function_mode_stack

from hstlab.energy import ENERGY_PRESETS, EnergyReport, energy_report
from hstlab.neurons import LIF

JOULES_PER_BIT = 10e-12 / 64  # 8 KB SRAM: 10 pJ per 64-bit access
FP32 = ENERGY_PRESETS["45nm-fp32"].ops


def saved_bits(report: EnergyReport, name: str) -> float:
    """Bits of traffic the fused dataflow saves on one row against time-batched (per sample)."""
    batched, fused = report.with_dataflow("time-batched"), report.with_dataflow("fused")
    return (row(batched, name)["memory_j"] - row(fused, name)["memory_j"]) / JOULES_PER_BIT


def measure(model: nn.Module, x: torch.Tensor) -> EnergyReport:
    return energy_report(model, x, memory_level="sram-8kb", dataflow="fused")


def test_relu_after_linear_reads_the_accumulator_and_its_input_is_never_written() -> None:
    x = torch.rand(3, 2, 4) + 0.1  # [T, B, in], real
    report = measure(nn.Sequential(nn.Linear(4, 6), nn.ReLU()), x)
    outputs = 3 * 6 * 32  # per sample: T x out x 32 bits
    assert saved_bits(report, "0") == pytest.approx(outputs)  # the Linear's write
    assert saved_bits(report, "1") == pytest.approx(outputs)  # the ReLU's read; its own write stays
    relu = row(report, "1")
    assert relu["memory_j"] == pytest.approx(outputs * JOULES_PER_BIT)
    assert relu["acs"] == 3 * 6 and relu["compute_j"] == pytest.approx(3 * 6 * FP32.ac_j)  # one compare each
    batched = report.with_dataflow("time-batched")
    assert report.compute_j == batched.compute_j == report.with_dataflow("step-major").compute_j
    assert report.dataflow == "fused" and any("Dataflow fused" in a for a in report.assumptions)


def test_relu_is_a_layer_of_its_own_without_fusion() -> None:
    x = torch.rand(3, 2, 4) + 0.1  # [T, B, in]
    relu = row(energy_report(nn.Sequential(nn.Linear(4, 6), nn.ReLU()), x, memory_level="sram-8kb",
                             dataflow="time-batched"), "1")
    assert relu["memory_j"] == pytest.approx(2 * 3 * 6 * 32 * JOULES_PER_BIT)  # read + write
    assert relu["kind"] == "relu" and relu["mode"] == "standard"


class ConvStage(nn.Module):
    """The SPS stem's conv -> BatchNorm -> max-pool -> neuron, time folded into the batch."""

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.pool = nn.MaxPool2d(2)
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 2, 4, 4] -> [T, B, 3, 2, 2]
        t = x.shape[0]
        y = self.pool(self.norm(self.conv(x.flatten(0, 1))))  # [T*B, 3, 2, 2]
        return self.neuron(y.view(t, -1, *y.shape[1:]))


def test_conv_batchnorm_pool_neuron_is_one_fused_stage() -> None:
    x = torch.rand(3, 2, 2, 4, 4)  # [T, B, C, H, W]
    report = measure(ConvStage(LIF()), x)
    assert saved_bits(report, "conv") == pytest.approx(3 * 3 * 4 * 4 * 32)  # full-size conv output
    assert saved_bits(report, "neuron") == pytest.approx(3 * 3 * 2 * 2 * 32)  # pooled current
    batched = report.with_dataflow("time-batched")
    membranes = 2 * 3 * 2 * 2 * 32  # per sample, once per call: 12 neurons read + written
    spikes_out = float(batched.layers.set_index("name").loc["neuron", "output_rate"]) * 3 * 12
    assert row(report, "neuron")["memory_j"] == pytest.approx((membranes + spikes_out) * JOULES_PER_BIT)


def test_an_output_read_elsewhere_is_still_written() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 4]
            y = self.fc(x)
            return self.act(y) + y  # the add reads y too

    report = measure(Residual(), torch.rand(3, 2, 4))
    assert saved_bits(report, "fc") == 0  # the add needs y in memory
    assert saved_bits(report, "act") == pytest.approx(3 * 4 * 32)  # the ReLU still reads it in registers


def test_an_output_the_model_returns_is_still_written() -> None:
    class Both(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), nn.ReLU()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [T, B, 4]
            y = self.fc(x)
            return y, self.act(y)  # the caller reads y

    report = measure(Both(), torch.rand(3, 2, 4))
    assert saved_bits(report, "fc") == 0
    assert saved_bits(report, "act") == pytest.approx(3 * 4 * 32)


def test_two_activations_of_one_output_fuse_only_one() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.a, self.b = nn.Linear(4, 4), nn.ReLU(), nn.GELU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(x)
            return self.a(y) * self.b(y)

    report = measure(Two(), torch.rand(3, 2, 4))
    assert saved_bits(report, "fc") == 0
    assert saved_bits(report, "a") == pytest.approx(3 * 4 * 32) and saved_bits(report, "b") == 0


def test_views_and_dropout_pass_but_normalizations_and_raw_inputs_do_not_fuse() -> None:
    class Paths(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.drop, self.gelu = nn.Linear(4, 6), nn.Dropout(0.5), nn.GELU()
            self.fc2, self.norm = nn.Linear(4, 6), nn.LayerNorm(6)
            self.neuron = LIF()

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 4]
            a = self.gelu(self.drop(self.fc1(x)).transpose(0, 1))  # [B, T, 6]
            b = self.norm(self.fc2(x))  # [T, B, 6]
            return a.transpose(0, 1) + b + self.neuron(x).sum(-1, keepdim=True)

    report = measure(Paths(), torch.rand(3, 2, 4))
    assert saved_bits(report, "fc1") == pytest.approx(3 * 6 * 32)
    assert saved_bits(report, "gelu") == pytest.approx(3 * 6 * 32)
    for name in ("fc2", "norm", "neuron"):  # LayerNorm needs whole rows; the neuron reads the input
        assert saved_bits(report, name) == 0, name


def test_the_watcher_is_gone_after_a_report_and_after_an_error() -> None:
    model, x = nn.Sequential(nn.Linear(4, 6), nn.ReLU()), torch.rand(2, 1, 4)  # [T, B, in]
    first = measure(model, x)
    assert _get_current_function_mode_stack() == []

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.fc(x)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        measure(Broken(), torch.rand(2, 1, 4))
    assert _get_current_function_mode_stack() == []
    pd.testing.assert_frame_equal(measure(model, x).layers, first.layers)


def test_fused_on_hstlab_spiking_model_and_its_standard_twin() -> None:
    import hstlab

    cfg = hstlab.HSTConfig.from_preset("tiny")
    x = (torch.rand(cfg.num_steps, 2, *cfg.input_shape) < 0.2).float()  # [T, B, C, H, W] events
    for modes in ("S" * cfg.n_layer, "T" * cfg.n_layer):
        model = hstlab.build_model(cfg.with_modes(modes))
        fused = energy_report(model, x, dataflow="fused")
        batched = fused.with_dataflow("time-batched")
        assert fused.compute_j == batched.compute_j
        assert 0 < fused.memory_j < batched.memory_j, modes
        assert (fused.layers["memory_j"] <= batched.layers["memory_j"] + 1e-18).all(), modes


class Fc(nn.Module):
    """``fc`` then ``act`` (a ReLU) and whatever ``tail(y, a)`` does with the Linear output y and a = act(y)."""

    def __init__(self, tail) -> None:
        super().__init__()
        self.fc, self.act, self.tail = nn.Linear(4, 4), nn.ReLU(), tail

    def forward(self, x: torch.Tensor):  # [T, B, 4]
        y = self.fc(x)
        return self.tail(y, self.act(y))


def copy_into(y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    buf = torch.empty_like(y)  # allocating like y reads nothing
    buf[:] = y
    return a + buf


@pytest.mark.parametrize("tail", [
    lambda y, a: {"y": y, "a": a},  # returned in a dict
    copy_into,
    lambda y, a: a + torch.mul(y, 2, out=torch.zeros_like(y)),
    lambda y, a: a + torch.tensor(y.tolist()),
], ids=["dict-return", "setitem", "out-argument", "tolist"])
def test_every_other_way_of_reading_an_output_keeps_its_write(tail) -> None:
    report = measure(Fc(tail), torch.rand(3, 2, 4))
    assert saved_bits(report, "fc") == 0
    assert saved_bits(report, "act") == pytest.approx(3 * 4 * 32)


def test_allocating_like_an_output_is_not_a_read() -> None:
    report = measure(Fc(lambda y, a: a + torch.zeros_like(y) + y.new_ones(())), torch.rand(3, 2, 4))
    assert saved_bits(report, "fc") == pytest.approx(3 * 4 * 32)


def test_in_place_relu_hands_its_own_output_to_the_next_layer() -> None:
    def stage(inplace: bool) -> nn.Module:  # conv -> BN -> ReLU -> conv, time folded into the batch
        return nn.Sequential(nn.Flatten(0, 1), nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3),
                             nn.ReLU(inplace=inplace), nn.Conv2d(3, 2, 3, padding=1))

    x = torch.rand(2, 1, 2, 4, 4)  # [T, B, C, H, W]
    reports = {inplace: measure(stage(inplace), x) for inplace in (False, True)}
    for report in reports.values():
        assert saved_bits(report, "1") == pytest.approx(2 * 3 * 4 * 4 * 32)  # the first conv's write
        assert saved_bits(report, "3") == pytest.approx(2 * 3 * 4 * 4 * 32)  # the ReLU's read
    assert reports[True].memory_j == pytest.approx(reports[False].memory_j)


def test_in_place_op_on_an_output_ends_its_fusion() -> None:
    class Shifted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(x)
            y += 1.0  # reads y (so its write is kept) and makes it something else than fc's output
            return self.act(y)

    report = measure(Shifted(), torch.rand(3, 2, 4))
    assert saved_bits(report, "fc") == 0 and saved_bits(report, "act") == 0


def test_a_caught_error_in_a_counted_module_does_not_blind_the_watcher() -> None:
    class Fails(nn.Module):
        is_spiking_neuron = True  # counted (opaque), but this one raises

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("no")

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fails, self.fc, self.act = Fails(), nn.Linear(4, 4), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            try:
                self.fails(x)
            except ValueError:
                pass
            y = self.fc(x)
            return self.act(y) + y  # the add must still be seen

    report = measure(Model(), torch.rand(3, 2, 4))
    assert saved_bits(report, "fc") == 0 and saved_bits(report, "act") == pytest.approx(3 * 4 * 32)


def test_multihead_attention_reading_an_output_keeps_its_write() -> None:
    class Attend(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act, self.attn = nn.Linear(4, 4), nn.ReLU(), nn.MultiheadAttention(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [L, B, 4]
            y = self.fc(x)
            return self.act(y) + self.attn(y, y, y, need_weights=False)[0]

    report = measure(Attend(), torch.rand(3, 2, 4))
    assert saved_bits(report, "fc") == 0 and saved_bits(report, "act") == pytest.approx(3 * 4 * 32)


def test_which_hstlab_layers_fuse() -> None:
    import hstlab

    cfg = hstlab.HSTConfig.from_preset("tiny")
    x = (torch.rand(cfg.num_steps, 2, *cfg.input_shape) < 0.2).float()  # [T, B, C, H, W] events
    model = hstlab.build_model(cfg.with_modes("S" * cfg.n_layer))
    with torch.no_grad():  # an untrained model is silent: shift every current so the neurons see real values
        for norm in model.modules():
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                norm.bias.fill_(0.3)
    spiking = measure(model, x)
    block = "blocks.0"
    # a spiking block: each Linear feeds a neuron through folded BatchNorm; the Linear's write and the
    # neuron's read are the same tensor, so they save the same bits
    for linear, neuron in (("attn.branch.qkv.linear", "attn.branch.qkv.neuron"), ("attn.branch.proj", "attn.post"),
                           ("mlp.branch.fc1", "mlp.branch.neuron1"), ("mlp.branch.fc2", "mlp.post")):
        saved = saved_bits(spiking, f"{block}.{linear}")
        assert saved > 0 and saved == pytest.approx(saved_bits(spiking, f"{block}.{neuron}")), linear
    # the attention products feed their neuron outside any Linear: not fused
    assert saved_bits(spiking, f"{block}.attn.branch") == saved_bits(spiking, f"{block}.attn.branch.attn_neuron") == 0
    standard = measure(hstlab.build_model(cfg.with_modes("T" * cfg.n_layer)), x)
    saved = saved_bits(standard, f"{block}.mlp.branch.fc1")  # GELU in its epilogue
    assert saved > 0 and saved == pytest.approx(saved_bits(standard, f"{block}.mlp.branch.act"))
    for name in ("attn.branch.qkv", "attn.branch.proj", "mlp.branch.fc2"):  # read by attention or a residual add
        assert saved_bits(standard, f"{block}.{name}") == 0, name
