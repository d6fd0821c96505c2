"""The surrogate maths is written for torch, numba and Triton; each form must equal the one
definition (``Surrogate.reference``) on a grid of z and alpha.

The Triton check needs CUDA and is skipped without it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hstlab.neurons import _compiled
from hstlab.neurons.surrogate import SURROGATES, spike

Z = np.linspace(-3.0, 3.0, 121)  # includes 0 and the triangle's corners for the alphas below
ALPHAS = (0.5, 1.0, 2.0, 4.0, 10.0)
NAMES = SURROGATES.names()


def reference(name: str, alpha: float, z: np.ndarray = Z) -> np.ndarray:
    g = SURROGATES.get(name).reference
    return np.array([g(float(v), alpha) for v in z])


def test_every_surrogate_has_a_distinct_kernel_code() -> None:
    codes = [SURROGATES.get(n).code for n in NAMES]
    assert sorted(codes) == list(range(len(NAMES))), f"codes {codes} must be 0..{len(NAMES) - 1}"
    assert _compiled.CODES == dict(zip(NAMES, codes, strict=True))


L = 20.0  # the integrals below are over [-L, L]
AREA = {  # closed forms of each definition's integral over [-L, L] (fast_sigmoid is snnTorch's: area 2/α)
    "atan": lambda a: 2 / math.pi * math.atan(math.pi / 2 * a * L),
    "sigmoid": lambda a: 2 / (1 + math.exp(-a * L)) - 1,
    "fast_sigmoid": lambda a: 2 / a * (1 - 1 / (1 + a * L)),
    "triangle": lambda a: 1.0,
}


@pytest.mark.parametrize("name", NAMES)
def test_reference_is_an_even_bump_with_its_closed_form_area(name: str) -> None:
    """Sanity of the definition itself: even, peaked at 0, and its integral as derived by hand."""
    z = np.linspace(-L, L, 80_001)
    for alpha in ALPHAS:
        g = reference(name, alpha, z)
        assert np.allclose(g, g[::-1]) and g.argmax() == len(z) // 2
        area = float(np.sum((g[1:] + g[:-1]) / 2 * np.diff(z)))
        assert area == pytest.approx(AREA[name](alpha), rel=1e-4), f"{name} alpha={alpha}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_torch_form_matches_the_reference(name: str, dtype: torch.dtype, tol: float) -> None:
    surrogate = SURROGATES.get(name)
    for alpha in ALPHAS:
        want = torch.tensor(reference(name, alpha), dtype=torch.float64)
        z = torch.tensor(Z, dtype=dtype)
        got = surrogate.grad(z, alpha).double()
        torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=f"{name} alpha={alpha}")
        other = torch.linspace(-1, 1, len(Z), dtype=dtype)
        fused = surrogate.grad_mul_(z.clone(), alpha, other).double()
        torch.testing.assert_close(fused, want * other.double(), rtol=tol, atol=tol)
        x = z.clone().requires_grad_(True)
        spike(x, name, alpha).sum().backward()
        torch.testing.assert_close(x.grad.double(), want, rtol=tol, atol=tol)


@pytest.mark.skipif(not _compiled.AVAILABLE, reason="numba is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_numba_form_matches_the_reference(name: str) -> None:
    from hstlab.neurons._compiled_kernels import _surrogate_block

    theta = np.float32(0.25)  # the kernels evaluate g(η - θ)
    eta = (Z + theta).astype(np.float32)
    for alpha in ALPHAS:
        sg = np.empty_like(eta)
        _surrogate_block(_compiled.CODES[name], np.float32(alpha), theta, eta, sg, len(eta))
        want = reference(name, alpha, eta.astype(np.float64) - float(theta))
        np.testing.assert_allclose(sg, want, rtol=2e-5, atol=2e-6, err_msg=f"{name} alpha={alpha}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels need CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_triton_form_matches_the_reference(name: str) -> None:
    pytest.importorskip("triton")
    from hstlab.neurons import _gpu

    theta = 0.25
    eta = torch.tensor(Z + theta, dtype=torch.float32, device="cuda")[None]  # [T=1, neurons]
    for alpha in ALPHAS:
        # one step, hard detached reset, c = 1, no incoming ∂L/∂V: ∂L/∂X = ∂L/∂S · g(η - θ)
        g_x, _ = _gpu.lif_backward(torch.ones_like(eta), None, eta, torch.zeros_like(eta), 1.0, 1.0,
                                   theta, 1.0, True, True, _compiled.CODES[name], alpha)
        want = reference(name, alpha, eta[0].double().cpu().numpy() - theta)
        np.testing.assert_allclose(g_x[0].cpu().numpy(), want, rtol=2e-5, atol=2e-6, err_msg=f"{name} alpha={alpha}")
