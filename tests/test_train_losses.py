"""Losses, bits per spike, LR schedule and callback dispatch: analytic checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hstlab.train import (
    LOSSES,
    TrainEvent,
    WarmupCosine,
    bits_per_spike,
    build_loss,
    warmup_cosine_factor,
)
from hstlab.train.events import dispatch, normalize_callbacks
from hstlab.train.losses import MaskedModellingLoss, NegativeBinomialNLLLoss, PoissonNLLLoss


def test_registry_names():
    assert set(LOSSES.names()) == {"cross_entropy", "tet", "poisson_nll", "negative_binomial_nll", "masked_modelling"}
    with pytest.raises(ValueError, match="unknown loss 'l2'"):
        build_loss("l2")


def test_cross_entropy_matches_torch_and_counts_correct():
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    loss = build_loss("cross_entropy")
    assert torch.allclose(loss(logits, y), F.cross_entropy(logits, y))
    stats = loss.stats(logits, y)
    assert loss.score(stats)["accuracy"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    seq_logits, seq_y = torch.randn(4, 2, 3), torch.randint(0, 3, (4, 2))  # [L, B, K], [L, B]
    assert torch.allclose(loss(seq_logits, seq_y), F.cross_entropy(seq_logits.flatten(0, 1), seq_y.flatten()))
    with pytest.raises(ValueError, match="decoding='spikes'"):
        build_loss("cross_entropy", decoding="spikes")


def test_poisson_nll_is_exact():
    log_rate, k = torch.tensor([[[0.5, -1.0]]]), torch.tensor([[[2.0, 0.0]]])
    expected = (log_rate.exp() - k * log_rate).mean()
    assert torch.allclose(PoissonNLLLoss()(log_rate, k), expected)


def test_negative_binomial_tends_to_poisson_and_learns_dispersion():
    log_rate = torch.randn(3, 2, 4) * 0.3
    k = torch.poisson(log_rate.exp())
    nb = NegativeBinomialNLLLoss(init_dispersion=1e6)
    poisson_full = log_rate.exp() - k * log_rate + torch.lgamma(k + 1)  # NB keeps log k!
    assert torch.allclose(nb.nll(log_rate, k), poisson_full, atol=1e-3)
    nb = NegativeBinomialNLLLoss(num_neurons=4)
    assert nb.dispersion.shape == (4,) and torch.allclose(nb.dispersion, torch.ones(4), atol=1e-5)
    nb(log_rate, k).backward()
    assert nb.raw_dispersion.grad is not None and nb.raw_dispersion.grad.abs().sum() > 0
    assert "raw_dispersion" in dict(nb.named_parameters())
    # NB with r=1 is the geometric distribution: P(k) = (1/(1+mu)) * (mu/(1+mu))^k
    mu = log_rate.exp()
    geometric = -(torch.log(1 / (1 + mu)) + k * torch.log(mu / (1 + mu)))
    assert torch.allclose(NegativeBinomialNLLLoss(init_dispersion=1.0).nll(log_rate, k), geometric, atol=1e-4)


def test_bits_per_spike_zero_for_mean_rate_and_positive_for_truth():
    g = torch.Generator().manual_seed(0)
    rates = torch.rand(200, 1, 5, generator=g) * 3  # [L, B, C], varying in time
    counts = torch.poisson(rates, generator=g)
    mean = counts.mean(dim=(0, 1))  # [C]
    assert bits_per_spike(mean.expand_as(counts), counts, mean) == pytest.approx(0.0, abs=1e-6)
    assert bits_per_spike(rates, counts, mean) > 0.1
    # the streaming stats of a count loss give the same number
    loss = PoissonNLLLoss()
    stats = loss.stats(torch.log(rates), counts)
    assert loss.score(stats)["bits_per_spike"] == pytest.approx(bits_per_spike(rates, counts, mean), rel=1e-5)
    with pytest.raises(ValueError, match="mean_rates shape"):
        bits_per_spike(rates, counts, mean[:2])


def test_masked_modelling_scores_only_masked_entries():
    torch.manual_seed(0)
    loss = MaskedModellingLoss(mask_ratio=0.3, mask_axis="time")
    x = torch.poisson(torch.full((50, 4, 6), 2.0))  # [L, B, C]
    x_in, (counts, mask) = loss.prepare(x, None)
    assert torch.equal(counts, x) and mask.shape == x.shape
    assert mask.all(dim=2).eq(mask.any(dim=2)).all()  # whole time bins are masked
    assert 0.15 < mask.float().mean() < 0.45 and x_in[mask].eq(0).all() and torch.equal(x_in[~mask], x[~mask])
    out = torch.randn(50, 4, 6)
    changed = out.clone()
    changed[~mask] += 5.0  # predictions for visible entries do not matter
    assert torch.allclose(loss(out, (counts, mask)), loss(changed, (counts, mask)))
    neuron = MaskedModellingLoss(mask_ratio=0.5, mask_axis="neuron")
    _, (_, m2) = neuron.prepare(x, None)
    assert m2.all(dim=0).eq(m2.any(dim=0)).all()  # whole neurons are masked
    with pytest.raises(ValueError, match="mask_axis='space'"):
        MaskedModellingLoss(mask_axis="space")


def test_warmup_cosine_shape():
    total, warm = 100, 5
    f = [warmup_cosine_factor(s, total, warm) for s in range(total)]
    assert f[0] == pytest.approx(1 / warm) and f[warm - 1] == pytest.approx(1.0) and f[warm] == pytest.approx(1.0)
    mid = warm + (total - warm) // 2
    assert warmup_cosine_factor(warm + (total - warm) / 2, total, warm) == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(f[warm:], f[warm + 1:])) and f[mid] < 0.55
    assert warmup_cosine_factor(total, total, warm) == pytest.approx(0.0, abs=1e-12)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, base_lr=2.0, total_steps=100, warmup_frac=0.03)
    assert sched.warmup_steps == 3 and sched.apply() == pytest.approx(2.0 / 3)
    state = sched.state_dict()
    sched.step()
    sched.load_state_dict(state)
    assert sched.step_count == 0
    with pytest.raises(ValueError, match="warmup_frac=0.5"):
        WarmupCosine(opt, 1.0, 10, warmup_frac=0.5)


def test_callbacks_dispatch_by_kind():
    got = []

    class OnlyEpoch:
        def on_epoch_end(self, ev):
            got.append(("obj", ev.kind))

    cbs = normalize_callbacks([OnlyEpoch(), lambda ev: got.append(("fn", ev.kind))])
    for kind in ("step", "epoch", "fit_end"):
        dispatch(cbs, TrainEvent(kind=kind, step=1, epoch=0, loss=0.1))
    assert got == [("fn", "step"), ("obj", "epoch"), ("fn", "epoch"), ("fn", "fit_end")]
    assert len(normalize_callbacks(OnlyEpoch())) == 1
    with pytest.raises(ValueError, match="kind='batch'"):
        TrainEvent(kind="batch", step=0, epoch=0, loss=math.nan)
