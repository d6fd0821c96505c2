"""Heaviside spike function with surrogate gradients, chosen by name from ``SURROGATES``.

Forward: ``Θ(x) = 1 if x > 0 else 0`` (strictly greater, as snnTorch fires: ``(x > 0).float()``).
Backward: ``dΘ/dx`` is replaced by a smooth surrogate ``g(x; α)``:

========================  ===================================  ==============================
name                      g(x; α)                              snnTorch equivalent
========================  ===================================  ==============================
``atan``                  ``α/2 / (1 + (π/2 · α · x)²)``       ``surrogate.atan(alpha=α)``
``sigmoid``               ``α · σ(αx) · (1 - σ(αx))``          ``surrogate.sigmoid(slope=α)``
``fast_sigmoid``          ``1 / (1 + α|x|)²``                  ``surrogate.fast_sigmoid(slope=α)``
``triangle``              ``α · max(0, 1 - α|x|)``             spikingjelly ``PiecewiseQuadratic(alpha=α)``
========================  ===================================  ==============================

``triangle`` deliberately does NOT follow ``snntorch.surrogate.triangular``: snnTorch 1.0.0's
backward returns ``+threshold`` for ``x < 0`` and ``-threshold`` for ``x >= 0`` (the derivative
of a triangle, not a triangle), i.e. a negative "gradient" for every neuron above threshold.
We use the unit-area triangle of width ``2/α`` (spikingjelly's piecewise-quadratic surrogate).

Each :class:`Surrogate` below is the one definition of its maths: ``reference`` is ``g(z; α)``
in plain float arithmetic, ``grad_`` the in-place torch form, and ``code`` the branch the
compiled neuron kernels take (numba ``_compiled_kernels._surrogate_block``, Triton
``_gpu.lif_bwd``). ``tests/test_surrogate_backends.py`` checks the torch and numba forms (and
Triton on CUDA) against ``reference`` on a grid of ``z`` and ``α``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hstlab.config import FIRING_RULES
from hstlab.config import SURROGATES as SURROGATE_NAMES
from hstlab.registry import Registry

GradFn = Callable[[Tensor, float], Tensor]


@dataclass(frozen=True)
class Surrogate:
    """A named surrogate derivative ``g(x; alpha)`` of the Heaviside step.

    ``grad_(x, alpha)`` overwrites ``x`` with ``g(x; alpha)`` and returns it (the fused neuron
    kernels pass a scratch tensor, so no extra allocation is made).

    Example:
        >>> SURROGATES.get("atan").grad(torch.zeros(1), 2.0)
        tensor([1.])
    """

    name: str
    grad_: GradFn
    formula: str
    code: int  # the compiled kernels' branch for this surrogate (numba and Triton)
    reference: Callable[[float, float], float]  # g(z; alpha) in float maths: what every backend must give
    grad_mul_fn: Callable[[Tensor, float, Tensor], Tensor] | None = None

    def grad(self, x: Tensor, alpha: float) -> Tensor:
        """``g(x; alpha)`` as a new tensor (``x`` is left untouched)."""
        return self.grad_(x.clone(), alpha)

    def grad_mul_(self, x: Tensor, alpha: float, other: Tensor) -> Tensor:
        """Overwrite ``x`` with ``other * g(x; alpha)`` (fewer passes where a fused form exists)."""
        if self.grad_mul_fn is not None:
            return self.grad_mul_fn(x, alpha, other)
        return self.grad_(x, alpha).mul_(other)


def _atan_(x: Tensor, alpha: float) -> Tensor:
    x.mul_(math.pi / 2 * alpha)
    x.mul_(x).add_(1.0)  # (in-place self-multiply is faster than square_/pow_ on CPU)
    return x.reciprocal_().mul_(alpha / 2)


def _atan_mul_(x: Tensor, alpha: float, other: Tensor) -> Tensor:
    x.mul_(x).mul_((math.pi / 2 * alpha) ** 2).add_(1.0)
    torch.div(other, x, out=x)
    return x if alpha == 2.0 else x.mul_(alpha / 2)


def _sigmoid_(x: Tensor, alpha: float) -> Tensor:
    sig = torch.sigmoid(x.mul_(alpha))
    return x.neg_().sigmoid_().mul_(sig).mul_(alpha)  # α σ(αx) σ(-αx): no cancellation


def _fast_sigmoid_(x: Tensor, alpha: float) -> Tensor:
    x.abs_().mul_(alpha).add_(1.0)
    return x.mul_(x).reciprocal_()


def _triangle_(x: Tensor, alpha: float) -> Tensor:
    return x.abs_().mul_(-alpha * alpha).add_(alpha).clamp_min_(0.0)


def _sigmoid_reference(z: float, alpha: float) -> float:
    e = math.exp(-alpha * abs(z))  # α σ(αz) (1 - σ(αz)) = α e^{-α|z|} / (1 + e^{-α|z|})², no overflow
    return alpha * e / (1.0 + e) ** 2


SURROGATES: Registry[Surrogate] = Registry("surrogate", declared=SURROGATE_NAMES)
for _surrogate in (
    Surrogate("atan", _atan_, "alpha/2 / (1 + (pi/2 * alpha * x)^2)", code=0,
              reference=lambda z, a: a / 2 / (1.0 + (math.pi / 2 * a * z) ** 2), grad_mul_fn=_atan_mul_),
    Surrogate("sigmoid", _sigmoid_, "alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))", code=1,
              reference=_sigmoid_reference),
    Surrogate("fast_sigmoid", _fast_sigmoid_, "1 / (1 + alpha |x|)^2", code=2,
              reference=lambda z, a: 1.0 / (1.0 + a * abs(z)) ** 2),
    Surrogate("triangle", _triangle_, "alpha * max(0, 1 - alpha |x|)", code=3,
              reference=lambda z, a: a * max(0.0, 1.0 - a * abs(z))),
):
    SURROGATES.register(_surrogate.name)(_surrogate)
del _surrogate


def get_surrogate(name: str) -> Surrogate:
    """The registered surrogate ``name``; ``ValueError`` naming the allowed ones otherwise."""
    if name not in SURROGATES:
        raise ValueError(f"surrogate={name!r} is not allowed; allowed: {', '.join(SURROGATES.names())}")
    return SURROGATES.get(name)


def check_alpha(alpha: float) -> float:
    """Validate a surrogate sharpness (a positive finite number)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha={alpha!r} must be a positive finite number (surrogate sharpness)")
    return float(alpha)


class _SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: Surrogate, alpha: float, at_zero: bool) -> Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.alpha = surrogate, alpha
        return (x >= 0 if at_zero else x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x, ctx.alpha), None, None, None


def spike(x: Tensor, surrogate: str = "atan", alpha: float = 2.0, firing_rule: str = ">") -> Tensor:
    """Θ(x) (1 where ``x > 0``; with ``firing_rule=">="`` where ``x >= 0``) with the surrogate
    derivative ``surrogate`` in the backward pass (the same for both rules).

    Example:
        >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
        >>> spike(x, "atan", 2.0)
        tensor([0., 0., 1.], grad_fn=<_SpikeFnBackward>)
        >>> spike(x, "atan", 2.0, firing_rule=">=")
        tensor([0., 1., 1.], grad_fn=<_SpikeFnBackward>)
    """
    if firing_rule not in FIRING_RULES:
        raise ValueError(f"firing_rule={firing_rule!r} is not allowed; allowed: {', '.join(FIRING_RULES)}")
    return _SpikeFn.apply(x, get_surrogate(surrogate), check_alpha(alpha), firing_rule == ">=")
