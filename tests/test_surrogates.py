"""Surrogate gradients: snnTorch parity, analytic shape, firing convention, argument errors."""

from __future__ import annotations

import math

import pytest
import torch

from hstlab.neurons.surrogate import SURROGATES, get_surrogate, spike

snn_surrogate = pytest.importorskip("snntorch.surrogate")

# our name -> snnTorch factory taking the same sharpness parameter
SNNTORCH = {
    "atan": lambda a: snn_surrogate.atan(alpha=a),
    "sigmoid": lambda a: snn_surrogate.sigmoid(slope=a),
    "fast_sigmoid": lambda a: snn_surrogate.fast_sigmoid(slope=a),
}


def _grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = fn(x)
    out.backward(torch.ones_like(out))
    return out.detach(), x.grad


@pytest.mark.parametrize("name", sorted(SNNTORCH))
@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0, 25.0])
def test_matches_snntorch(name: str, alpha: float) -> None:
    x = torch.cat([torch.linspace(-3, 3, 601), torch.tensor([0.0, 1e-7, -1e-7])])
    ours_out, ours_grad = _grad(lambda v: spike(v, name, alpha), x)
    ref_out, ref_grad = _grad(SNNTORCH[name](alpha), x)
    assert torch.equal(ours_out, ref_out)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_fires_strictly_above_zero_like_snntorch() -> None:
    x = torch.tensor([-1e-6, 0.0, 1e-6])
    assert spike(x).tolist() == [0.0, 0.0, 1.0]
    assert snn_surrogate.atan()(x).tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("alpha", [1.0, 4.0])
def test_triangle_is_unit_area_tent(alpha: float) -> None:
    tri = get_surrogate("triangle")
    x = torch.tensor([0.0, 0.5 / alpha, -0.5 / alpha, 1.0 / alpha, 2.0 / alpha], dtype=torch.float64)
    assert tri.grad(x, alpha).tolist() == pytest.approx([alpha, alpha / 2, alpha / 2, 0.0, 0.0])


def test_triangle_matches_spikingjelly_piecewise_quadratic() -> None:
    sj = pytest.importorskip("spikingjelly.activation_based.surrogate")
    x = torch.linspace(-1.5, 1.5, 301)
    for alpha in (1.0, 2.5):
        _, ref = _grad(sj.PiecewiseQuadratic(alpha=alpha), x)
        _, ours = _grad(lambda v, a=alpha: spike(v, "triangle", a), x)
        torch.testing.assert_close(ours, ref)


def test_snntorch_triangular_is_not_a_tent_so_we_do_not_follow_it() -> None:
    # snnTorch 1.0.0 returns +threshold below 0 and -threshold at/above 0 (documented divergence)
    _, ref = _grad(snn_surrogate.triangular(), torch.tensor([-0.5, 0.5]))
    _, ours = _grad(lambda v: spike(v, "triangle", 1.0), torch.tensor([-0.5, 0.5]))
    assert ref.tolist() == [1.0, -1.0]
    assert ours.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("name", ["atan", "sigmoid", "triangle", "fast_sigmoid"])
def test_shape_symmetric_peaked_and_area(name: str) -> None:
    alpha = 3.0
    x = torch.linspace(-200, 200, 2_000_001, dtype=torch.float64)
    g = get_surrogate(name).grad(x, alpha)
    assert (g >= 0).all()
    torch.testing.assert_close(g, g.flip(0))
    assert g.argmax().item() == len(x) // 2
    area = torch.trapezoid(g, x).item()
    expected = 2.0 / alpha if name == "fast_sigmoid" else 1.0  # fast sigmoid is not normalised
    assert area == pytest.approx(expected, rel=2e-3)


def test_grad_leaves_input_and_grad_overwrites() -> None:
    x = torch.tensor([0.3, -0.2])
    before = x.clone()
    g = SURROGATES.get("atan").grad(x, 2.0)
    assert torch.equal(x, before)
    expected = 1.0 / (1.0 + (math.pi / 2 * 2.0 * before) ** 2)
    torch.testing.assert_close(g, expected)
    out = SURROGATES.get("atan").grad_(x, 2.0)
    assert out.data_ptr() == x.data_ptr()


def test_float64_preserved() -> None:
    out, grad = _grad(lambda v: spike(v, "sigmoid", 4.0), torch.randn(5, dtype=torch.float64))
    assert out.dtype == grad.dtype == torch.float64


def test_registry_names() -> None:
    assert SURROGATES.names() == ("atan", "sigmoid", "fast_sigmoid", "triangle")


@pytest.mark.parametrize("bad", ["relu", "ATAN", ""])
def test_unknown_surrogate_names_allowed(bad: str) -> None:
    with pytest.raises(ValueError, match=r"surrogate=.*allowed: atan, sigmoid, fast_sigmoid, triangle"):
        spike(torch.zeros(1), bad)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), True])
def test_bad_alpha(bad: float) -> None:
    with pytest.raises(ValueError, match="alpha="):
        spike(torch.zeros(1), "atan", bad)
