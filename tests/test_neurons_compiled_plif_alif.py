"""PLIF and ALIF compiled (numba) loops against the torch loops they replace.

Exactness: on a dyadic grid (tau 2, threshold 1, inputs and loss weights on multiples of 1/4,
the triangle surrogate with alpha 1/2) every float32 operation either path performs is exact, so
rounding order (fused multiply-adds in torch, none in numba) cannot matter and any difference
is a logic error: spikes, H, θ, last state and every gradient must be bit-identical. On random
inputs with every surrogate they agree to float32 rounding.
"""

from __future__ import annotations

import math

import pytest
import torch

from hstlab.neurons import ALIF, LIF, PLIF, _compiled, kernels

pytestmark = pytest.mark.skipif(not _compiled.AVAILABLE, reason="numba not installed")

T, B, C = 6, 3, 70
KINDS = ["plif_layer", "plif_channel", "alif"]


def _neuron(kind: str, opts: dict, channels: int = C):
    if kind == "alif":
        return ALIF(**opts, beta_a=0.25, tau_a=2.0)  # rho = 0.5: short dyadic products
    return PLIF(**opts, channels=channels if kind == "plif_channel" else None)


def _run(kind: str, backend: str, opts: dict, x, v0, a0, w_s, w_v, record: bool = True, w=None):
    """Outputs and gradients (x, v0, a0 or w) of one run, on the given loops; also which compiled
    functions ran. ``w``: PLIF's initial parameter (default: every channel at ``opts["tau"]``)."""
    calls: list[str] = []
    previous = kernels.set_backend(backend)
    originals = {n: getattr(_compiled, n) for n in ("plif_forward", "plif_backward", "alif_forward",
                                                   "alif_backward")}
    try:
        for name, fn in originals.items():
            setattr(_compiled, name, lambda *a, _f=fn, _n=name: calls.append(_n) or _f(*a))
        neuron = _neuron(kind, opts, x.shape[-1])
        neuron.record = record
        if w is not None:
            neuron.w.data.copy_(w)
        xd = x.clone().requires_grad_(True)
        neuron.v = v0.clone().requires_grad_(True)
        leaves = [xd, neuron.v]
        if kind == "alif":
            neuron.a = a0.clone().requires_grad_(True)
            leaves.append(neuron.a)
        else:
            leaves.append(neuron.w)
        spikes = neuron(xd)
        loss = (spikes * w_s).sum() + (neuron.v * w_v).sum()
        if kind == "alif":
            loss = loss + (neuron.a * w_v.flip(-1)).sum()
        grads = torch.autograd.grad(loss, leaves)
        outs = [spikes.detach(), neuron.last_v, neuron.v.detach()]
        if kind == "alif":
            outs += [neuron.a.detach()] + ([neuron.last_threshold] if record else [])
        return outs + list(grads), calls
    finally:
        for name, fn in originals.items():
            setattr(_compiled, name, fn)
        kernels.set_backend(previous)


def _dyadic_case(seed: int, b: int = B, c: int = C):
    """x [4, b, c], v0, a0 [b, c] and loss weights on a coarse dyadic grid: with 4 steps every
    product and sum of the forward and backward fits float32's 24-bit mantissa."""
    g = torch.Generator().manual_seed(seed)
    grid = lambda shape, lo, hi: torch.randint(lo, hi, shape, generator=g).float() / 4  # noqa: E731
    return (grid((4, b, c), -4, 9), grid((b, c), -2, 4), grid((b, c), 0, 3),
            grid((4, b, c), -4, 5), grid((b, c), -4, 5))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reset, detach, decay_input, v_reset, rule, bits", [
    ("hard", True, True, 0.0, ">", None),
    ("hard", True, False, -0.5, ">=", None),
    ("soft", True, False, 0.0, ">=", None),
    ("soft", True, True, 0.25, ">", None),
    ("hard", True, True, 0.0, ">=", 6),
    ("hard", False, False, -0.5, ">=", None),
    ("soft", False, True, 0.25, ">", None),
])
def test_compiled_equals_torch_loops_exactly_on_a_dyadic_grid(kind, reset, detach, decay_input, v_reset,
                                                              rule, bits) -> None:
    """Forward outputs always, and gradients with a detached reset (the default), bit for bit.
    Without detaching, the backward multiplies one surrogate-dependent factor per step, whose
    products outgrow 24 bits after a few steps even on this grid: there they agree to 1e-6."""
    opts = {"tau": 2.0, "reset": reset, "detach_reset": detach, "decay_input": decay_input,
            "v_reset": v_reset, "surrogate": "triangle", "alpha": 0.5, "firing_rule": rule, "membrane_bits": bits}
    case = _dyadic_case(seed=len(kind) + 10 * detach + int(decay_input))
    ref, ref_calls = _run(kind, "torch", opts, *case)
    ours, calls = _run(kind, "compiled", opts, *case)
    prefix = "alif" if kind == "alif" else "plif"
    assert ref_calls == [] and calls == [f"{prefix}_forward", f"{prefix}_backward"]  # each path really ran
    assert 0 < ref[0].mean() < 1  # some neurons fire, some do not
    assert all(r.abs().sum() > 0 for r in ref[-3:])  # every gradient is non-trivial
    n_forward = len(ref) - 3
    for i, (a, b) in enumerate(zip(ref, ours)):
        if detach or i < n_forward:
            assert torch.equal(a, b), f"output {i} differs (max {float((a - b).abs().max()):.3g})"
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid", "fast_sigmoid", "triangle"])
@pytest.mark.parametrize("reset, detach, bits", [("hard", True, None), ("soft", False, 8), ("hard", False, 6)])
def test_compiled_matches_torch_loops_on_random_float32(kind, surrogate, reset, detach, bits) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(T, B, C, generator=g) * 0.8 + 0.6
    case = (x, torch.rand(B, C, generator=g) * 0.5, torch.rand(B, C, generator=g) * 0.3,
            torch.randn(T, B, C, generator=g), torch.randn(B, C, generator=g))
    opts = {"tau": 2.5, "reset": reset, "detach_reset": detach, "surrogate": surrogate, "alpha": 3.0,
            "v_reset": 0.1, "membrane_bits": bits}
    ref, _ = _run(kind, "torch", opts, *case)
    ours, calls = _run(kind, "compiled", opts, *case)
    assert len(calls) == 2
    assert torch.equal(ref[0], ours[0]) and 0 < ref[0].mean() < 1
    for a, b in zip(ref[1:], ours[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", [*KINDS, "lif"])
@pytest.mark.parametrize("reset, detach", [("hard", True), ("soft", True), ("hard", False)])
def test_compiled_equals_torch_loops_across_span_and_chunk_edges(kind, reset, detach) -> None:
    """131,200 neurons: more than one span of _compiled_kernels (2**17 neurons; ALIF's backward
    spans are 2**16 / T), many 1,024-neuron chunks, a ragged last chunk, and per-channel constants
    whose phase changes from chunk to chunk (4,100 channels, 1/tau 1/2 or 1/4 at random, both
    exact, so a channel given its neighbour's tau changes the result). Detached: bit for bit, but
    the tau gradient (a sum over 131,200 neurons, in another order) to float32 rounding."""
    from hstlab.neurons import _compiled_kernels as ck

    b, c = 32, 4100
    assert b * c > ck._SPAN and (b * c) % ck._CHUNK and c % ck._CHUNK
    opts = {"tau": 2.0, "reset": reset, "detach_reset": detach, "surrogate": "triangle", "alpha": 0.5,
            "firing_rule": ">="}
    case = _dyadic_case(seed=7, b=b, c=c)
    if kind == "lif":
        results = []
        for backend in ("torch", "compiled"):
            previous = kernels.set_backend(backend)
            try:
                x = case[0].clone().requires_grad_(True)
                spikes = LIF(**opts)(x)
                (gx,) = torch.autograd.grad((spikes * case[3]).sum(), x)
                results.append([spikes.detach(), gx])
            finally:
                kernels.set_backend(previous)
        ref, ours = results
    else:
        w = None
        if kind == "plif_channel":  # sigmoid(0) = 1/2, sigmoid(float32(ln 1/3)) = 1/4 exactly
            mask = torch.rand(c, generator=torch.Generator().manual_seed(3)) < 0.5  # no period
            w = torch.where(mask, 0.0, math.log(1 / 3))
            assert set(torch.sigmoid(w).tolist()) == {0.5, 0.25}
        ref, _ = _run(kind, "torch", opts, *case, w=w)
        ours, calls = _run(kind, "compiled", opts, *case, w=w)
        assert len(calls) == 2
    assert 0 < ref[0].mean() < 1
    for i, (a, b_) in enumerate(zip(ref, ours)):
        if detach and not (kind.startswith("plif") and i == len(ref) - 1):
            assert torch.equal(a, b_), f"output {i} differs (max {float((a - b_).abs().max()):.3g})"
        else:
            torch.testing.assert_close(a, b_, rtol=1e-6, atol=1e-6)


def test_alif_without_record_skips_theta_and_keeps_results() -> None:
    case = _dyadic_case(seed=3)
    opts = {"tau": 2.0, "surrogate": "triangle", "alpha": 0.5}
    kept, _ = _run("alif", "compiled", opts, *case, record=True)
    skipped, calls = _run("alif", "compiled", opts, *case, record=False)
    assert calls == ["alif_forward", "alif_backward"]
    del kept[4], kept[1]  # last_threshold and last_v, recorded only in the first run
    del skipped[1]
    assert all(torch.equal(a, b) for a, b in zip(kept, skipped))


def test_alif_compiled_backward_refuses_a_double_backward() -> None:
    previous = kernels.set_backend("compiled")
    try:
        x = torch.rand(4, 2, C, requires_grad=True)
        (g,) = torch.autograd.grad(ALIF()(x).sum(), x)  # a first gradient works
        assert g.shape == x.shape
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.grad(ALIF()(x).sum(), x, create_graph=True)
    finally:
        kernels.set_backend(previous)


def test_auto_backend_takes_compiled_loops_only_for_large_float32_cpu_inputs() -> None:
    calls: list[str] = []
    original = _compiled.alif_forward
    _compiled.alif_forward = lambda *a: calls.append("alif_forward") or original(*a)
    previous = kernels.set_backend("auto")
    try:
        ALIF()(torch.rand(2, 4, 8))  # tiny: torch loops
        ALIF()(torch.rand(2, 4, 8, dtype=torch.float64))
        assert calls == []
        ALIF()(torch.rand(2, 8, _compiled.MIN_NUMEL // 16))  # at the threshold: compiled
        assert calls == ["alif_forward"]
    finally:
        _compiled.alif_forward = original
        kernels.set_backend(previous)
