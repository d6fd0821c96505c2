"""Neurons: analytic updates, snnTorch parity, fused-vs-reference gradients, state, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hstlab.config import HSTConfig
from hstlab.neurons import (
    ALIF,
    LIF,
    PLIF,
    SpikingNeuron,
    _compiled,
    _gpu,
    build_neuron,
    kernels,
    reset_state,
    spike,
)


@pytest.fixture(params=["torch", "compiled"])
def backend(request):
    """Run a test on the pure-torch loops and on the compiled (numba) loops."""
    if request.param == "compiled" and not _compiled.AVAILABLE:
        pytest.skip("numba not installed")
    previous = kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend(previous)

# ---------------------------------------------------------------------------------------------
# a per-step reference built from plain autograd ops (the maths of design.md §3, written once)


def reference_lif(x, v0, r, *, threshold=1.0, v_reset=0.0, reset="hard", surrogate="atan",
                  alpha=2.0, detach_reset=True, decay_input=True, firing_rule=">"):
    """Per-step autograd LIF: returns spikes [T, ...], H [T, ...], V_last [...]."""
    v, spikes, hs = v0, [], []
    for xt in x:
        if decay_input:
            h = v + r * (xt - (v - v_reset))
        else:
            h = v - r * (v - v_reset) + xt
        s = spike(h - threshold, surrogate, alpha, firing_rule)
        s_reset = s.detach() if detach_reset else s
        v = h * (1 - s_reset) + v_reset * s_reset if reset == "hard" else h - threshold * s_reset
        spikes.append(s)
        hs.append(h)
    return torch.stack(spikes), torch.stack(hs), v


def reference_alif(x, v0, a0, r, rho, beta_a, *, threshold=1.0, reset="hard", detach_reset=True,
                   surrogate="atan", alpha=2.0):
    v, a, spikes, thetas = v0, a0, [], []
    for xt in x:
        h = v + r * (xt - v)
        theta = threshold + a
        s = spike(h - theta, surrogate, alpha)
        s_r = s.detach() if detach_reset else s
        v = h * (1 - s_r) if reset == "hard" else h - theta * s_r
        a = rho * a + beta_a * s_r
        spikes.append(s)
        thetas.append(theta)
    return torch.stack(spikes), torch.stack(thetas), v, a


def _inputs(shape, dtype=torch.float64, seed=0, scale=1.2, shift=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=dtype) * scale + shift).requires_grad_(True)


# ---------------------------------------------------------------------------------------------
# analytic membrane updates by hand (tau=2, threshold=1)

HAND_CASES = [
    # decay_input, reset, v_reset, x, expected H, expected S
    (True, "hard", 0.0, [1.5, 2.0, 0.4], [0.75, 1.375, 0.2], [0, 1, 0]),
    (True, "soft", 0.0, [1.5, 2.0, 0.4], [0.75, 1.375, 0.3875], [0, 1, 0]),
    (False, "hard", 0.0, [0.6, 0.8, 0.3], [0.6, 1.1, 0.3], [0, 1, 0]),
    (False, "soft", 0.0, [0.6, 0.8, 0.3], [0.6, 1.1, 0.35], [0, 1, 0]),
    (True, "hard", -0.2, [1.5, 2.0, 0.4], [0.55, 1.175, 0.0], [0, 1, 0]),
]


@pytest.mark.parametrize("decay_input, reset, v_reset, x, h, s", HAND_CASES)
def test_membrane_update_by_hand(decay_input, reset, v_reset, x, h, s, backend) -> None:
    lif = LIF(tau=2.0, threshold=1.0, reset=reset, decay_input=decay_input, v_reset=v_reset)
    lif.record = True
    dtype = torch.float32 if backend == "compiled" else torch.float64  # compiled loops: float32
    out = lif(torch.tensor(x, dtype=dtype).reshape(3, 1))
    assert out.flatten().tolist() == s
    assert lif.last_v.flatten().tolist() == pytest.approx(h, abs=1e-6 if backend == "compiled" else 1e-12)


def test_exactly_at_threshold_does_not_fire() -> None:
    lif = LIF(tau=2.0, threshold=1.0, decay_input=False)
    assert lif(torch.tensor([[1.0], [0.5], [0.6]])).flatten().tolist() == [0.0, 0.0, 1.0]  # H = 1, 1, 1.1


# ---------------------------------------------------------------------------------------------
# the firing rule: H > θ (snnTorch, the default) or H >= θ (SpikingJelly, the released models)

TIE_CASES = [
    # reset, membrane_bits, firing_rule, expected spikes for x = [2, 1, 2] (tau 2, θ 1: H_0 = 1 exactly)
    ("hard", None, ">", [0, 0, 1]),  # H = 1, 1 (two ties, kept), 1.5
    ("hard", None, ">=", [1, 0, 1]),  # H = 1 fires and resets, 0.5, 1.25
    ("soft", None, ">=", [1, 0, 1]),
    ("hard", 4, ">", [0, 0, 1]),  # 4-bit membranes (step 0.5): the ties are on the grid
    ("hard", 4, ">=", [1, 0, 1]),
    ("soft", 6, ">=", [1, 0, 1]),
]


@pytest.mark.parametrize("reset, bits, rule, expected", TIE_CASES)
def test_tie_at_threshold_follows_the_firing_rule(reset, bits, rule, expected, backend, monkeypatch) -> None:
    calls = _record_calls(monkeypatch, _compiled)
    lif = LIF(tau=2.0, threshold=1.0, reset=reset, membrane_bits=bits, firing_rule=rule)
    lif.record = True
    x = torch.tensor([[2.0], [1.0], [2.0]])  # float32: the compiled loops take it
    assert lif(x).flatten().tolist() == expected
    h = lif.last_v.flatten().tolist()
    assert h[:2] == ([1.0, 0.5] if rule == ">=" else [1.0, 1.0])  # H_0 exactly θ; H_1 after reset or kept tie
    assert calls == (["lif_forward"] if backend == "compiled" else [])  # each backend really ran


@pytest.mark.parametrize("rule", [">", ">="])
@pytest.mark.parametrize("reset, detach", [("hard", True), ("hard", False), ("soft", True), ("soft", False)])
def test_ties_match_reference_with_the_same_surrogate(rule, reset, detach, backend) -> None:
    """On a dyadic grid (inputs multiples of 0.5, τ = 2) ties are frequent; spikes and gradients
    equal the per-step reference under either rule, whose backward is the same surrogate."""
    g = torch.Generator().manual_seed(5)
    x = (torch.randint(-1, 5, (8, 3, 40), generator=g) * 0.5).float().requires_grad_(True)
    w = torch.randn(8, 3, 40, generator=g)
    lif = LIF(tau=2.0, threshold=1.0, reset=reset, detach_reset=detach, firing_rule=rule)
    spikes = lif(x)
    (grad,) = torch.autograd.grad((spikes * w).sum(), x)
    ref_s, ref_h, _ = reference_lif(x, torch.zeros(3, 40), 0.5, reset=reset, detach_reset=detach, firing_rule=rule)
    (ref_grad,) = torch.autograd.grad((ref_s * w).sum(), x)
    assert (ref_h == 1.0).sum() >= 20  # many exact ties
    assert torch.equal(spikes.detach(), ref_s.detach())
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_firing_rule_changes_only_the_comparison() -> None:
    """Away from ties both rules give the same spikes and the same (surrogate) gradients."""
    x = _inputs((6, 2, 7), dtype=torch.float64, seed=9)
    weights = torch.arange(6.0, dtype=torch.float64).view(6, 1, 1)
    out = {}
    for rule in (">", ">="):
        s = LIF(tau=3.0, reset="hard", detach_reset=False, firing_rule=rule).double()(x)
        out[rule] = (s, torch.autograd.grad((s * weights).sum(), x)[0])
    assert 0 < out[">"][0].mean() < 1
    assert torch.equal(out[">"][0], out[">="][0]) and torch.equal(out[">"][1], out[">="][1])


@pytest.mark.parametrize("cls", [PLIF, ALIF])
def test_plif_and_alif_follow_the_firing_rule(cls) -> None:
    x = torch.tensor([[2.0], [1.2]])  # H_0 = 1 = θ (PLIF starts at 1/τ = sigmoid(0) = 0.5; ALIF at a = 0)
    assert cls(tau=2.0)(x).flatten().tolist() == [0.0, 1.0]  # the tie is kept: H_1 = 1.1
    assert cls(tau=2.0, firing_rule=">=")(x).flatten().tolist() == [1.0, 0.0]  # fires, resets: H_1 = 0.6


def test_firing_rule_from_config_and_errors() -> None:
    assert build_neuron(HSTConfig(firing_rule=">=")).firing_rule == ">="
    assert "firing_rule='>='" in repr(LIF(firing_rule=">="))
    with pytest.raises(ValueError, match="firing_rule='>>' is not allowed; allowed: >, >="):
        LIF(firing_rule=">>")
    with pytest.raises(ValueError, match="firing_rule='ge' is not allowed; allowed: >, >="):
        HSTConfig(firing_rule="ge")
    with pytest.raises(ValueError, match="firing_rule"):
        spike(torch.zeros(2), firing_rule="=")


# ---------------------------------------------------------------------------------------------
# parity with snnTorch's Leaky in its documented step loop


@pytest.mark.parametrize("tau", [2.0, 3.5])
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid", "fast_sigmoid"])
def test_snntorch_leaky_parity(tau: float, surrogate: str, backend) -> None:
    """snnTorch Leaky(reset="zero") == our LIF(decay_input=False, reset="hard", detach_reset=True).

    snnTorch's step: reset = Θ(U[t-1] - θ) (detached); U[t] = β (1 - reset) U[t-1] + X[t];
    S[t] = Θ(U[t] - θ). Its ``mem`` is our H (before reset) and ``(1 - reset) U[t-1]`` is our
    V[t-1] = H[t-1] (1 - S[t-1]): the same model at the same step, no offset.
    """
    snn = pytest.importorskip("snntorch")
    from snntorch import surrogate as sg

    alpha = 2.0 if surrogate == "atan" else 5.0
    grads = {"atan": sg.atan(alpha=alpha), "sigmoid": sg.sigmoid(slope=alpha),
             "fast_sigmoid": sg.fast_sigmoid(slope=alpha)}
    T, B, N = 12, 4, 32
    x = _inputs((T, B, N), dtype=torch.float32, seed=1, scale=1.0, shift=0.4)
    weights = torch.randn(T, B, N, generator=torch.Generator().manual_seed(2))

    leaky = snn.Leaky(beta=1 - 1 / tau, threshold=0.8, reset_mechanism="zero", spike_grad=grads[surrogate])
    mem = leaky.init_leaky()
    ref_spikes, ref_mems = [], []
    for t in range(T):
        spk, mem = leaky(x[t], mem)
        ref_spikes.append(spk)
        ref_mems.append(mem)
    ref_spikes = torch.stack(ref_spikes)
    (ref_grad,) = torch.autograd.grad((ref_spikes * weights).sum(), x)

    ours = LIF(tau=tau, threshold=0.8, reset="hard", surrogate=surrogate, alpha=alpha, decay_input=False)
    ours.record = True
    spikes = ours(x)
    (grad,) = torch.autograd.grad((spikes * weights).sum(), x)

    assert 0.05 < spikes.mean().item() < 0.6  # the case exercises firing and resets
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(ours.last_v, torch.stack(ref_mems).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# the fused kernel against the per-step reference: every option, gradients to x, v0 and w

OPTION_CASES = [
    {"reset": r, "detach_reset": d, "decay_input": di, "v_reset": vr, "surrogate": sg}
    for r, d, di, vr, sg in [
        ("hard", True, True, 0.0, "atan"),
        ("hard", False, True, 0.0, "sigmoid"),
        ("soft", True, False, 0.0, "fast_sigmoid"),
        ("soft", False, True, 0.0, "triangle"),
        ("hard", False, False, -0.3, "atan"),
        ("soft", True, True, 0.2, "sigmoid"),
    ]
]


@pytest.mark.parametrize("opts", OPTION_CASES, ids=lambda o: "-".join(str(v) for v in o.values()))
@pytest.mark.parametrize("kind", ["lif", "plif_layer", "plif_channel"])
def test_fused_matches_reference(opts: dict, kind: str, backend) -> None:
    T, B, C = 6, 3, 5
    x = _inputs((T, B, C), seed=3)
    v0 = (torch.rand(B, C, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 0.8
          ).requires_grad_(True)
    w_out = torch.randn(T, B, C, dtype=torch.float64)
    w_v = torch.randn(B, C, dtype=torch.float64)
    alpha = 2.0
    if kind == "lif":
        neuron = LIF(tau=3.0, threshold=1.0, alpha=alpha, **opts).double()
        r = torch.tensor(1 / 3.0, dtype=torch.float64)
    else:
        neuron = PLIF(tau=3.0, threshold=1.0, alpha=alpha, channels=C if kind == "plif_channel" else None,
                      **opts).double()
        with torch.no_grad():
            neuron.w.add_(torch.linspace(-0.3, 0.3, neuron.w.numel(), dtype=torch.float64))
        r = torch.sigmoid(neuron.w)
    neuron.v = v0
    neuron.record = True
    spikes = neuron(x)
    loss = (spikes * w_out).sum() + (neuron.v * w_v).sum()
    params = [x, v0] + ([neuron.w] if kind != "lif" else [])
    grads = torch.autograd.grad(loss, params)

    ref_s, ref_h, ref_v = reference_lif(x, v0, r, alpha=alpha, **opts)
    ref_loss = (ref_s * w_out).sum() + (ref_v * w_v).sum()
    ref_grads = torch.autograd.grad(ref_loss, params)

    assert torch.equal(spikes, ref_s)
    torch.testing.assert_close(neuron.last_v, ref_h.detach())
    torch.testing.assert_close(neuron.v, ref_v)
    for g, rg in zip(grads, ref_grads):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, rg)


FIXED_POINT_CASES = [
    {"reset": "soft", "detach_reset": True, "decay_input": True, "v_reset": 0.2, "surrogate": "atan", "membrane_bits": 6},
    {"reset": "hard", "detach_reset": True, "decay_input": False, "v_reset": 0.0, "surrogate": "sigmoid",
     "membrane_bits": 8},
]


@pytest.mark.parametrize("opts", OPTION_CASES + FIXED_POINT_CASES, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_compiled_matches_torch_float32(opts: dict, monkeypatch) -> None:
    if not _compiled.AVAILABLE:
        pytest.skip("numba not installed")
    calls = _record_calls(monkeypatch, _compiled)
    case = _lif_case(channels=70)
    torch_loops = _lif_run("torch", "cpu", opts, *case)
    compiled = _lif_run("compiled", "cpu", opts, *case)
    assert calls == ["lif_forward", "lif_backward"]  # the compiled run really ran compiled
    (s_t, h_t, v_t, gx_t, gv_t), (s_c, h_c, v_c, gx_c, gv_c) = torch_loops, compiled
    assert torch.equal(s_t, s_c) and 0 < s_t.mean() < 1
    for a, b in ((h_t, h_c), (v_t, v_c), (gx_t, gx_c), (gv_t, gv_c)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _record_calls(monkeypatch, loops) -> list[str]:
    """Names of ``loops``' lif_forward / lif_backward calls, in order (the functions still run)."""
    calls: list[str] = []
    for fn in ("lif_forward", "lif_backward"):
        original = getattr(loops, fn)
        monkeypatch.setattr(loops, fn, lambda *a, _f=original, _n=fn: calls.append(_n) or _f(*a))
    return calls


def _lif_case(channels: int) -> tuple[torch.Tensor, ...]:
    """x [T=9, B=3, C] (float32), v0 [B, C] and loss weights for the spikes and the last V."""
    T, B = 9, 3
    x = _inputs((T, B, channels), dtype=torch.float32, seed=11)
    v0 = torch.rand(B, channels, generator=torch.Generator().manual_seed(12)) * 0.5
    return x, v0, torch.randn(T, B, channels), torch.randn(B, channels)


def _lif_run(backend: str, device: str, opts: dict, x: torch.Tensor, v0: torch.Tensor, w_out, w_v):
    """Spikes, H, V_last and the gradients on x and v0 of one LIF run (x, v0 copied to ``device``)."""
    previous = kernels.set_backend(backend)
    try:
        lif = LIF(**{"tau": 2.5, "alpha": 3.0, **opts}).to(device)
        lif.record = True
        xd = x.detach().to(device).requires_grad_(True)
        lif.v = v0.detach().to(device, copy=True).requires_grad_(True)
        v_in = lif.v
        spikes = lif(xd)
        loss = (spikes * w_out.to(device)).sum() + (lif.v * w_v.to(device)).sum()
        grads = torch.autograd.grad(loss, (xd, v_in))
        return [t.detach().cpu() for t in (spikes, lif.last_v, lif.v, *grads)]
    finally:
        kernels.set_backend(previous)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("opts", OPTION_CASES + FIXED_POINT_CASES, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_triton_loops_match_torch_loops_on_cuda(opts: dict, monkeypatch) -> None:
    if not _gpu.AVAILABLE:
        pytest.skip("triton not installed")
    assert _gpu._works_on(torch.device("cuda", torch.cuda.current_device()))  # the once-per-device self-check
    calls = _record_calls(monkeypatch, _gpu)
    case = _lif_case(channels=700)  # more neurons than one Triton program takes
    torch_loops = _lif_run("torch", "cuda", opts, *case)
    assert calls == []
    triton_loops = _lif_run("auto", "cuda", opts, *case)
    assert calls == ["lif_forward", "lif_backward"]  # "auto" takes the Triton loops on CUDA
    cpu = _lif_run("torch", "cpu", opts, *case)
    assert torch.equal(torch_loops[0], triton_loops[0]) and torch.equal(cpu[0], triton_loops[0])
    assert 0 < triton_loops[0].mean() < 1
    for a, b, c in zip(torch_loops[1:], triton_loops[1:], cpu[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rule", [">", ">="])
@pytest.mark.parametrize("reset, detach, bits", [("hard", True, None), ("hard", False, None), ("soft", True, 4)])
def test_triton_ties_follow_the_firing_rule(rule: str, reset: str, detach: bool, bits, monkeypatch) -> None:
    """Inputs on a dyadic grid put many H exactly on θ: Triton's spikes and gradients equal the torch loops'."""
    if not _gpu.AVAILABLE:
        pytest.skip("triton not installed")
    g = torch.Generator().manual_seed(5)
    x = torch.randint(-1, 5, (9, 3, 700), generator=g) * 0.5  # [T, B, N]
    case = (x, torch.zeros(3, 700), torch.randn(9, 3, 700, generator=g), torch.randn(3, 700, generator=g))
    opts = {"tau": 2.0, "reset": reset, "detach_reset": detach, "membrane_bits": bits, "firing_rule": rule}
    calls = _record_calls(monkeypatch, _gpu)
    triton_loops = _lif_run("auto", "cuda", opts, *case)
    assert calls == ["lif_forward", "lif_backward"]
    cpu = _lif_run("torch", "cpu", opts, *case)
    assert torch.equal(cpu[0], triton_loops[0]) and torch.equal(cpu[1], triton_loops[1])  # spikes, H
    assert (cpu[1] == 1.0).sum() > 100  # many exact ties (θ = 1)
    for a, b in zip(cpu[2:], triton_loops[2:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("opts", [
    {"threshold": 0.7, "v_reset": -0.1, "reset": "soft", "membrane_bits": 8},
    {"threshold": 1.0, "v_reset": 0.2, "reset": "hard", "membrane_bits": 6},
])
def test_triton_fixed_point_membranes_match_on_a_million_neurons(opts: dict) -> None:
    """Rounding to the grid must not differ anywhere: a 1-ulp division error flips ties."""
    if not _gpu.AVAILABLE:
        pytest.skip("triton not installed")
    x = torch.randn(16, 4, 1 << 18, generator=torch.Generator().manual_seed(5)).cuda()  # [T, B, N]
    results = {}
    for backend in ("torch", "auto"):
        previous = kernels.set_backend(backend)
        try:
            lif = LIF(tau=2.0, **opts).cuda()
            with torch.no_grad():
                results[backend] = (lif(x), lif.v.clone())
        finally:
            kernels.set_backend(previous)
    (s_torch, v_torch), (s_triton, v_triton) = results["torch"], results["auto"]
    assert torch.equal(s_torch, s_triton) and torch.equal(v_torch, v_triton)


def test_gpu_self_check_values_are_right_on_the_numba_loops(monkeypatch) -> None:
    """The hand-computed answers of ``_gpu._works_on`` hold for the CPU loops of the same maths."""
    if not _compiled.AVAILABLE:
        pytest.skip("numba not installed")
    monkeypatch.setattr(_gpu, "lif_forward", _compiled.lif_forward)
    monkeypatch.setattr(_gpu, "lif_backward", _compiled.lif_backward)
    _gpu._works_on.cache_clear()
    try:
        assert _gpu._works_on(torch.device("cpu")) is True
    finally:
        _gpu._works_on.cache_clear()


def test_triton_loops_that_fail_their_first_run_fall_back_with_a_warning(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("PTX for this GPU is not supported")

    monkeypatch.setattr(_gpu, "lif_forward", broken)
    _gpu._works_on.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="Triton LIF loops do not work on cpu .*PTX.*using the torch loops"):
            assert _gpu._works_on(torch.device("cpu")) is False
    finally:
        _gpu._works_on.cache_clear()
    assert not _gpu.usable(torch.zeros(2, 3))  # CPU tensors never take the Triton loops


def test_compiled_large_input_split_across_threads() -> None:
    if not _compiled.AVAILABLE:
        pytest.skip("numba not installed")
    n = 2 * _compiled._MIN_PER_THREAD + 37  # two ranges whenever torch may use 2+ threads
    x = (torch.randn(3, n, generator=torch.Generator().manual_seed(0)) + 0.5).requires_grad_(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert len(_compiled._ranges(n)) == 2
        out = {}
        for name in ("torch", "compiled"):
            previous = kernels.set_backend(name)
            try:
                spikes = LIF(decay_input=False)(x)
                out[name] = (spikes, torch.autograd.grad((spikes * x.detach()).sum(), x)[0])
            finally:
                kernels.set_backend(previous)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out["torch"][0], out["compiled"][0])
    torch.testing.assert_close(out["torch"][1], out["compiled"][1])


def test_compiled_forward_with_gradient_only_through_state() -> None:
    if not _compiled.AVAILABLE:
        pytest.skip("numba not installed")
    x = (torch.randn(5, 2, 8, generator=torch.Generator().manual_seed(3)) + 0.6).requires_grad_(True)
    grads = []
    for name in ("torch", "compiled"):
        previous = kernels.set_backend(name)
        try:
            lif = LIF(reset="soft")
            lif(x)
            grads.append(torch.autograd.grad(lif.v.sum(), x)[0])  # spikes unused: ∂L/∂S is None
        finally:
            kernels.set_backend(previous)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_channels_last_input_runs_in_place_with_same_results(reset: str, backend) -> None:
    """A channels-last stem feature [T, B, C, H, W] gives the spikes, state and gradients of its
    contiguous copy, and keeps its layout (the kernels run on a permuted view, no copy)."""
    x = torch.randn(3, 4, 6, 5, 5, generator=torch.Generator().manual_seed(1)) * 2
    x_cl = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
    assert kernels.dense_time_major_order(x_cl) == (0, 1, 3, 4, 2)
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    results = []
    for inp in (x.clone().requires_grad_(), x_cl.clone().requires_grad_()):
        lif = LIF(reset=reset)
        first, second = lif(inp), lif(inp)  # the second call starts from the first's state
        ((first + 2 * second) * weights).sum().backward()
        results.append((first, second, lif.v, inp.grad))
    for ours, ref in zip(results[1], results[0]):
        assert torch.equal(ours, ref)
    spikes, _, v, grad = results[1]
    assert spikes.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert grad.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert v.is_contiguous(memory_format=torch.channels_last)
    assert kernels.dense_time_major_order(x) is None  # contiguous: nothing to permute
    assert kernels.dense_time_major_order(x[:, :, :, ::2]) is None  # strided slice: not dense


def test_fixed_point_membrane_by_hand(backend) -> None:
    """4 bits: step 0.5. x = 0.7, tau = 2: H = 0.35 -> V = 0.5; H = 0.6 -> V = 0.5 (float: 0.35, 0.525, ...)."""
    lif = LIF(tau=2.0, reset="soft", membrane_bits=4)
    x = torch.full((4, 1), 0.7, requires_grad=True)
    lif.record = True
    assert lif(x).sum() == 0
    assert lif.v.item() == 0.5
    torch.testing.assert_close(lif.last_v.flatten(), torch.tensor([0.35, 0.6, 0.6, 0.6]))
    lif.reset_state()
    lif(x).sum().backward()  # straight-through: the gradient of the float neuron's graph
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("bits", [4, 8])
def test_fixed_point_membrane_stays_on_grid_and_saturates(bits: int, backend) -> None:
    step, top = 1.0 / 2 ** (bits - 3), 4.0
    x = torch.randn(6, 3, 50, generator=torch.Generator().manual_seed(0)) * 3
    x[:, :, :5] = -100.0  # driven far below: saturates at -4 θ
    lif = LIF(tau=1.5, reset="soft", membrane_bits=bits, decay_input=False)
    for _ in range(2):  # the second call starts from the quantized state
        lif(x)
    v = lif.v
    assert torch.equal(v / step, (v / step).round())
    assert v.min() >= -top and v.max() <= top - step
    assert torch.equal(v[:, :5], torch.full((3, 5), -top))


def test_membrane_bits_from_config_and_errors() -> None:
    cfg = HSTConfig.from_preset("tiny", membrane_bits=8)
    assert build_neuron(cfg).membrane_bits == 8
    assert build_neuron(HSTConfig.from_preset("tiny")).membrane_bits is None
    with pytest.raises(ValueError, match="membrane_bits=5 is not allowed; allowed: 4, 6, 8, 12, 16, 32"):
        HSTConfig.from_preset("tiny", membrane_bits=5)
    with pytest.raises(ValueError, match="membrane_bits=3 is not allowed; allowed: None"):
        LIF(membrane_bits=3)


def test_set_backend_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="backend='fast'.*allowed: auto, torch, compiled"):
        kernels.set_backend("fast")


def test_one_autograd_node_for_all_steps() -> None:
    x = torch.rand(16, 2, 3, requires_grad=True)
    out = LIF()(x)
    assert type(out.grad_fn).__name__ == "LIFMultiStepBackward"
    assert out.grad_fn.next_functions[0][0].variable is x  # straight to the input's AccumulateGrad


# ---------------------------------------------------------------------------------------------
# gradcheck (float64): on V_last, whose forward is piecewise smooth when the reset is detached


def _away_from_threshold(h: torch.Tensor, threshold: float, margin: float = 1e-3) -> bool:
    return bool(((h - threshold).abs() > margin).all())


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("decay_input", [True, False])
def test_gradcheck_lif_and_plif(reset: str, decay_input: bool, backend) -> None:
    T, B, C = 5, 2, 3
    x = _inputs((T, B, C), seed=5, scale=2.0 if decay_input else 0.9, shift=0.7 if decay_input else 0.35)
    v0 = torch.full((B, C), 0.1, dtype=torch.float64, requires_grad=True)
    kw = {"reset": reset, "decay_input": decay_input, "surrogate": "sigmoid", "alpha": 1.0}
    lif = LIF(tau=2.5, **kw)
    plif = PLIF(tau=2.5, channels=C, **kw).double()
    w = (plif.w.detach() + torch.tensor([-0.2, 0.0, 0.3], dtype=torch.float64)).requires_grad_(True)

    def run(neuron, x, v0, params=None):
        neuron.reset_state()
        neuron.record = True
        neuron.v = v0
        spikes = torch.func.functional_call(neuron, params or {}, (x,))
        run.spikes, run.h = spikes.detach(), neuron.last_v
        return neuron.v + 0 * spikes.sum()  # spikes are a step function: check the V path

    for neuron, extra in ((lif, ()), (plif, (w,))):
        fn = (lambda x, v0: run(lif, x, v0)) if neuron is lif else (lambda x, v0, w: run(plif, x, v0, {"w": w}))
        fn(x, v0, *extra)
        assert _away_from_threshold(run.h, 1.0) and 0 < run.spikes.sum() < x.numel()
        assert torch.autograd.gradcheck(fn, (x, v0, *extra))


def test_plif_gets_gradient_on_w() -> None:
    plif = PLIF(tau=2.0)
    x = torch.rand(8, 4, 6) * 2
    plif(x).sum().backward()
    assert plif.w.grad is not None and plif.w.grad.shape == (1,) and plif.w.grad.abs().item() > 0


def test_plif_initial_tau_and_equals_lif_forward() -> None:
    plif, lif = PLIF(tau=3.0, channels=4), LIF(tau=3.0)
    assert plif.tau_learned.tolist() == pytest.approx([3.0] * 4)
    x = torch.rand(10, 2, 4) * 2
    assert torch.equal(plif(x), lif(x))


# ---------------------------------------------------------------------------------------------
# ALIF


def test_alif_threshold_rises_after_spike_and_decays() -> None:
    beta_a, tau_a = 0.4, 5.0
    alif = ALIF(tau=2.0, threshold=1.0, beta_a=beta_a, tau_a=tau_a)
    alif.record = True
    x = torch.zeros(8, 1)
    x[0] = 4.0  # one strong pulse: fires at t=0, then silence
    spikes = alif(x).flatten()
    theta = alif.last_threshold.flatten()
    assert spikes.tolist() == [1.0] + [0.0] * 7
    rho = 1 - 1 / tau_a
    expected = [1.0] + [1.0 + beta_a * rho ** (t - 1) for t in range(1, 8)]
    assert theta.tolist() == pytest.approx(expected, rel=1e-6)
    assert (theta[2:] < theta[1:-1]).all()  # decays back towards the base threshold


def test_alif_with_zero_beta_is_lif() -> None:
    x = torch.rand(10, 3, 4, requires_grad=True) * 2
    a, b = ALIF(tau=2.0, beta_a=0.0), LIF(tau=2.0)
    sa, sb = a(x), b(x)
    assert torch.equal(sa, sb)
    ga, gb = (torch.autograd.grad(s.sum(), x)[0] for s in (sa, sb))
    torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize("reset, detach", [("hard", True), ("soft", False), ("hard", False)])
def test_alif_matches_reference(reset: str, detach: bool) -> None:
    T, B, C = 7, 2, 4
    x = _inputs((T, B, C), seed=8, scale=1.0, shift=0.7)
    alif = ALIF(tau=2.0, beta_a=0.3, tau_a=4.0, reset=reset, detach_reset=detach).double()
    alif.record = True
    spikes = alif(x)
    w = torch.randn(T, B, C, dtype=torch.float64)
    (g,) = torch.autograd.grad((spikes * w).sum() + alif.v.sum() + alif.a.sum(), x)
    zeros = torch.zeros(B, C, dtype=torch.float64)
    rs, rth, rv, ra = reference_alif(x, zeros, zeros, 0.5, 0.75, 0.3, reset=reset, detach_reset=detach)
    (rg,) = torch.autograd.grad((rs * w).sum() + rv.sum() + ra.sum(), x)
    assert torch.equal(spikes, rs) and spikes.sum() > 0
    torch.testing.assert_close(alif.last_threshold, rth.detach())
    torch.testing.assert_close(g, rg)


# ---------------------------------------------------------------------------------------------
# state, record, shapes, dtypes


@pytest.mark.parametrize("cls", [LIF, PLIF, ALIF])
def test_state_persists_across_calls_and_reset_restores(cls, backend) -> None:
    x = torch.rand(10, 2, 3, requires_grad=True) * 1.5
    whole = cls()
    s_whole = whole(x)
    (g_whole,) = torch.autograd.grad((s_whole * torch.arange(10.0).view(10, 1, 1)).sum(), x)

    split = cls()
    s1 = split(x[:4])
    assert isinstance(split.v, torch.Tensor)
    s2 = split(x[4:])
    assert torch.equal(torch.cat([s1, s2]), s_whole)
    # gradient reaches the first chunk through the stored state
    (g_split,) = torch.autograd.grad((torch.cat([s1, s2]) * torch.arange(10.0).view(10, 1, 1)).sum(), x)
    torch.testing.assert_close(g_split, g_whole)

    split.reset_state()
    assert split.v == 0.0
    assert torch.equal(split(x[:4]), s1)


def test_state_reinitialised_when_batch_size_changes() -> None:
    lif = LIF()
    lif(torch.rand(3, 2, 5) * 3)
    x3 = torch.rand(3, 4, 5) * 3
    assert torch.equal(lif(x3), LIF()(x3))
    assert lif.v.shape == (4, 5)


def test_state_follows_dtype() -> None:
    lif = LIF()
    lif(torch.rand(3, 2))
    out = lif(torch.rand(3, 2, dtype=torch.float64))
    assert out.dtype == torch.float64 and lif.v.dtype == torch.float64


def test_record_flag_stores_detached_last_v() -> None:
    lif = LIF(tau=2.0)
    x = torch.full((3, 1), 1.5, requires_grad=True)
    lif(x)
    assert lif.last_v is None
    lif.record = True
    lif.reset_state()
    lif(x)
    assert lif.last_v.shape == (3, 1) and not lif.last_v.requires_grad
    assert lif.last_v.flatten().tolist() == pytest.approx([0.75, 1.125, 0.75])
    lif.reset_state()
    assert lif.last_v is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_binary(dtype) -> None:
    x = torch.randn(4, 2, 3, 5, dtype=dtype) * 2  # [T, B, N, D]
    for neuron in (LIF(), PLIF(channels=5), ALIF()):
        out = neuron(x)
        assert out.shape == x.shape and out.dtype == dtype
        assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_module_reset_state_walks_tree_without_recursing() -> None:
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = LIF(), nn.Sequential(nn.Identity(), ALIF())

        def reset_state(self):
            reset_state(self)

    net = Net()
    net.a(torch.rand(2, 3))
    net.b(torch.rand(2, 3))
    net.reset_state()
    assert net.a.v == 0.0 and net.b[1].v == 0.0 and net.b[1].a == 0.0
    assert all(m.is_spiking_neuron for m in (net.a, net.b[1]))
    assert isinstance(net.a, SpikingNeuron)


def test_deepcopy_and_pickle_after_a_forward_with_grad() -> None:
    import copy
    import io

    net = nn.Sequential(nn.Linear(3, 3), ALIF())
    x = torch.rand(4, 2, 3)
    net(x)
    clone = copy.deepcopy(net)
    assert torch.equal(clone[1].v, net[1].v) and not clone[1].v.requires_grad
    buffer = io.BytesIO()
    torch.save(net, buffer)
    assert net[1].v.requires_grad  # the original keeps its graph


def test_detach_state_cuts_graph() -> None:
    lif = LIF()
    x = torch.rand(3, 2, requires_grad=True)
    lif(x)
    assert lif.v.requires_grad
    lif.detach_state()
    assert not lif.v.requires_grad


# ---------------------------------------------------------------------------------------------
# build_neuron and argument errors


@pytest.mark.parametrize("name, cls", [("lif", LIF), ("plif", PLIF), ("alif", ALIF)])
def test_build_neuron_from_config(name: str, cls) -> None:
    cfg = HSTConfig(neuron=name, tau=3.0, threshold=0.7, reset="soft", surrogate="sigmoid",
                    surrogate_alpha=4.0, detach_reset=False, alif_beta=0.3, alif_tau=12.0)
    n = build_neuron(cfg)
    assert type(n) is cls
    assert (n.tau, n.threshold, n.reset, n.surrogate, n.alpha, n.detach_reset) == (
        3.0, 0.7, "soft", "sigmoid", 4.0, False)
    if name == "alif":
        assert (n.beta_a, n.tau_a) == (0.3, 12.0)
    assert build_neuron(cfg, threshold=0.5).threshold == 0.5


BAD_ARGS = [
    ({"tau": 1.0}, "tau=1.0"),
    ({"tau": 0.5}, "tau=0.5"),
    ({"tau": math.inf}, "tau=inf"),
    ({"reset": "zero"}, "reset='zero'.*allowed: hard, soft"),
    ({"surrogate": "relu"}, "surrogate='relu'.*allowed: atan, sigmoid, fast_sigmoid, triangle"),
    ({"alpha": 0.0}, "alpha=0.0"),
    ({"threshold": -1.0}, "threshold=-1.0"),
    ({"v_reset": 2.0}, "v_reset=2.0"),
]


@pytest.mark.parametrize("kwargs, message", BAD_ARGS)
@pytest.mark.parametrize("cls", [LIF, PLIF, ALIF])
def test_bad_arguments(cls, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_bad_neuron_specific_arguments() -> None:
    with pytest.raises(ValueError, match="tau_a=1.0"):
        ALIF(tau_a=1.0)
    with pytest.raises(ValueError, match="beta_a=-0.1"):
        ALIF(beta_a=-0.1)
    with pytest.raises(ValueError, match="channels=0"):
        PLIF(channels=0)
    with pytest.raises(ValueError, match="channels=4"):
        PLIF(channels=4)(torch.rand(2, 3, 5))
    with pytest.raises(ValueError, match="x.dtype"):
        LIF()(torch.ones(2, 3, dtype=torch.long))


def test_build_neuron_unknown_kind() -> None:
    class Cfg:
        neuron = "izhikevich"

    with pytest.raises(ValueError, match="neuron='izhikevich'.*allowed: lif, plif, alif"):
        build_neuron(Cfg())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    x = torch.rand(8, 4, 16, requires_grad=True) * 2
    xc = x.detach().cuda().requires_grad_(True)
    for make in (LIF, lambda: PLIF(channels=16), ALIF):
        cpu, gpu = make(), make().cuda()
        s_cpu, s_gpu = cpu(x), gpu(xc)
        assert torch.equal(s_cpu, s_gpu.cpu())
        (g_cpu,) = torch.autograd.grad(s_cpu.sum(), x)
        (g_gpu,) = torch.autograd.grad(s_gpu.sum(), xc)
        torch.testing.assert_close(g_cpu, g_gpu.cpu())
