"""Integer (I-LIF) and ternary spiking neurons: hand computations, the binary expansion, gradients
and how the energy engine prices them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hstlab import HSTConfig
from hstlab.energy.counting import CountContext, OpCounter
from hstlab.model import HSTNet
from hstlab.neurons import ILIF, TernaryLIF, build_neuron, expand_spikes, integer_spike
from hstlab.train.meters import SpikeRateMeter


def test_ilif_hand_computed_soft_reset():
    n = ILIF(tau=2.0, max_spike=3, reset="soft")
    x = torch.tensor([[1.0], [5.0], [20.0], [-4.0]])
    # η0 = 0.5 -> 1 (u = -0.5); η1 = -0.25 + 2.5 = 2.25 -> 2 (u = 0.25)
    # η2 = 0.125 + 10 = 10.125 -> 3 (clipped, u = 7.125); η3 = 3.5625 - 2 = 1.5625 -> 2
    assert n(x).flatten().tolist() == [1.0, 2.0, 3.0, 2.0]
    assert float(n.v) == pytest.approx(1.5625 - 2.0)


def test_ilif_hand_computed_hard_reset_and_threshold():
    n = ILIF(tau=2.0, threshold=0.5, max_spike=4, reset="hard")
    x = torch.tensor([[0.9], [0.2], [3.0]])
    # η0 = 0.45 -> round(0.9) = 1, u = 0; η1 = 0.1 -> round(0.2) = 0, u = 0.1; η2 = 0.05 + 1.5 = 1.55 -> 3
    assert n(x).flatten().tolist() == [1.0, 0.0, 3.0]


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_ilif_expanded_binary_run_equals_integer_run(reset):
    torch.manual_seed(0)
    x = torch.randn(6, 4, 5) * 3  # [T, B, C]
    n = ILIF(tau=2.0, max_spike=4, reset=reset)
    integer = n(x)  # [T, B, C]
    v_int = n.v.clone()
    n.reset_state()
    virtual = n.forward_virtual(x)  # [T*D, B, C]
    assert set(virtual.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(virtual, expand_spikes(integer, 4))
    assert torch.equal(virtual.view(6, 4, 4, 5).sum(1), integer)
    assert torch.allclose(n.v, v_int)
    # the next layer: accumulating the D binary steps gives the integer run's input current
    lin = nn.Linear(5, 3, bias=False)
    assert torch.allclose(lin(virtual).view(6, 4, 4, 3).sum(1), lin(integer), atol=1e-5)


def _relaxed_ilif(x: torch.Tensor, tau: float, theta: float, d: int) -> torch.Tensor:
    """I-LIF with the rounding removed (soft reset, reset not detached): what the STE differentiates."""
    u = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        eta = (1 - 1 / tau) * u + x[t] / tau
        s = (eta / theta).clamp(0.0, float(d))
        u = eta - theta * s
        out.append(s)
    return torch.stack(out)


def test_ilif_straight_through_gradient_matches_gradchecked_relaxation():
    torch.manual_seed(1)
    x = (torch.rand(4, 3, dtype=torch.float64) * 4 + 0.3).requires_grad_()
    torch.autograd.gradcheck(lambda z: _relaxed_ilif(z, 2.0, 1.0, 3), (x,))  # the relaxation is smooth here
    n = ILIF(tau=2.0, max_spike=3, reset="soft", detach_reset=False)
    w = torch.randn(4, 3, dtype=torch.float64)
    (g_ste,) = torch.autograd.grad((n(x) * w).sum(), x)
    (g_ref,) = torch.autograd.grad((_relaxed_ilif(x, 2.0, 1.0, 3) * w).sum(), x)
    assert torch.allclose(g_ste, g_ref)


def test_integer_spike_gradient_zero_outside_range():
    eta = torch.tensor([-1.0, 2.0, 9.0], requires_grad=True)
    integer_spike(eta, 2.0, 3).sum().backward()
    assert eta.grad.tolist() == [0.0, 0.5, 0.0]


def test_ternary_hand_computed_and_alpha_gradcheck():
    n = TernaryLIF(tau=2.0, threshold=1.0, alpha_init=0.5, reset="soft")
    x = torch.tensor([[3.0], [-6.0], [1.0]])
    # η0 = 1.5 -> +α (u = 0.5); η1 = 0.25 - 3 = -2.75 -> -α (u = -1.75); η2 = -0.875 + 0.5 = -0.375 -> 0
    assert n(x).flatten().tolist() == [0.5, -0.5, 0.0]
    fixed = TernaryLIF(tau=2.0, alpha_init=0.5, learn_alpha=False)
    assert not any(p.requires_grad for p in fixed.parameters())
    learned = TernaryLIF(tau=2.0, alpha_init=0.7).double()
    assert learned.alpha_value.item() == pytest.approx(0.7)
    xs = torch.randn(5, 3, dtype=torch.float64) * 3

    def run(raw: torch.Tensor) -> torch.Tensor:
        learned.reset_state()
        return torch.func.functional_call(learned, {"spike_alpha_raw": raw}, (xs,))

    raw = learned.spike_alpha_raw.detach().clone().requires_grad_(True)
    torch.autograd.gradcheck(run, (raw,))
    learned.reset_state()
    out = learned(xs)
    out.sum().backward()
    # ∂L/∂ρ = ∂L/∂α · sigmoid(ρ), ∂L/∂α = Σ sign(S)
    expected = float((out.detach() / 0.7).sum()) * float(torch.sigmoid(raw.detach()))
    assert float(learned.spike_alpha_raw.grad) == pytest.approx(expected)


def test_ternary_surrogate_gradient_reaches_input():
    n = TernaryLIF(tau=2.0, alpha_init=1.0)
    x = torch.tensor([[1.9], [-2.1]], requires_grad=True)
    n(x).sum().backward()
    assert x.grad.abs().min() > 0


def test_rate_meter_counts_events():
    net = nn.Sequential(TernaryLIF(tau=2.0, alpha_init=0.5, reset="soft"))
    meter = SpikeRateMeter(net)
    net(torch.tensor([[3.0], [-6.0], [1.0]]))
    assert meter.rate() == pytest.approx(2 / 3)
    meter.close()


def _count(net: nn.Module, x: torch.Tensor) -> dict:
    with OpCounter(net, CountContext(batch_size=x.shape[1], act_bits=32)) as counter:
        net(x)
    return {t.name: t for t in counter.called()}


def test_energy_prices_integer_spikes_as_virtual_binary_steps():
    neuron = ILIF(tau=2.0, max_spike=3, reset="soft")
    net = nn.Sequential(neuron, nn.Linear(2, 4))
    x = torch.tensor([[[1.0, 6.0]], [[5.0, 0.0]]])  # [T=2, B=1, 2]
    spikes = neuron(x)  # η = (0.5, 3) -> (1, 3); then (-0.25+2.5, 0) -> (2, 0): 6 virtual spikes
    assert spikes.flatten().tolist() == [1.0, 3.0, 2.0, 0.0]
    neuron.reset_state()
    rows = _count(net, x)
    n_row, lin = rows["0"], rows["1"]
    assert n_row.macs == 4 * 3 and n_row.steps == 2 * 3  # D updates per neuron and step
    assert n_row.act_bits == 4 * 32 + 6  # input read + one bit per virtual spike
    assert lin.acs == 6 * 4 and lin.macs == 0  # one accumulate per virtual spike and output
    assert lin.input_kind == "counts"


def test_energy_prices_ternary_spikes_as_signed_accumulates():
    neuron = TernaryLIF(tau=2.0, alpha_init=0.5, reset="soft")
    net = nn.Sequential(neuron, nn.Linear(2, 4))
    x = torch.tensor([[[3.0, -3.0]], [[0.0, 6.0]]])  # spikes (+α, -α), (0, +α): 3 events
    rows = _count(net, x)
    lin = rows["1"]
    assert lin.input_kind == "signed"
    assert lin.acs == 3 * 4 and lin.macs == 0
    assert rows["0"].act_bits == 4 * 32 + 3


def test_conv_prices_ternary_events():
    neuron = TernaryLIF(tau=2.0, alpha_init=1.0, reset="soft")
    conv = nn.Conv2d(1, 2, kernel_size=1, bias=False)
    x = torch.zeros(1, 1, 1, 2, 2)
    x[0, 0, 0, 0, 0], x[0, 0, 0, 1, 1] = 4.0, -4.0  # two events of opposite sign

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.n, self.c = neuron, conv

        def forward(self, z):
            return self.c(self.n(z).flatten(0, 1))

    rows = _count(Net(), x)
    assert rows["c"].acs == 2 * 2  # 2 events x 2 output channels (a signed sum would give 0)


@pytest.mark.parametrize("neuron", ["ilif", "ternary"])
def test_model_with_new_neurons_trains_a_step(neuron):
    cfg = HSTConfig.from_preset("tiny", neuron=neuron)
    model = HSTNet(cfg)
    x = torch.rand(cfg.num_steps, 2, *cfg.input_shape) * 2
    model(x).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert isinstance(build_neuron(cfg), ILIF if neuron == "ilif" else TernaryLIF)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("spike_max", 0, "spike_max=0 must be an integer >= 1"),
    ("spike_max", -2, "spike_max"),
    ("ternary_alpha", 0.0, "ternary_alpha=0.0 must be"),
    ("ternary_alpha", -1.0, "ternary_alpha"),
])
def test_bad_neuron_fields_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        HSTConfig(**{field: value})


def test_bad_neuron_arguments_name_the_argument():
    with pytest.raises(ValueError, match="max_spike=0"):
        ILIF(max_spike=0)
    with pytest.raises(ValueError, match="alpha_init=0"):
        TernaryLIF(alpha_init=0, learn_alpha=False)
    with pytest.raises(ValueError, match="membrane_bits"):
        ILIF(membrane_bits=8)


def test_learned_ternary_alpha_stays_positive_when_a_step_pushes_it_below_zero():
    n = TernaryLIF(tau=2.0, alpha_init=0.5, reset="soft")
    x = torch.tensor([[4.0, -4.0, 4.0]])  # [T=1, 3]: η = (2, -2, 2) -> (+α, -α, +α)
    opt = torch.optim.SGD(n.parameters(), lr=10.0)
    n(x).sum().backward()  # ∂L/∂α = 1 - 1 + 1 = 1, ∂L/∂ρ = sigmoid(ρ) ≈ 0.39
    assert float(n.spike_alpha_raw.grad) > 0
    opt.step()
    opt.zero_grad()
    alpha = n.alpha_value.item()
    assert 0 < alpha < 0.5  # lowered, still a valid amplitude (a raw α would be 0.5 - 10 < 0)
    n.reset_state()
    xg = x.clone().requires_grad_(True)
    s = n(xg)
    assert s.flatten().tolist() == pytest.approx([alpha, -alpha, alpha])  # signs kept: +α where η > θ
    s.sum().backward()
    assert float(n.spike_alpha_raw.grad) > 0 and xg.grad.abs().sum() > 0  # gradients still flow to α and x


def test_ternary_alpha_survives_a_long_push_towards_zero():
    n = TernaryLIF(tau=2.0, alpha_init=1.0, reset="soft")
    opt = torch.optim.AdamW(n.parameters(), lr=1.0, weight_decay=0.5)
    x = torch.tensor([[4.0, 4.0]])
    for _ in range(50):
        n.reset_state()
        n(x).sum().backward()
        opt.step()
        opt.zero_grad()
    assert n.alpha_value.item() > 0 and bool(torch.isfinite(n.spike_alpha_raw))
    n.reset_state()
    assert (n(x) > 0).all()  # positive drive still fires positive spikes


def test_ternary_state_dicts_load_across_alpha_storage():
    old_style = {"spike_alpha": torch.tensor(0.7)}  # a learned α saved as α itself (before softplus)
    learned = TernaryLIF(tau=2.0, alpha_init=1.0)
    learned.load_state_dict(old_style)
    assert learned.alpha_value.item() == pytest.approx(0.7)
    fixed = TernaryLIF(tau=2.0, alpha_init=1.0, learn_alpha=False)
    fixed.load_state_dict(learned.state_dict())
    assert fixed.alpha_value.item() == pytest.approx(0.7)
    with pytest.raises(ValueError, match=r"spike_alpha=-0.3 in the state dict must be a finite number > 0"):
        TernaryLIF(tau=2.0).load_state_dict({"spike_alpha": torch.tensor(-0.3)})
