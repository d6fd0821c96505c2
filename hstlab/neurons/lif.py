"""Multi-step LIF, PLIF (learnable time constant) and ALIF (adaptive threshold) neurons.

All run a whole [T, ...] sequence in one fused autograd node (:mod:`hstlab.neurons.kernels`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hstlab.config import ALLOWED_MEMBRANE_BITS, FIRING_RULES, RESETS
from hstlab.neurons.base import SpikingNeuron
from hstlab.neurons.kernels import ALIFMultiStep, ALIFParams, LIFMultiStep, LIFParams
from hstlab.neurons.surrogate import check_alpha, get_surrogate

MEMBRANE_BITS = tuple(b for b in ALLOWED_MEMBRANE_BITS if b < 32)  # fixed-point widths (None: float)


def _check_tau(name: str, tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 1.0:
        raise ValueError(f"{name}={tau!r} must be a finite number > 1 (the charge divides by it)")
    return float(tau)


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} must be a finite number {bound}")
    return float(value)


class _LIFBase(SpikingNeuron):
    """Shared constructor checks and the [T, ...] plumbing of LIF-style neurons."""

    def __init__(
        self,
        tau: float = 2.0,
        threshold: float = 1.0,
        reset: str = "hard",
        surrogate: str = "atan",
        alpha: float = 2.0,
        detach_reset: bool = True,
        decay_input: bool = True,
        v_reset: float = 0.0,
        membrane_bits: int | None = None,
        firing_rule: str = ">",
    ) -> None:
        super().__init__(threshold=_check_positive("threshold", threshold))
        if firing_rule not in FIRING_RULES:
            raise ValueError(f"firing_rule={firing_rule!r} is not allowed; allowed: {', '.join(FIRING_RULES)}")
        self.firing_rule = firing_rule
        self.tau = _check_tau("tau", tau)
        if reset not in RESETS:
            raise ValueError(f"reset={reset!r} is not allowed; allowed: {', '.join(RESETS)}")
        if isinstance(v_reset, bool) or not isinstance(v_reset, (int, float)) or not math.isfinite(v_reset):
            raise ValueError(f"v_reset={v_reset!r} must be a finite number")
        if v_reset >= threshold:
            raise ValueError(f"v_reset={v_reset!r} must be below threshold={threshold!r}")
        self.reset = reset
        self.surrogate = get_surrogate(surrogate).name
        self.alpha = check_alpha(alpha)
        self.detach_reset = bool(detach_reset)
        self.decay_input = bool(decay_input)
        self.v_reset = float(v_reset)
        if membrane_bits is not None and (isinstance(membrane_bits, bool) or membrane_bits not in MEMBRANE_BITS):
            allowed = ", ".join(map(str, MEMBRANE_BITS))
            raise ValueError(f"membrane_bits={membrane_bits!r} is not allowed; allowed: None (float), {allowed}")
        self.membrane_bits = membrane_bits  # read by the energy model: membrane traffic and neuron arithmetic
        self.register_memory("v", self.v_reset)

    def _params(self) -> LIFParams:
        return LIFParams(
            threshold=self.threshold, v_reset=self.v_reset, decay_input=self.decay_input,
            hard=self.reset == "hard", detach_reset=self.detach_reset,
            surrogate=get_surrogate(self.surrogate), alpha=self.alpha, membrane_bits=self.membrane_bits,
            fire_at_threshold=self.firing_rule == ">=",
        )

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, threshold={self.threshold}, reset={self.reset!r}, "
            f"surrogate={self.surrogate!r}, alpha={self.alpha}, detach_reset={self.detach_reset}, "
            f"decay_input={self.decay_input}, v_reset={self.v_reset}"
            + (f", membrane_bits={self.membrane_bits}" if self.membrane_bits is not None else "")
            + (f", firing_rule={self.firing_rule!r}" if self.firing_rule != ">" else "")
        )


class LIF(_LIFBase):
    """Leaky integrate-and-fire neuron, multi-step: ``[T, ...] -> spikes [T, ...]``.

    ``H_t = V_{t-1} + (X_t - (V_{t-1} - V_reset)) / tau`` (``decay_input=False``:
    ``H_t = V_{t-1} - (V_{t-1} - V_reset) / tau + X_t``), ``S_t = Θ(H_t - threshold)``, then a
    hard (``V_t = V_reset`` where it fired) or soft (``V_t = H_t - threshold S_t``) reset.
    ``firing_rule`` decides a tie: ``">"`` fires on ``H_t > threshold`` (snnTorch's rule),
    ``">="`` on ``H_t >= threshold`` (SpikingJelly's, which every released Spikformer and SDT
    model was trained with). Only the comparison changes; the surrogate gradient is the same.
    ``membrane_bits`` b stores ``V_t`` in b-bit fixed point (step ``(threshold - V_reset) / 2**(b-3)``,
    saturating at ±4x that span; straight-through gradients).

    Example:
        >>> lif = LIF(tau=2.0)
        >>> lif(torch.full((3, 1), 1.5)).flatten().tolist()  # H = 0.75, 1.125 -> fire, 0.75
        [0.0, 1.0, 0.0]
        >>> ties = torch.tensor([[2.0], [1.2]])  # H = 1.0 (the threshold), then 1.1 (kept) or 0.6 (reset)
        >>> LIF(tau=2.0)(ties).flatten().tolist(), LIF(tau=2.0, firing_rule=">=")(ties).flatten().tolist()
        ([0.0, 1.0], [1.0, 0.0])
    """

    def forward(self, x: Tensor) -> Tensor:
        """Spikes [T, ...] for input current ``x`` [T, ...]."""
        self._check_input(x)
        x = self._scale_input(x)  # threshold balancing (no-op when off)
        v0 = self._state_like("v", x)  # [...]
        spikes, v, h = LIFMultiStep.apply(x, v0, None, 1.0 / self.tau, self._params())
        self.v = v
        if self.record:
            self.last_v = h.detach().clone()  # [T, ...]
        return spikes


class PLIF(_LIFBase):
    """Parametric LIF: learnable ``1/tau = sigmoid(w)``, ``w_0 = -ln(tau - 1)``.

    ``channels=None`` learns one time constant for the layer; ``channels=C`` learns one per
    channel of the input's last dimension.

    Example:
        >>> plif = PLIF(tau=2.0, channels=4)
        >>> plif(torch.rand(3, 2, 4)).shape, plif.w.shape
        (torch.Size([3, 2, 4]), torch.Size([4]))
    """

    def __init__(self, tau: float = 2.0, *args, channels: int | None = None, **kwargs) -> None:
        super().__init__(tau, *args, **kwargs)
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ValueError(f"channels={channels!r} must be None (one tau per layer) or an integer >= 1")
        self.channels = channels
        self.w = nn.Parameter(torch.full((channels or 1,), -math.log(self.tau - 1.0)))

    @property
    def tau_learned(self) -> Tensor:
        """Current time constant(s) ``1 / sigmoid(w)``, detached.  # [1] or [C]"""
        return 1.0 / torch.sigmoid(self.w.detach())

    def forward(self, x: Tensor) -> Tensor:
        """Spikes [T, ..., C] for input current ``x`` [T, ..., C]."""
        self._check_input(x)
        x = self._scale_input(x)  # threshold balancing (no-op when off)
        if self.channels is not None and (x.dim() < 2 or x.shape[-1] != self.channels):
            raise ValueError(f"x.shape={tuple(x.shape)}: last dimension must be channels={self.channels}")
        v0 = self._state_like("v", x)  # [...]
        r = torch.sigmoid(self.w).to(x.dtype)  # 1/tau  [1] or [C]
        spikes, v, h = LIFMultiStep.apply(x, v0, r, 0.0, self._params())
        self.v = v
        if self.record:
            self.last_v = h.detach().clone()
        return spikes

    def extra_repr(self) -> str:
        return super().extra_repr() + f", channels={self.channels}"


class ALIF(_LIFBase):
    """LIF with an adaptive threshold ``θ_t = threshold + a_{t-1}``.

    ``a`` jumps by ``beta_a`` after each spike and relaxes with its own time constant:
    ``a_t = (1 - 1/tau_a) a_{t-1} + beta_a S_t``. With ``record`` it also stores
    ``last_threshold`` (θ_t for every step, detached, [T, ...]).

    Example:
        >>> alif = ALIF(tau=2.0, beta_a=0.5, tau_a=10.0)
        >>> alif.record = True
        >>> _ = alif(torch.full((3, 1), 3.0))
        >>> alif.last_threshold.flatten().tolist()  # spike at t=0: +0.5, then decays by 0.9
        [1.0, 1.5, 1.4500000476837158]
    """

    def __init__(self, tau: float = 2.0, *args, beta_a: float = 0.2, tau_a: float = 20.0, **kwargs) -> None:
        super().__init__(tau, *args, **kwargs)
        self.beta_a = _check_positive("beta_a", beta_a, allow_zero=True)
        self.tau_a = _check_tau("tau_a", tau_a)
        self.register_memory("a", 0.0)
        self.last_threshold: Tensor | None = None

    def reset_state(self) -> None:
        super().reset_state()
        self.last_threshold = None

    def forward(self, x: Tensor) -> Tensor:
        """Spikes [T, ...] for input current ``x`` [T, ...]."""
        self._check_input(x)
        x = self._scale_input(x)  # threshold balancing (no-op when off)
        v0, a0 = self._state_like("v", x), self._state_like("a", x)  # [...]
        q = ALIFParams(lif=self._params(), beta_a=self.beta_a, rho=1.0 - 1.0 / self.tau_a,
                       keep_threshold=self.record)  # θ [T, ...] is written only when recorded
        spikes, v, a, h, theta = ALIFMultiStep.apply(x, v0, a0, 1.0 / self.tau, q)
        self.v, self.a = v, a
        if self.record:
            self.last_v, self.last_threshold = h.detach().clone(), theta.detach().clone()
        return spikes

    def extra_repr(self) -> str:
        return super().extra_repr() + f", beta_a={self.beta_a}, tau_a={self.tau_a}"
