"""NIR export: folded BatchNorm, LIF conventions, max-pooled spikes, refusals, prefixes, file round trip,
and the spikes of snnTorch's NIR import against hstlab's own forward pass."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

nir = pytest.importorskip("nir")

from hstlab import LIF, HSTConfig, build_model, example_input  # noqa: E402
from hstlab.export.nir import NotExpressible, export_nir, to_nir  # noqa: E402
from hstlab.layers.norm import calibrate_batchnorm  # noqa: E402
from hstlab.neurons import PLIF  # noqa: E402


# ------------------------------------------------------------------ an independent NIR simulator
def _node_step(node, x: torch.Tensor, state: dict, name: str, dt: float) -> torch.Tensor:
    """One time step of a NIR node on a batch ``x`` [B, ...], written from the NIR definitions."""
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    if isinstance(node, nir.Conv2d):
        return F.conv2d(x, t(node.weight), t(node.bias), tuple(node.stride), tuple(node.padding),
                        tuple(node.dilation), node.groups)
    if isinstance(node, nir.Affine):
        return x @ t(node.weight).T + t(node.bias)
    if isinstance(node, nir.LIF):  # forward Euler of tau dv/dt = (v_leak - v) + R I, then z = v > thr
        v = state.get(name, torch.zeros_like(x) + t(node.v_leak))
        v = v + dt / t(node.tau) * (t(node.v_leak) - v + t(node.r) * x)
        z = (v > t(node.v_threshold)).double()
        state[name] = torch.where(z.bool(), t(node.v_reset).expand_as(v), v)
        return z
    if isinstance(node, nir.SumPool2d):  # zero padding
        k, s, p = (tuple(int(v) for v in a) for a in (node.kernel_size, node.stride, node.padding))
        return F.avg_pool2d(x, k, s, p, count_include_pad=True, divisor_override=1)
    if isinstance(node, nir.Threshold):
        return (x > t(node.threshold)).double()
    if isinstance(node, nir.Flatten):
        return x.flatten(node.start_dim + 1, node.end_dim if node.end_dim < 0 else node.end_dim + 1)
    raise AssertionError(f"simulator has no rule for {type(node).__name__}")


def simulate(graph, x: torch.Tensor) -> torch.Tensor:
    """Run ``graph`` over ``x`` [T, B, ...]; every node sums its incoming edges (NIR semantics)."""
    dt = float(graph.metadata["dt"])
    order = [n for n in graph.nodes if n not in ("input", "output")]
    sources = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}
    state: dict = {}
    outs = []
    for step in x.double():
        values = {"input": step}
        pending = list(order)
        while pending:  # topological: a node runs once all its inputs exist
            name = next(n for n in pending if all(s in values for s in sources[n]))
            pending.remove(name)
            values[name] = _node_step(graph.nodes[name], sum(values[s] for s in sources[name]), state, name, dt)
        outs.append(sum(values[s] for s in sources["output"]))
    return torch.stack(outs)


def _calibrated(cfg: HSTConfig, steps: int = 6, batch: int = 3) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(cfg)
    for m in model.modules():  # non-trivial BatchNorm affine parameters, so folding is tested
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = example_input(cfg, batch_size=batch, rate=0.3)
    x = torch.cat([x] * (steps // x.shape[0]), 0)  # [steps, B, C, H, W]
    calibrate_batchnorm(model, x)
    return model.eval(), x


def _stem_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """hstlab's stem output [T, B, N, D] as NIR's channel-major flatten [T, B, D*N]."""
    model.reset_state()
    with torch.no_grad():
        tokens = model.tokenizer(x)
    return tokens.transpose(2, 3).reshape(tokens.shape[0], tokens.shape[1], -1)


# ------------------------------------------------------------------ exact equivalence
@pytest.mark.parametrize("pools", [(False, False, False, False), (False, True, True, False)])
def test_spiking_stem_exports_whole_and_matches_hstlab_spikes(pools: tuple) -> None:
    cfg = HSTConfig.from_preset("tiny", sps_pools=pools, input_shape=(2, 8, 8))
    model, x = _calibrated(cfg)
    result = to_nir(model.tokenizer, cfg.input_shape)
    assert result.complete and "tokenizer" not in result.exported[0]
    assert {"norms.0", "rpe_norm"} <= set(result.exported)  # BatchNorms folded, not dropped
    kinds = {type(n).__name__ for n in result.graph.nodes.values()}
    assert "BatchNorm" not in str(kinds) and ("SumPool2d" in kinds) == any(pools)
    ref = _stem_tokens(model, x)
    assert 0.02 < ref.mean() < 0.5  # the neurons fire: the comparison is not all zeros
    out = simulate(result.graph, x)
    assert torch.equal(out.float(), ref)


def test_file_round_trip_keeps_every_node(tmp_path: Path) -> None:
    cfg = HSTConfig.from_preset("tiny", input_shape=(2, 8, 8))
    model, x = _calibrated(cfg)
    result = export_nir(model, tmp_path / "stem.nir", stem=True)
    back = nir.read(str(tmp_path / "stem.nir"))
    assert set(back.nodes) == set(result.graph.nodes) and sorted(back.edges) == sorted(result.graph.edges)
    for name, node in result.graph.nodes.items():
        assert type(back.nodes[name]) is type(node)
        for attr in ("weight", "bias", "tau", "v_threshold", "r", "v_leak", "v_reset"):
            if hasattr(node, attr):
                np.testing.assert_array_equal(getattr(back.nodes[name], attr), getattr(node, attr))
    assert float(back.metadata["dt"]) == pytest.approx(1e-4)
    assert torch.equal(simulate(back, x).float(), _stem_tokens(model, x))


def test_snntorch_import_reproduces_the_stem_spikes(tmp_path: Path) -> None:
    """snnTorch's import (Leaky, dt = 1e-4 fixed, beta = 1 - dt/tau_N) gives the same spikes.

    With tau_N = tau * dt its beta is hstlab's 1 - 1/tau; it leaves the input unscaled and divides
    the threshold by R dt / tau_N = 1/tau instead (membrane scaled by tau: exact for tau = 2), and
    its "zero" reset is hstlab's hard reset to V_r = 0. Its import has no Threshold node, so the
    max-pooled stem is checked with the simulator above only.
    """
    import_nir = pytest.importorskip("snntorch.import_nir")
    cfg = HSTConfig.from_preset("tiny", sps_pools=(False,) * 4, input_shape=(2, 8, 8))
    model, x = _calibrated(cfg)
    export_nir(model, tmp_path / "stem.nir", stem=True)
    with contextlib.redirect_stdout(io.StringIO()):  # snnTorch prints a warning per rescaled neuron
        net = import_nir.import_from_nir(nir.read(str(tmp_path / "stem.nir")))
    outs = []
    with torch.no_grad():
        for step in x:
            out = net(step)
            outs.append((out[0] if isinstance(out, tuple) else out).reshape(x.shape[1], -1))
    ref = _stem_tokens(model, x)
    assert torch.equal(torch.stack(outs), ref)


def test_sequential_with_plif_pool_flatten_and_affine() -> None:
    torch.manual_seed(1)
    seq = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), PLIF(tau=3.0, reset="hard"),
                        nn.MaxPool2d(2, 2), nn.Flatten(), nn.Linear(4 * 4 * 4, 5), LIF(tau=2.0, threshold=0.5))
    seq[1].running_mean.uniform_(-0.1, 0.1)
    seq[1].running_var.uniform_(0.5, 2.0)
    seq.eval()
    x = (torch.rand(5, 2, 2, 8, 8) < 0.4).float() * 1.5  # [T, B, C, H, W]
    result = to_nir(seq, (2, 8, 8))
    assert result.complete
    lif = result.graph.nodes["2"]
    assert lif.tau.shape == (4, 8, 8) and np.allclose(lif.tau, 3.0 * 1e-4) and np.allclose(lif.r, 1.0)
    with torch.no_grad():
        h = seq[1](seq[0](x.flatten(0, 1))).view(5, 2, 4, 8, 8)
        s = seq[2](h)
        h2 = seq[5](seq[4](seq[3](s.flatten(0, 1)))).view(5, 2, 5)
        ref = seq[6](h2)
    assert torch.equal(simulate(result.graph, x).float(), ref)


# ------------------------------------------------------------------ refusals and prefixes
def test_whole_model_refuses_at_the_first_layer_and_prefix_stops_there() -> None:
    cfg = HSTConfig.from_preset("tiny")
    model = build_model(cfg).eval()
    with pytest.raises(NotExpressible, match=r"layer 'pos_encoding' \(CPGPositionalEncoding\).*prefix=True"):
        to_nir(model)
    result = to_nir(model, prefix=True)
    assert result.stopped_at == "pos_encoding" and "tokenizer.rpe_act" in result.exported
    no_pe = build_model(HSTConfig.from_preset("tiny", pos_encoding="none")).eval()
    with pytest.raises(NotExpressible, match=r"'blocks.0.attn.branch'.*ssa attention multiplies activations"):
        to_nir(no_pe)
    standard = build_model(HSTConfig.from_preset("tiny", pos_encoding="none", tokenizer_mode="spiking")
                           .with_modes("TT")).eval()
    with pytest.raises(NotExpressible, match=r"'blocks.0.attn.pre' \(LayerNorm\).*softmax"):
        to_nir(standard)
    staged = build_model(HSTConfig.from_preset("qkformer-dvs", input_shape=(2, 16, 16), num_steps=1)).eval()
    with pytest.raises(NotExpressible, match=r"layer 'embeds' \(ModuleList\).*staged model"):
        to_nir(staged)


@pytest.mark.parametrize(("overrides", "layer", "reason"), [
    ({"tokenizer_mode": "standard"}, "tokenizer.acts.0", "no rectifier"),
    ({"reset": "soft"}, "tokenizer.acts.0", "reset='soft' subtracts the threshold"),
    ({"neuron": "alif"}, "tokenizer.acts.0", "threshold adapts"),
    ({"membrane_bits": 8}, "tokenizer.acts.0", "fixed point"),
    ({"sps_pool_first": True, "sps_pools": (True, True, False, False)}, "tokenizer.pools.0", "max-pools real values"),
])
def test_stem_refusals_name_the_layer_and_why(overrides: dict, layer: str, reason: str) -> None:
    model = build_model(HSTConfig.from_preset("tiny", **overrides)).eval()
    with pytest.raises(NotExpressible, match=reason) as info:
        to_nir(model)
    assert info.value.layer == layer
    with pytest.raises(NotExpressible, match=reason):  # the stem alone: the same refusal
        to_nir(model.tokenizer, model.cfg.input_shape)
    if layer == "tokenizer.pools.0":  # a prefix stops before the pool: conv + folded BN only
        result = to_nir(model, prefix=True)
        assert result.stopped_at == layer and result.exported == ["tokenizer.convs.0", "tokenizer.norms.0"]


def test_hst_small_stem_refuses_max_pooling_before_the_neuron() -> None:
    model = build_model(HSTConfig.from_preset("hst-small")).eval()
    with pytest.raises(NotExpressible, match=r"'tokenizer.pools.0' \(MaxPool2d\)"):
        to_nir(model)


def test_batchnorm_with_nothing_to_fold_into_is_refused() -> None:
    with pytest.raises(NotExpressible, match=r"layer '0' \(BatchNorm2d\).*no Conv/Linear precedes it"):
        to_nir(nn.Sequential(nn.BatchNorm2d(2), LIF()), (2, 4, 4))


# ------------------------------------------------------------------ CLI and packaging
@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    from hstlab.train.checkpoint import atomic_save, make_checkpoint

    cfg = HSTConfig.from_preset("tiny")
    path = tmp_path / "best.safetensors"
    atomic_save(make_checkpoint(build_model(cfg), cfg, {"builder": "hstlab:build_model"}), path)
    return path


def test_cli_export_refuses_then_exports_prefix_and_stem(checkpoint: Path, tmp_path: Path, capsys) -> None:
    from hstlab.cli import main

    out = tmp_path / "m.nir"
    assert main(["export-nir", str(checkpoint), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'pos_encoding'" in err[0] and "--prefix" in err[0] and not out.exists()
    assert main(["export-nir", str(checkpoint), "--out", str(out), "--prefix"]) == 0
    assert "stopped before 'pos_encoding'" in capsys.readouterr().out
    assert "tokenizer.tokens" in nir.read(str(out)).nodes
    assert main(["export-nir", str(checkpoint), "--out", str(out), "--stem"]) == 0
    assert "whole module exported" in capsys.readouterr().out
    assert main(["export-nir", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_nir_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from hstlab._optional import MissingDependency

    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(MissingDependency, match="needs the 'nir' package"):
        to_nir(nn.Sequential(LIF()), (4,))
