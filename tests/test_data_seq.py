"""lorenz-spikes, text-chars, spike encoding and time-first batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hstlab.data import dataset_info, load_dataset, spike_encode, time_first_collate
from hstlab.data.text import corpus


@pytest.fixture(autouse=True)
def _full_size(monkeypatch):
    """tests/conftest.py sets HSTLAB_SMOKE=1 (which shrinks datasets); these tests need full sizes."""
    monkeypatch.delenv("HSTLAB_SMOKE", raising=False)


# ----------------------------------------------------------------------------- lorenz-spikes


@pytest.fixture(scope="module")
def lorenz():
    return load_dataset("lorenz-spikes", "train", time_bins=100, neurons=32, trials=40, seed=1)


def test_lorenz_shapes_and_next_bin_alignment(lorenz):
    x, y = lorenz[0]
    assert x.shape == (100, 32) and y.shape == (100, 32) and x.dtype == torch.float32
    assert torch.equal(x[1:], y[:-1])  # y is x shifted by one bin
    assert lorenz.true_rates(0).shape == (100, 32)
    assert len(lorenz) == 28  # 70 % of 40 trials


def test_lorenz_rates_correlate_with_counts(lorenz):
    counts, rates = lorenz.counts, lorenz.rates  # [N, L+1, C]
    # centre per neuron so the correlation measures the latent-driven modulation only
    c = (counts - counts.mean((0, 1))).ravel()
    r_true = np.corrcoef(c, (rates - rates.mean((0, 1))).ravel())[0, 1]
    other = np.roll(rates, 1, axis=0)  # the rates of another trial
    r_other = np.corrcoef(c, (other - other.mean((0, 1))).ravel())[0, 1]
    assert r_true > 0.1 and abs(r_other) < 0.5 * r_true
    # Poisson calibration: within each rate decile the mean count equals the mean rate
    edges = np.quantile(rates, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(edges, rates.ravel(), side="right") - 1, 0, 9)
    for k in range(10):
        sel = which == k
        assert (
            abs(counts.ravel()[sel].mean() - rates.ravel()[sel].mean())
            < 0.1 * rates.ravel()[sel].mean() + 0.005
        )
    hz = rates.mean() / (lorenz.bin_ms * 1e-3)
    assert 2 < hz < 60


def test_lorenz_deterministic_and_splits_disjoint():
    a = load_dataset("lorenz-spikes", "val", time_bins=20, neurons=8, trials=20, seed=5)
    b = load_dataset("lorenz-spikes", "val", time_bins=20, neurons=8, trials=20, seed=5)
    c = load_dataset("lorenz-spikes", "test", time_bins=20, neurons=8, trials=20, seed=5)
    assert np.array_equal(a.counts, b.counts)
    assert len(a) == 3 and len(c) == 3
    assert not np.array_equal(a.latents, c.latents)


def test_lorenz_latent_is_chaotic_not_constant(lorenz):
    z = lorenz.latents  # [N, L+1, 3]
    assert z.std(axis=1).mean() > 0.3  # standardised latent moves within each trial
    assert abs(z.mean()) < 0.8


def test_lorenz_bad_options():
    with pytest.raises(ValueError, match="neurons=0"):
        load_dataset("lorenz-spikes", neurons=0)
    with pytest.raises(ValueError, match="time_bins=0"):
        load_dataset("lorenz-spikes", time_bins=0)


# ----------------------------------------------------------------------------- text-chars


def test_text_round_trip_and_windows():
    ds = load_dataset("text-chars", "val", time_bins=64)
    assert ds.decode(ds.encode(ds.text)) == ds.text
    x, y = ds[2]
    assert x.shape == (64, ds.vocab_size) and y.shape == (64,) and y.dtype == torch.int64
    assert torch.equal(x.sum(1), torch.ones(64))  # one-hot
    start = 2 * 64
    assert ds.decode(x.argmax(1)) == ds.text[start : start + 64]
    assert ds.decode(y) == ds.text[start + 1 : start + 65]
    # consecutive windows tile the block exactly
    joined = "".join(ds.decode(ds[i][0].argmax(1)) for i in range(len(ds)))
    assert joined == ds.text[: len(joined)] and len(ds.text) - len(joined) <= 64


def test_text_splits_are_contiguous_blocks():
    parts = {
        s: load_dataset("text-chars", s, time_bins=32, one_hot=False)
        for s in ("train", "val", "test")
    }
    assert "".join(parts[s].text for s in ("train", "val", "test")) == corpus()
    x, y = parts["test"][0]
    assert x.dtype == torch.int64 and x.shape == (32,) and torch.equal(x[1:], y[:-1])
    assert parts["train"].vocab == parts["test"].vocab
    assert dataset_info("text-chars")["vocab_size"] == parts["train"].vocab_size
    with pytest.raises(ValueError, match="vocabulary"):
        parts["train"].encode("\x00")


# ----------------------------------------------------------------------------- encode & collate


def test_rate_encoding_matches_probability():
    torch.manual_seed(0)
    x = torch.tensor([0.0, 0.25, 1.0])
    s = spike_encode(x.expand(1000, 3), "rate", num_steps=20)  # [20, 1000, 3]
    assert s.shape == (20, 1000, 3)
    assert s[..., 0].sum() == 0 and s[..., 2].mean() == 1
    assert abs(s[..., 1].mean().item() - 0.25) < 0.01


def test_latency_encoding_one_spike_earlier_for_brighter():
    s = spike_encode(torch.tensor([0.2, 0.9]), "latency", num_steps=10)
    assert s.shape == (10, 2) and torch.equal(s.sum(0), torch.ones(2))
    assert s[:, 1].argmax() < s[:, 0].argmax()


def test_delta_encoding_marks_changes():
    series = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0])[:, None]  # [T, 1]
    s = spike_encode(series, "delta", num_steps=5, threshold=0.5, off_spike=True)
    assert s[:, 0].tolist() == [0, 0, 1, 0, -1]


def test_encode_bad_input():
    with pytest.raises(ValueError, match="unknown spike encoding 'morse'"):
        spike_encode(torch.zeros(2), "morse", 4)
    with pytest.raises(ValueError, match="num_steps=0"):
        spike_encode(torch.zeros(2), "rate", 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        spike_encode(torch.full((2,), 2.0), "rate", 4)


def test_smoke_mode_shrinks_data(monkeypatch):
    monkeypatch.setenv("HSTLAB_SMOKE", "1")
    assert len(load_dataset("text-chars", "train", time_bins=16)) == 64
    assert len(load_dataset("text-chars", "train", time_bins=16, limit=5)) == 5
    monkeypatch.delenv("HSTLAB_SMOKE")
    assert len(load_dataset("text-chars", "train", time_bins=16)) > 1000


def test_collate_sequences_time_first():
    ds = load_dataset("lorenz-spikes", "train", time_bins=12, neurons=5, trials=10)
    x, y = time_first_collate([ds[0], ds[1], ds[2]])
    assert x.shape == (12, 3, 5) and y.shape == (12, 3, 5)  # [L, B, C]
    assert torch.equal(x[:, 1], ds[1][0])
    t = load_dataset("text-chars", "test", time_bins=8)
    x, y = time_first_collate([t[0], t[1]])
    assert x.shape == (8, 2, t.vocab_size) and y.shape == (8, 2)
