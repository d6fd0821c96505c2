"""Multi-level spiking neurons: integer spikes (I-LIF) and ternary spikes {-α, 0, α}.

Both charge like :class:`~hstlab.neurons.LIF` (on ``u = V - V_r``, ``k = 1 - 1/τ``, ``c = 1/τ``
with ``decay_input`` else 1): ``η_t = k u_{t-1} + c X_t``. They differ in what they emit.

**I-LIF** (SpikeYOLO, E-SpikeFormer), ``D = max_spike``::

    S_t = clip(⌊η_t / θ + 1/2⌋, 0, D)          (an integer 0..D: round half up)
    u_t = η_t - θ S_t   (soft)   |   u_t = η_t · 1[S_t = 0]   (hard)

Training uses a straight-through gradient: ``∂S_t/∂η_t = 1/θ`` where ``0 <= η_t/θ <= D``, else
0 (the gradient of ``clip(η/θ, 0, D)``; the rounding passes gradients straight through). At
inference a spike of value ``S_t`` is ``S_t`` binary spikes on ``D`` virtual time steps
(:meth:`ILIF.forward_virtual` runs them: a binary neuron firing on ``m >= θ/2`` and subtracting θ
per spike, ``m`` starting at ``η_t``), which is how the energy engine prices it: D neuron
updates per step and one accumulate per virtual spike downstream.

**Ternary LIF** (``α`` learnable or fixed, > 0; learned as ``α = softplus(ρ)``)::

    S_t = α (Θ(η_t - θ) - Θ(-η_t - θ))         (in {-α, 0, α}; Θ with the surrogate gradient)
    u_t = η_t - θ S_t/α   (soft)   |   u_t = η_t · 1[S_t = 0]   (hard)

A ternary spike is a sign bit on an event: the next layer adds or subtracts its (α-scaled)
weight, a signed accumulate, which the energy engine prices as one accumulate.

A learned α is the softplus of a free parameter ρ (``spike_alpha_raw``), so no optimizer step
can make it negative (which would swap the signs of all spikes) or zero (which would silence
them), and its gradient ``∂α/∂ρ = sigmoid(ρ) > 0`` never vanishes: a clamp would zero the
gradient below its floor and freeze α there. PLIF learns ``1/τ = sigmoid(w)`` the same way. The
Ternary Spike paper (Guo et al., AAAI 2024) gives no constraint on its trainable factor; its
released code holds it at 1 (the learnable version is commented out).

Example:
    >>> ilif = ILIF(tau=2.0, max_spike=4)
    >>> ilif(torch.tensor([[3.0], [9.0]])).flatten().tolist()  # η = 1.5 -> 2 (hard reset: u = 0), η = 4.5 -> D = 4
    [2.0, 4.0]
    >>> TernaryLIF(tau=2.0, alpha_init=0.5)(torch.tensor([[3.0], [-3.0], [0.5]])).flatten().tolist()
    [0.5, -0.5, 0.0]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hstlab.neurons.kernels import quantize_membrane_
from hstlab.neurons.lif import _LIFBase
from hstlab.neurons.surrogate import spike


def check_max_spike(value: int, name: str = "max_spike") -> int:
    """``value`` if it is an integer >= 1 (the D of integer spikes), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1 (the largest integer spike D)")
    return value


def check_alpha_value(value: float, name: str = "alpha") -> float:
    """``value`` if it is a finite number > 0 (the ternary spike amplitude), else ``ValueError``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        raise ValueError(f"{name}={value!r} must be a finite number > 0 (the ternary spike amplitude α)")
    return float(value)


def integer_spike(eta: Tensor, threshold: float, max_spike: int) -> Tensor:
    """``clip(⌊η/θ + 1/2⌋, 0, D)`` with the straight-through gradient of ``clip(η/θ, 0, D)``.

    Example:
        >>> eta = torch.tensor([-0.4, 0.49, 0.5, 1.5, 7.0], requires_grad=True)
        >>> s = integer_spike(eta, 1.0, 3); s.tolist()
        [0.0, 0.0, 1.0, 2.0, 3.0]
        >>> s.sum().backward(); eta.grad.tolist()
        [0.0, 1.0, 1.0, 1.0, 0.0]
    """
    relaxed = (eta / threshold).clamp(0.0, float(max_spike))  # differentiable part
    levels = torch.floor(eta.detach() / threshold + 0.5).clamp_(0.0, float(max_spike))
    return relaxed + (levels - relaxed.detach())


def expand_spikes(spikes: Tensor, max_spike: int) -> Tensor:
    """Integer spikes ``[T, ...]`` (0..D) as binary spikes on D virtual steps ``[T * D, ...]``.

    Virtual step ``d`` (0-based) of real step ``t`` carries a spike where ``S_t > d``, so the D
    virtual steps of a step sum to ``S_t``.

    Example:
        >>> expand_spikes(torch.tensor([[2.0], [0.0]]), 3).flatten().tolist()
        [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    d = torch.arange(max_spike, device=spikes.device, dtype=spikes.dtype)  # [D]
    d = d.view(1, max_spike, *([1] * (spikes.dim() - 1)))
    binary = (spikes.unsqueeze(1) > d).to(spikes.dtype)  # [T, D, ...]
    return binary.flatten(0, 1)


class ILIF(_LIFBase):
    """Integer LIF: emits ``clip(round(η/θ), 0, D)`` per step (see the module docstring).

    ``max_spike`` is D (>= 1). ``firing_rule`` does not apply (spikes are rounded, not compared)
    and fixed-point membranes are not supported. ``virtual_steps`` (= D) tells the energy engine
    how many binary steps one step of this neuron runs at inference.

    Example:
        >>> n = ILIF(tau=2.0, max_spike=2, reset="soft")
        >>> x = torch.tensor([[2.4], [2.4], [10.0]])
        >>> n(x).flatten().tolist()  # η = 1.2 -> 1 (u = 0.2); η = 1.3 -> 1 (u = 0.3); η = 5.15 -> 2
        [1.0, 1.0, 2.0]
        >>> n.reset_state()
        >>> expand_spikes(n(x), 2).flatten().tolist() == (n.reset_state() or n.forward_virtual(x)).flatten().tolist()
        True
    """

    def __init__(self, tau: float = 2.0, *args, max_spike: int = 4, **kwargs) -> None:
        super().__init__(tau, *args, **kwargs)
        self.max_spike = check_max_spike(max_spike)
        if self.membrane_bits is not None:
            raise ValueError(f"membrane_bits={self.membrane_bits!r} is not supported by integer spikes (ILIF); "
                             "allowed: None (float membranes)")

    @property
    def virtual_steps(self) -> int:
        """Binary time steps one step expands into at inference (D)."""
        return self.max_spike

    def _charge(self, u: Tensor, x_t: Tensor) -> Tensor:
        k = 1.0 - 1.0 / self.tau
        c = 1.0 / self.tau if self.decay_input else 1.0
        return k * u + c * x_t  # η_t = H_t - V_r  [...]

    def _reset_u(self, eta: Tensor, s: Tensor) -> Tensor:
        s_r = s.detach() if self.detach_reset else s
        if self.reset == "soft":
            return eta - self.threshold * s_r
        return eta * (s.detach() == 0).to(eta.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Integer spikes [T, ...] (0..D) for input current ``x`` [T, ...]."""
        self._check_input(x)
        x = self._scale_input(x)  # threshold balancing (no-op when off)
        u = self._state_like("v", x) - self.v_reset  # [...]
        spikes, etas = [], []
        for t in range(x.shape[0]):
            eta = self._charge(u, x[t])
            s = integer_spike(eta, self.threshold, self.max_spike)
            u = self._reset_u(eta, s)
            spikes.append(s)
            etas.append(eta)
        self.v = u + self.v_reset
        if self.record:
            self.last_v = (torch.stack(etas) + self.v_reset).detach() if etas else x.detach().clone()
        return torch.stack(spikes) if spikes else x.clone()

    @torch.no_grad()
    def forward_virtual(self, x: Tensor) -> Tensor:
        """The inference run: binary spikes on D virtual steps per step, ``[T * D, ...]``.

        Per step the membrane ``m`` starts at ``η_t``; on each virtual step the neuron fires on
        ``m >= θ/2`` and subtracts θ (no leak, no input within a step); then the step's reset
        applies (soft: ``u_t = m``; hard: ``u_t = 0`` if it fired). Sums over each step's D
        virtual steps equal :meth:`forward`'s integer spikes (a test checks it).
        """
        self._check_input(x)
        x = self._scale_input(x)  # threshold balancing (no-op when off)
        u = self._state_like("v", x) - self.v_reset  # [...]
        out = []
        for t in range(x.shape[0]):
            eta = self._charge(u, x[t])
            m, fired = eta.clone(), torch.zeros_like(eta)
            for _ in range(self.max_spike):
                s = (m >= self.threshold / 2).to(x.dtype)  # binary virtual spike
                m = m - self.threshold * s
                fired = fired + s
                out.append(s)
            u = m if self.reset == "soft" else eta * (fired == 0).to(eta.dtype)
        self.v = u + self.v_reset
        return torch.stack(out) if out else x.clone()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", max_spike={self.max_spike}"


def softplus_inverse(alpha: float) -> float:
    """``ρ`` with ``softplus(ρ) = log(1 + e^ρ) = alpha`` (alpha > 0).

    Example:
        >>> round(float(nn.functional.softplus(torch.tensor(softplus_inverse(0.7)))), 6)
        0.7
    """
    return math.log(math.expm1(alpha)) if alpha < 20.0 else alpha + math.log1p(-math.exp(-alpha))


class TernaryLIF(_LIFBase):
    """LIF with ternary spikes ``{-α, 0, α}``: fires +α on ``η >= θ`` (or ``>``), -α on ``-η`` past θ.

    ``alpha_init`` is the initial (``learn_alpha=True``) or fixed amplitude; it must be > 0. A
    learned α is ``softplus(spike_alpha_raw)``, an ``nn.Parameter`` trained with the model, so it
    stays > 0 whatever the optimizer does (module docstring); a fixed α is the buffer
    ``spike_alpha``. :attr:`alpha_value` is α either way. ``signed_spikes = True`` tells the energy
    engine and the firing-rate meter that an event is a non-zero entry, whatever its sign and size.

    Example:
        >>> n = TernaryLIF(tau=2.0, alpha_init=1.0, learn_alpha=True)
        >>> s = n(torch.tensor([[4.0], [-4.0]])); s.flatten().tolist()  # η = 2 -> +1; η = -2 -> -1
        [1.0, -1.0]
        >>> s.sum().backward(); n.spike_alpha_raw.grad.item()  # ∂(α·1 + α·(-1))/∂ρ
        0.0
    """

    signed_spikes = True

    def __init__(self, tau: float = 2.0, *args, alpha_init: float = 1.0, learn_alpha: bool = True,
                 **kwargs) -> None:
        super().__init__(tau, *args, **kwargs)
        alpha = check_alpha_value(alpha_init, "alpha_init")
        self.learn_alpha = bool(learn_alpha)
        if self.learn_alpha:
            self.spike_alpha_raw = nn.Parameter(torch.tensor(softplus_inverse(alpha)))  # ρ, α = softplus(ρ)
        else:
            self.register_buffer("spike_alpha", torch.tensor(alpha))
        self._register_load_state_dict_pre_hook(self._convert_alpha)

    @property
    def alpha_value(self) -> Tensor:
        """The spike amplitude α > 0 (a scalar tensor; ``softplus(spike_alpha_raw)`` when learned,
        with its gradient)."""
        if self.learn_alpha:
            return nn.functional.softplus(self.spike_alpha_raw)
        return self.spike_alpha

    def _convert_alpha(self, state_dict: dict, prefix: str, *args) -> None:
        """Load a state dict that stores α the other way: ``spike_alpha`` (a fixed α, or a learned α
        saved before α was parametrised) into a learned neuron, ``spike_alpha_raw`` into a fixed one."""
        old, raw = prefix + "spike_alpha", prefix + "spike_alpha_raw"
        if self.learn_alpha and old in state_dict and raw not in state_dict:
            value = state_dict.pop(old)
            alpha = float(value)
            if not (math.isfinite(alpha) and alpha > 0):
                raise ValueError(f"{old}={alpha:.6g} in the state dict must be a finite number > 0 "
                                 "(the ternary spike amplitude α)")
            state_dict[raw] = torch.tensor(softplus_inverse(alpha), dtype=value.dtype)
        elif not self.learn_alpha and raw in state_dict and old not in state_dict:
            state_dict[old] = nn.functional.softplus(state_dict.pop(raw))

    def forward(self, x: Tensor) -> Tensor:
        """Ternary spikes [T, ...] in {-α, 0, α} for input current ``x`` [T, ...]."""
        self._check_input(x)
        x = self._scale_input(x)  # threshold balancing (no-op when off)
        u = self._state_like("v", x) - self.v_reset  # [...]
        k = 1.0 - 1.0 / self.tau
        c = 1.0 / self.tau if self.decay_input else 1.0
        rule = self.firing_rule
        alpha = self.alpha_value.to(x.dtype)  # α > 0, a scalar
        spikes, etas = [], []
        for t in range(x.shape[0]):
            eta = k * u + c * x[t]  # [...]
            sign = (spike(eta - self.threshold, self.surrogate, self.alpha, rule)
                    - spike(-eta - self.threshold, self.surrogate, self.alpha, rule))  # {-1, 0, 1}
            sign_r = sign.detach() if self.detach_reset else sign
            if self.reset == "soft":
                u = eta - self.threshold * sign_r
            else:
                u = eta * (1.0 - sign_r.abs())
            if self.membrane_bits is not None:
                u = u + (quantize_membrane_(u.detach().clone(), self._params()) - u.detach())
            spikes.append(sign * alpha)
            etas.append(eta)
        self.v = u + self.v_reset
        if self.record:
            self.last_v = (torch.stack(etas) + self.v_reset).detach() if etas else x.detach().clone()
        return torch.stack(spikes) if spikes else x.clone()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", spike_alpha={self.alpha_value.item():g}, learn_alpha={self.learn_alpha}"
