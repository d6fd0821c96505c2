"""Layer-level analytic checks: batch norm, quantization, masking, residuals, TIM, head gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from hstlab import HSTConfig
from hstlab.layers.masking import SpikeMasking
from hstlab.layers.norm import TokenBatchNorm
from hstlab.layers.quant import QuantLinear, fake_quantize
from hstlab.layers.residual import RESIDUALS
from hstlab.layers.stabilize import head_grad_norm
from hstlab.layers.tim import TemporalInteraction


def test_token_batch_norm_matches_torch_batch_norm():
    torch.manual_seed(1)
    ref, ours = nn.BatchNorm1d(6).double(), TokenBatchNorm(6).double()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 2.0)
        ref.bias.uniform_(-1.0, 1.0)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn_like(x)
    (ref(x.reshape(-1, 6)).view_as(x) * upstream).sum().backward()
    grad_ref = x.grad.clone()
    x.grad = None
    (ours(x) * upstream).sum().backward()
    torch.testing.assert_close(x.grad, grad_ref)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ref.eval(), ours.eval()
    torch.testing.assert_close(ours(x), ref(x.reshape(-1, 6)).view_as(x))


def test_token_batch_norm_cumulative_average_like_torch():
    ref, ours = nn.BatchNorm1d(4, momentum=None), TokenBatchNorm(4, momentum=None)
    for _ in range(3):
        x = torch.randn(10, 4) * 3 + 1
        ref(x), ours(x)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)


def test_calibrate_batchnorm_wakes_an_untrained_network():
    from hstlab import Recorder, build_model, example_input
    from hstlab.layers.norm import calibrate_batchnorm

    cfg = HSTConfig.from_preset("tiny")
    model = build_model(cfg).eval()
    x = example_input(cfg, batch_size=4, rate=0.3)

    def block_rate() -> float:
        model.reset_state()
        with torch.no_grad(), Recorder(model, layers="blocks.*") as rec:
            model(x)
        return float(torch.stack([s.mean() for s in rec.spikes.values()]).mean())

    assert block_rate() < 0.01  # initial running statistics: the blocks stay silent
    assert calibrate_batchnorm(model, x) > 0
    assert not model.training
    assert block_rate() > 0.01


def test_token_batch_norm_gradcheck():
    bn = TokenBatchNorm(3).double()
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: bn(t), (x,))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_fake_quantize_levels_and_straight_through(bits):
    w = torch.randn(4, 9, requires_grad=True)
    q = fake_quantize(w, bits)
    levels = 2 ** (bits - 1) - 1
    scale = w.detach().abs().amax(dim=1, keepdim=True) / levels
    steps = q.detach() / scale
    torch.testing.assert_close(steps, steps.round(), atol=1e-4, rtol=0)
    assert steps.abs().max() <= levels + 1e-4
    assert (q.detach() - w.detach()).abs().max() <= scale.max() / 2 + 1e-6
    q.sum().backward()
    torch.testing.assert_close(w.grad, torch.ones_like(w))  # straight-through


def test_quant_linear_32_bits_is_plain_linear():
    layer = QuantLinear(5, 3, weight_bits=32)
    x = torch.randn(2, 5)
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias))


def test_random_masking_ratio_and_eval_behaviour():
    mask = SpikeMasking(0.25, "random")
    x = torch.ones(8, 4, 16, 32)
    kept = mask.train()(x).mean().item()
    assert abs(kept - 0.75) < 0.02
    assert torch.equal(mask.eval()(x), x)  # off in eval ...
    assert SpikeMasking(0.25, "random", in_eval=True).eval()(x).mean() < 0.8  # ... unless asked
    assert not torch.equal(mask.train()(x), mask.train()(x))  # fresh draw every pass


def test_significance_masking_keeps_most_active_tokens():
    x = torch.zeros(1, 1, 4, 8)  # [T, B, N, D]
    x[0, 0, 0, :6] = 1  # token 0: 6 spikes
    x[0, 0, 2, :3] = 1  # token 2: 3 spikes
    x[0, 0, 3, :1] = 1  # token 3: 1 spike
    out = SpikeMasking(0.5, "significance").train()(x)
    assert out[0, 0].sum(-1).tolist() == [6.0, 0.0, 3.0, 0.0]
    heads = x.view(1, 1, 4, 2, 4).transpose(2, 3)  # [T, B, H, N, d]
    out_heads = SpikeMasking(0.5, "significance").train()(heads)
    assert out_heads.transpose(2, 3).reshape(1, 1, 4, 8).sum(-1)[0, 0].tolist() == [6.0, 0.0, 3.0, 0.0]


def test_residual_formulas():
    a = torch.tensor([0.0, 1.0, 0.0, 1.0])  # branch spikes
    s = torch.tensor([0.0, 0.0, 1.0, 1.0])  # identity spikes
    assert RESIDUALS.get("sew_add")(s, a).tolist() == [0.0, 1.0, 1.0, 2.0]
    assert RESIDUALS.get("sew_and")(s, a).tolist() == [0.0, 0.0, 0.0, 1.0]
    assert RESIDUALS.get("sew_iand")(s, a).tolist() == [0.0, 0.0, 1.0, 0.0]


def test_spiking_add_residual_spikes_after_the_sum_unlike_sew():
    from hstlab.layers.block import HSTBlock

    cfg = HSTConfig.from_preset("tiny")
    x = (torch.rand(2, 3, cfg.num_tokens, cfg.n_embd) < 0.3).float()
    plain = dataclasses.replace(cfg, residual="add")
    torch.manual_seed(0)
    plain_block = HSTBlock(plain, plain.layer(0)).train()
    torch.manual_seed(0)
    sew_block = HSTBlock(cfg, cfg.layer(0)).train()
    plain_out, sew_out = plain_block(x), sew_block(x)
    assert set(plain_out.unique().tolist()) <= {0.0, 1.0}  # SN(x + branch): binary stream
    assert sew_out.max() > 1.0  # SEW ADD of spikes: counts 0/1/2/...
    assert not torch.equal(plain_out, sew_out)


def test_head_grad_norm_equalizes_heads():
    x = torch.ones(2, 1, 3, 4, 5, requires_grad=True)
    weights = torch.tensor([1.0, 2.0, 6.0]).view(1, 1, 3, 1, 1)
    (head_grad_norm(x) * weights).sum().backward()
    norms = x.grad.transpose(0, 2).reshape(3, -1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((3,), norms.mean().item()))
    assert torch.isclose(norms.mean(), (weights.flatten() * (40 ** 0.5)).mean())


def test_tim_first_step_is_q_and_is_causal():
    cfg = dataclasses.replace(HSTConfig.from_preset("tiny"), tim_alpha=0.5)
    tim = TemporalInteraction(cfg)
    q = (torch.rand(4, 2, 2, 3, 8) < 0.5).float()
    out = tim(q)
    torch.testing.assert_close(out[0], q[0])
    q_later = q.clone()
    q_later[3] = 1 - q_later[3]
    tim.inner_neuron.reset_state(), tim.outer_neuron.reset_state()
    torch.testing.assert_close(tim(q_later)[:3], out[:3])
    assert set(out.unique().tolist()) <= {0.0, 1.0}
