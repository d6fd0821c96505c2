"""Fused multi-step LIF / ALIF kernels: one autograd node for all T steps.

Each ``torch.autograd.Function`` loops over time inside ``forward`` and again (in reverse)
inside ``backward``, so a [T, ...] sequence costs one graph node instead of ~5 per step.
Per step the LIF forward runs three ops writing into preallocated outputs (charge, fire,
reset) and the backward one in-place ``addcmul_``; everything that does not depend on the
recursion (input scaling, surrogate values, dV/dH) runs once on the whole [T, ...] tensor.
LIF, PLIF and ALIF on float32 tensors can instead run compiled loops, chosen by
:func:`set_backend`: :mod:`hstlab.neurons._compiled` (numba) on the CPU for all three and
:mod:`hstlab.neurons._gpu` (Triton) on CUDA for fixed-tau LIF, one pass over memory per
direction and no per-step dispatch; every path gives the same spikes and, to float32 rounding,
the same gradients.

Maths (``V_r`` reset potential, ``r = 1/τ``, ``k = 1 - r``, ``c = r`` if decay_input else 1):
    charge   H_t = V_{t-1} + r (X_t - (V_{t-1} - V_r))   |  H_t = V_{t-1} - r (V_{t-1} - V_r) + X_t
    fire     S_t = Θ(H_t - θ)         (fires on H_t > θ, or on H_t >= θ with fire_at_threshold)
    reset    V_t = H_t (1 - S_t) + V_r S_t  (hard)       |  V_t = H_t - θ S_t  (soft)
The loops run on potentials relative to ``V_r`` (``u = V - V_r``, ``η = H - V_r``) where the
charge is simply ``η_t = k u_{t-1} + c X_t`` and the hard reset ``u_t = η_t (1 - S_t)``.
Backward (``g`` = surrogate derivative at ``H_t - θ``):
    dV_t/dH_t = 1 - S_t [- (H_t - V_r) g]   (hard)    |  1 [- θ g]   (soft); [..] only without detach
    ∂L/∂H_t = ∂L/∂S_t g + ∂L/∂V_t dV_t/dH_t,  ∂L/∂V_{t-1} = k ∂L/∂H_t,  ∂L/∂X_t = c ∂L/∂H_t
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor

from hstlab.neurons import _compiled, _gpu
from hstlab.neurons.surrogate import Surrogate

BACKENDS = ("auto", "torch", "compiled")
_backend = os.environ.get("HSTLAB_NEURON_BACKEND", "auto")
if _backend not in BACKENDS:
    raise ValueError(f"HSTLAB_NEURON_BACKEND={_backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")


def set_backend(name: str) -> str:
    """Choose the LIF loops: "auto", "torch" or "compiled"; returns the previous setting.

    The compiled loops apply to float32 tensors: LIF, PLIF and ALIF with numba on the CPU,
    fixed-tau LIF with Triton on CUDA (when installed); everything else (PLIF and ALIF on CUDA,
    float64, half precision, double backward) always runs the torch loops. "auto" takes the compiled loops for CUDA inputs and
    for CPU inputs of at least ``_compiled.MIN_NUMEL`` elements (smaller ones do not pay numba's
    import and first-compile time). The env var HSTLAB_NEURON_BACKEND sets the initial value.
    """
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend={name!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if name == "compiled" and not _compiled.AVAILABLE:
        raise ValueError("backend='compiled' needs numba, which is not importable; allowed: auto, torch")
    previous, _backend = _backend, name
    return previous


def _use_compiled(x: Tensor, r: Tensor | None, p: LIFParams) -> bool:
    """Whether this call runs compiled loops; learnable tau (``r``) and ALIF only on the CPU."""
    if _backend == "torch" or p.surrogate.name not in _compiled.CODES:
        return False
    if x.is_cuda:
        return r is None and _gpu.usable(x)
    if r is not None and r.dtype != x.dtype:
        return False
    return _compiled.usable(x) and (_backend == "compiled" or x.numel() >= _compiled.MIN_NUMEL)


def _loops(x: Tensor) -> ModuleType:
    """The compiled loops for ``x``'s device: Triton on CUDA, numba on the CPU."""
    return _gpu if x.is_cuda else _compiled


@dataclass(frozen=True)
class LIFParams:
    """Constants of one fused LIF call (stored on the autograd context)."""

    threshold: float
    v_reset: float
    decay_input: bool
    hard: bool
    detach_reset: bool
    surrogate: Surrogate
    alpha: float
    membrane_bits: int | None = None  # fixed-point membranes (see quantize_membrane_); None: float
    fire_at_threshold: bool = False  # firing rule: H >= θ (True, SpikingJelly) or H > θ (False, snnTorch)


def fire(h: Tensor, theta: float | Tensor, p: LIFParams, out: Tensor | None = None) -> Tensor:
    """Spikes of membrane ``h`` against ``theta`` under ``p``'s firing rule (``>=`` or ``>``).

    Example:
        >>> p = LIFParams(1.0, 0.0, True, True, True, None, 2.0, fire_at_threshold=True)
        >>> fire(torch.tensor([0.5, 1.0, 1.5]), 1.0, p).tolist()
        [False, True, True]
    """
    compare = torch.ge if p.fire_at_threshold else torch.gt
    return compare(h, theta) if out is None else compare(h, theta, out=out)


def dense_time_major_order(x: Tensor) -> tuple[int, ...] | None:
    """A permutation ``order`` (time axis kept first) with ``x.permute(order)`` contiguous, or None.

    None when ``x`` is already contiguous or its memory is not a dense permutation. A
    channels-last conv feature ``[T, B, C, H, W]`` gives ``(0, 1, 3, 4, 2)``: the kernels run on
    that view (no copy) and hand back outputs and gradients in the caller's layout.

    Example:
        >>> x = torch.rand(2, 3, 4, 5, 6).permute(0, 1, 4, 2, 3)  # [T, B, C, H, W], C innermost
        >>> dense_time_major_order(x)
        (0, 1, 3, 4, 2)
    """
    if x.is_contiguous() or x.dim() < 3:
        return None
    order = (0, *sorted(range(1, x.dim()), key=lambda d: (-x.stride(d), d)))
    return order if x.permute(order).is_contiguous() else None


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(range(len(order)), key=order.__getitem__))


def _step_order(order: tuple[int, ...]) -> tuple[int, ...]:
    """``order`` for one step's tensor (the time axis removed)."""
    return tuple(d - 1 for d in order[1:])


def quantize_membrane_(u: Tensor, p: LIFParams) -> Tensor:
    """Round ``u = V - V_r`` in place to ``p.membrane_bits``-bit fixed point (no-op when None).

    Two's-complement levels ``-2**(b-1) .. 2**(b-1) - 1`` of step ``θ_r / 2**(b-3)`` with
    ``θ_r = threshold - V_r``: the stored membrane spans ``[-4 θ_r, 4 θ_r)`` and saturates
    outside (as neuromorphic cores do). Gradients pass straight through.

    Example:
        >>> p = LIFParams(1.0, 0.0, True, True, True, None, 2.0, membrane_bits=4)  # step 0.5
        >>> quantize_membrane_(torch.tensor([0.3, -0.8, 9.0]), p).tolist()
        [0.5, -1.0, 3.5]
    """
    if p.membrane_bits is None:
        return u
    step, levels = membrane_grid(p)
    return u.div_(step).round_().clamp_(-levels, levels - 1).mul_(step)


def membrane_grid(p: LIFParams) -> tuple[float, int]:
    """(step, levels) of the fixed-point membrane: values ``step * [-levels, levels - 1]``; (0, 0) for float."""
    if p.membrane_bits is None:
        return 0.0, 0
    return (p.threshold - p.v_reset) / 2 ** (p.membrane_bits - 3), 2 ** (p.membrane_bits - 1)


def _reset(eta: Tensor, s: Tensor, p: LIFParams, out: Tensor | None = None) -> Tensor:
    """u = V - V_r after the reset, from η = H - V_r and the spikes S (same shapes)."""
    if p.hard:
        return torch.addcmul(eta, s, eta, value=-1.0, out=out)  # η (1 - S)
    return torch.add(eta, s, alpha=-p.threshold, out=out)  # η - θ S


class LIFMultiStep(torch.autograd.Function):
    """Multi-step LIF/PLIF as one autograd node.

    Inputs: ``x`` [T, ...], ``v0`` [...] (state V before step 0), ``r`` (``1/τ`` as a tensor of
    shape [1] or [C] broadcast on the last dim, for PLIF; ``None`` to use the float ``tau_inv``).
    Outputs: spikes [T, ...], last state V [...], membrane H [T, ...] (not differentiable).
    """

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, r: Tensor | None, tau_inv: float, p: LIFParams):
        # A dense non-contiguous x (channels-last conv features) runs as its contiguous permuted
        # view; a per-channel r broadcasts on the logical last dim, so it keeps the copy.
        ctx.order = dense_time_major_order(x) if r is None or r.numel() == 1 else None
        if ctx.order is not None:
            x, v0 = x.permute(ctx.order), v0.permute(_step_order(ctx.order))
        x = x.contiguous()
        theta = p.threshold - p.v_reset  # firing threshold on η
        ctx.p, ctx.tau_inv = p, tau_inv
        ctx.compiled = _use_compiled(x, r, p)
        if ctx.compiled and r is not None:  # learnable tau: per-channel k = 1 - r, c = r (or 1)
            rd = r.detach()
            u0 = (v0 - p.v_reset if p.v_reset != 0.0 else v0).contiguous()
            spikes, eta, u = _compiled.plif_forward(
                x, u0, 1.0 - rd, rd if p.decay_input else torch.ones_like(rd), theta, p.threshold, p.hard,
                *membrane_grid(p), p.fire_at_threshold)
            return LIFMultiStep._finish(ctx, x, v0, r, p, spikes, eta, u)
        if ctx.compiled:
            c0 = tau_inv if p.decay_input else 1.0
            u0 = (v0 - p.v_reset if p.v_reset != 0.0 else v0).contiguous()
            spikes, eta, u = _loops(x).lif_forward(x, u0, 1.0 - tau_inv, c0, theta, p.threshold, p.hard,
                                                   *membrane_grid(p), p.fire_at_threshold)
            return LIFMultiStep._finish(ctx, x, v0, r, p, spikes, eta, u)
        if r is None:
            k: float | Tensor = 1.0 - tau_inv
            c: float | Tensor = tau_inv if p.decay_input else 1.0
        else:
            k, c = 1.0 - r, (r if p.decay_input else 1.0)
        cx = x * c if not (isinstance(c, float) and c == 1.0) else x  # [T, ...]
        eta = torch.empty_like(x)  # η_t = H_t - V_r                                 # [T, ...]
        spikes = torch.empty_like(x)  # [T, ...]
        u = v0 - p.v_reset if p.v_reset != 0.0 else v0  # [...]
        u_buf = torch.empty_like(x[0]) if x.shape[0] > 0 else u  # [...]
        for t in range(x.shape[0]):
            if isinstance(k, float):
                torch.add(cx[t], u, alpha=k, out=eta[t])
            else:
                torch.addcmul(cx[t], u, k, out=eta[t])
            fire(eta[t], theta, p, out=spikes[t])
            u = quantize_membrane_(_reset(eta[t], spikes[t], p, out=u_buf), p)
        return LIFMultiStep._finish(ctx, x, v0, r, p, spikes, eta, u.clone())

    @staticmethod
    def _finish(ctx, x, v0, r, p: LIFParams, spikes: Tensor, eta: Tensor, u: Tensor):
        v_last = u.add_(p.v_reset) if p.v_reset != 0.0 else u
        h = eta + p.v_reset if p.v_reset != 0.0 else eta
        ctx.save_for_backward(eta, spikes, v0, r, x if r is not None and p.decay_input else None)
        ctx.mark_non_differentiable(h)
        ctx.set_materialize_grads(False)  # unused outputs get None, not a zero-filled [T, ...]
        if ctx.order is not None:  # back to the caller's axes (same memory)
            back = _inverse(ctx.order)
            return spikes.permute(back), v_last.permute(_step_order(back)), h.permute(back)
        return spikes, v_last, h

    @staticmethod
    def backward(ctx, g_spikes: Tensor | None, g_vlast: Tensor | None, _g_h: Tensor | None):
        if ctx.order is None:
            return LIFMultiStep._backward(ctx, g_spikes, g_vlast)
        order, back = ctx.order, _inverse(ctx.order)
        g_x, g_v0, g_r, _, _ = LIFMultiStep._backward(
            ctx, None if g_spikes is None else g_spikes.permute(order),
            None if g_vlast is None else g_vlast.permute(_step_order(order)))
        return (g_x.permute(back), None if g_v0 is None else g_v0.permute(_step_order(back)), g_r, None, None)

    @staticmethod
    def _backward(ctx, g_spikes: Tensor | None, g_vlast: Tensor | None):
        """Gradients on the (possibly permuted) axes the forward ran on."""
        eta, spikes, v0, r, x = ctx.saved_tensors
        p: LIFParams = ctx.p
        theta = p.threshold - p.v_reset
        if ctx.compiled and r is not None and g_spikes is not None and not torch.is_grad_enabled():
            return LIFMultiStep._plif_backward(ctx, g_spikes, g_vlast)
        if ctx.compiled and g_spikes is not None and not torch.is_grad_enabled():
            c = ctx.tau_inv if p.decay_input else 1.0
            gv = None if g_vlast is None else g_vlast.to(eta.dtype).contiguous()
            g_x, g_v0 = _loops(eta).lif_backward(
                g_spikes.to(eta.dtype).contiguous(), gv, eta, spikes, 1.0 - ctx.tau_inv, c, theta,
                p.threshold, p.hard, p.detach_reset, _compiled.CODES[p.surrogate.name], p.alpha,
                p.fire_at_threshold,
            )
            return g_x, (g_v0 if ctx.needs_input_grad[1] else None), None, None, None
        k: float | Tensor = 1.0 - ctx.tau_inv if r is None else 1.0 - r
        dvdh: Tensor | float | None  # dV_t/dH_t                                      # [T, ...]
        carry: Tensor | float | None  # k dV_t/dH_t: how ∂L/∂H_{t+1} reaches ∂L/∂H_t
        if p.detach_reset:  # dV/dH needs no surrogate: fuse g(H - θ) with ∂L/∂S
            if g_spikes is None:
                g_h = torch.zeros_like(eta)
            else:
                g_h = p.surrogate.grad_mul_(eta - theta, p.alpha, g_spikes)  # ∂L/∂S_t g  [T, ...]
            # hard: k (1 - S_t) is applied per step below (no [T, ...] buffer); soft: k
            dvdh, carry = (None, None) if p.hard else (1.0, k)
        else:
            sg = p.surrogate.grad_(eta - theta, p.alpha)  # g(H_t - θ)                # [T, ...]
            if p.hard:
                dvdh = torch.sub(1.0, spikes).addcmul_(eta, sg, value=-1.0)
            else:
                dvdh = torch.mul(sg, -p.threshold).add_(1.0)
            carry = dvdh * k
            g_h = sg.mul_(g_spikes) if g_spikes is not None else sg.zero_()  # ∂L/∂S_t g
        T = eta.shape[0]
        if g_vlast is not None and T > 0:
            if dvdh is None:
                g_h[T - 1].addcmul_(g_vlast, 1.0 - spikes[T - 1])
            else:
                g_h[T - 1].add_(g_vlast * (dvdh[T - 1] if isinstance(dvdh, Tensor) else dvdh))
        per_step = isinstance(carry, Tensor) and carry.dim() == eta.dim()
        for t in range(T - 2, -1, -1):
            if carry is None and isinstance(k, float):  # hard, detached reset, fixed tau
                g_h[t].add_(g_h[t + 1], alpha=k).addcmul_(g_h[t + 1], spikes[t], value=-k)
            elif carry is None:  # hard, detached reset, learnable tau
                g_h[t].addcmul_(g_h[t + 1], k).addcmul_(g_h[t + 1] * k, spikes[t], value=-1.0)
            elif per_step:
                g_h[t].addcmul_(g_h[t + 1], carry[t])
            elif isinstance(carry, Tensor):
                g_h[t].addcmul_(g_h[t + 1], carry)
            else:
                g_h[t].add_(g_h[t + 1], alpha=carry)
        g_v0 = None
        if ctx.needs_input_grad[1]:
            g_v0 = g_h[0] * k if T > 0 else (g_vlast if g_vlast is not None else torch.zeros_like(v0))
        g_r = None
        if r is not None and ctx.needs_input_grad[2]:
            u_prev = torch.empty_like(eta)  # u_{t-1} = V_{t-1} - V_r                 # [T, ...]
            u_prev[0] = v0 - p.v_reset
            quantize_membrane_(_reset(eta[:-1], spikes[:-1], p, out=u_prev[1:]), p)
            dh_dr = torch.sub(x, u_prev) if p.decay_input else u_prev.neg_()
            g_r = _sum_to(dh_dr.mul_(g_h), r)
        c = (ctx.tau_inv if r is None else r) if p.decay_input else 1.0
        g_x = g_h if isinstance(c, float) and c == 1.0 else g_h.mul_(c)
        return g_x, g_v0, g_r, None, None


    @staticmethod
    def _plif_backward(ctx, g_spikes: Tensor, g_vlast: Tensor | None):
        """The compiled backward of a learnable-tau run: ∂L/∂X, ∂L/∂V_{-1} and ∂L/∂r in one pass."""
        eta, spikes, v0, r, x = ctx.saved_tensors
        p: LIFParams = ctx.p
        rd = r.detach()
        gv = None if g_vlast is None else g_vlast.to(eta.dtype).contiguous()
        g_x, g_v0, g_r = _compiled.plif_backward(
            g_spikes.to(eta.dtype).contiguous(), gv, eta, x.contiguous() if x is not None else None,
            v0 - p.v_reset if p.v_reset != 0.0 else v0, 1.0 - rd, rd if p.decay_input else torch.ones_like(rd),
            p.threshold - p.v_reset, p.threshold, p.hard, p.detach_reset, _compiled.CODES[p.surrogate.name],
            p.alpha, p.decay_input, *membrane_grid(p), p.fire_at_threshold)
        g_r = _sum_to(g_r, r) if ctx.needs_input_grad[2] else None  # g_r: [...] per neuron -> [1] or [C]
        return g_x, (g_v0 if ctx.needs_input_grad[1] else None), g_r, None, None


def _sum_to(g: Tensor, like: Tensor) -> Tensor:
    """Sum ``g`` [T, ..., C] down to the shape of ``like`` ([1] or [C])."""
    if like.numel() == 1:
        return g.sum().reshape(like.shape)
    return g.reshape(-1, g.shape[-1]).sum(0).reshape(like.shape)


@dataclass(frozen=True)
class ALIFParams:
    """Constants of one fused ALIF call."""

    lif: LIFParams
    beta_a: float  # threshold jump per spike
    rho: float  # adaptation decay per step, 1 - 1/tau_a
    keep_threshold: bool = True  # False: the compiled loops may return an empty θ (not written at all)


class ALIFMultiStep(torch.autograd.Function):
    """Multi-step adaptive-threshold LIF as one autograd node.

    Per step: ``H_t`` as LIF; ``θ_t = θ_0 + a_{t-1}``; ``S_t = Θ(H_t - θ_t)``; reset as LIF with
    ``θ_t``; ``a_t = ρ a_{t-1} + β_a S_t``. With ``detach_reset`` the spikes entering the reset and
    the adaptation carry no gradient. Inputs ``x`` [T, ...], ``v0``, ``a0`` [...]; outputs spikes,
    V_last, a_last, H [T, ...] and θ [T, ...] (the last two not differentiable; θ is [T, 0] when
    the compiled loops ran with ``q.keep_threshold`` False). Float32 CPU inputs may run the
    compiled loops (:func:`set_backend`), one pass over memory per direction; the backward rebuilds
    θ from H and ``a0`` instead of saving it.
    """

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, a0: Tensor, tau_inv: float, q: ALIFParams):
        p = q.lif
        k, c = 1.0 - tau_inv, (tau_inv if p.decay_input else 1.0)
        ctx.compiled = not x.is_cuda and _use_compiled(x, None, p)
        if ctx.compiled:
            spikes, h, theta, v, a = _compiled.alif_forward(
                x.contiguous(), v0, a0, k, c, p.v_reset, p.threshold, q.beta_a, q.rho, p.hard, *membrane_grid(p),
                p.fire_at_threshold, q.keep_threshold)
            ctx.q, ctx.tau_inv = q, tau_inv
            ctx.save_for_backward(h, a0)
            ctx.mark_non_differentiable(h, theta)
            ctx.set_materialize_grads(False)
            return spikes, v, a, h, theta
        cx = (x * c if c != 1.0 else x).contiguous()  # [T, ...]
        h, theta, spikes = torch.empty_like(cx), torch.empty_like(cx), torch.empty_like(cx)
        v, a = v0, a0
        for t in range(x.shape[0]):
            torch.add(cx[t], v - p.v_reset, alpha=k, out=h[t]).add_(p.v_reset)
            torch.add(a, p.threshold, out=theta[t])
            fire(h[t], theta[t], p, out=spikes[t])
            if p.hard:
                v = torch.addcmul(h[t], spikes[t], h[t] - p.v_reset, value=-1.0)
            else:
                v = torch.addcmul(h[t], spikes[t], theta[t], value=-1.0)
            if p.membrane_bits is not None:
                v = quantize_membrane_(v - p.v_reset, p).add_(p.v_reset)
            a = torch.add(a * q.rho, spikes[t], alpha=q.beta_a)
        ctx.q, ctx.tau_inv = q, tau_inv
        ctx.save_for_backward(h, theta, spikes)  # torch loops
        ctx.mark_non_differentiable(h, theta)
        ctx.set_materialize_grads(False)
        return spikes, v.clone(), a.clone(), h, theta

    @staticmethod
    def backward(ctx, g_s, g_vlast, g_alast, _g_h, _g_theta):
        q: ALIFParams = ctx.q
        p = q.lif
        k = 1.0 - ctx.tau_inv
        c = ctx.tau_inv if p.decay_input else 1.0
        if ctx.compiled:
            h, a0 = ctx.saved_tensors
            if torch.is_grad_enabled():  # the torch loops (in-place, out=) have none either
                raise RuntimeError("ALIF has no double backward (create_graph=True)")
            g_x, g_v0, g_a0 = _compiled.alif_backward(
                *(None if g is None else g.to(h.dtype).contiguous() for g in (g_s, g_vlast, g_alast)), h, a0, k, c, p.v_reset, p.threshold, q.beta_a, q.rho,
                p.hard, p.fire_at_threshold, p.detach_reset, _compiled.CODES[p.surrogate.name], p.alpha)
            return (g_x, g_v0 if ctx.needs_input_grad[1] else None, g_a0 if ctx.needs_input_grad[2] else None,
                    None, None)
        h, theta, spikes = ctx.saved_tensors
        z = h - theta
        sg = p.surrogate.grad_(z.clone(), p.alpha)  # [T, ...]
        g_s = torch.zeros_like(h) if g_s is None else g_s
        g_v = torch.zeros_like(h[0]) if g_vlast is None else g_vlast.clone()
        g_a = torch.zeros_like(h[0]) if g_alast is None else g_alast.clone()
        g_x = torch.empty_like(h)
        for t in range(h.shape[0] - 1, -1, -1):
            s_t, h_t = spikes[t], h[t]
            g_spike = g_s[t].clone()  # ∂L/∂S_t through every path S_t takes
            if not p.detach_reset:
                g_spike.add_(g_a, alpha=q.beta_a)
                reset_lever = (h_t - p.v_reset) if p.hard else theta[t]  # ∂V_t/∂S_t = -lever
                g_spike.addcmul_(g_v, reset_lever, value=-1.0)
            g_z = g_spike.mul_(sg[t])  # ∂L/∂(H_t - θ_t)
            keep = (1.0 - s_t) if p.hard else torch.ones_like(s_t)  # ∂V_t/∂H_t (direct)
            g_h = torch.addcmul(g_z, g_v, keep)
            g_theta = g_z.neg()
            if not p.hard:
                g_theta.addcmul_(g_v, s_t, value=-1.0)  # soft reset subtracts θ_t S_t
            g_a = torch.add(g_theta, g_a, alpha=q.rho)  # ∂L/∂a_{t-1}
            torch.mul(g_h, c, out=g_x[t])
            g_v = g_h.mul_(k)  # ∂L/∂V_{t-1}
        return g_x, g_v, g_a, None, None

