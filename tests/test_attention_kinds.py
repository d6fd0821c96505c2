"""Issue 16's attention kinds (statten, emsa, bipolar, lateral) and MLP kind (emsp): maths,
gradients in every mode, hand-checked energy counts, Recorder views, ablation and explorer."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from energy_support import row
from torch import nn

from hstlab import HSTConfig, Recorder, build_model, example_input
from hstlab.energy import energy_report
from hstlab.layers.attention import ATTENTION
from hstlab.layers.attention.bipolar import SHIFTMAX_ACS, shiftmax
from hstlab.layers.attention.statten import fold_steps, unfold_steps
from hstlab.layers.emsp import ExpertsMixtureMLP
from hstlab.layers.norm import calibrate_batchnorm
from hstlab.neurons import reset_state
from hstlab.train.ablate import ablation_configs, same_network

NEW_KINDS = ("statten", "emsa", "bipolar", "lateral")
MODES = ("SS", "ST", "TS", "TT")


def tiny(**overrides) -> HSTConfig:
    return HSTConfig.from_preset("tiny", **overrides)


def attention(cfg: HSTConfig, index: int = 0) -> nn.Module:
    return ATTENTION.get(cfg.layer(index).attention_kind)(cfg, cfg.layer(index))


def spikes(*shape: int, rate: float = 0.4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=gen) < rate).float()


def t(*rows) -> torch.Tensor:
    """A ``[T=len(rows), B=1, H=1, N, d]`` tensor from per-step ``[N, d]`` lists."""
    return torch.tensor(rows, dtype=torch.float32)[:, None, None]


def grad_check(cfg: HSTConfig) -> None:
    model = build_model(cfg).train()
    model(example_input(cfg, batch_size=2, rate=0.3)).square().sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{cfg.attention}/{cfg.mlp_kind} {cfg.modes}: no gradient for {missing}"


# ------------------------------------------------------------------------- gradients, every mode
@pytest.mark.parametrize("modes", MODES)
@pytest.mark.parametrize("overrides", [dict(attention="statten", num_steps=4, attn_block=2),
                                       dict(attention="statten", num_steps=4, attn_block=4),
                                       dict(attention="emsa", experts=8), dict(attention="bipolar"),
                                       dict(attention="lateral"), dict(mlp_kind="emsp", experts=2)],
                         ids=["statten-b2", "statten-b4", "emsa", "bipolar", "lateral", "emsp"])
def test_every_parameter_gets_a_gradient_in_every_mode(overrides, modes):
    grad_check(tiny(**overrides).with_modes(modes))


@pytest.mark.parametrize("kind", ["emsa", "bipolar", "lateral"])
def test_causal_kinds_get_gradients_and_ignore_later_tokens(kind):
    cfg = tiny(attention=kind, causal=True)
    module = attention(cfg).eval()
    x = spikes(2, 1, 16, 32, rate=0.5)
    changed = x.clone()
    changed[:, :, 9:] = 1 - changed[:, :, 9:]  # every token after 8 differs
    out = module(x)
    reset_state(module)  # neurons keep their membranes between calls
    out_changed = module(changed)
    torch.testing.assert_close(out[:, :, :9], out_changed[:, :, :9])
    grad_check(cfg)


# ----------------------------------------------------------------------------------- statten
def test_fold_and_unfold_steps_are_inverse_and_step_major():
    x = torch.arange(4 * 1 * 1 * 3 * 2, dtype=torch.float32).view(4, 1, 1, 3, 2)  # [T, B, H, N, d]
    folded = fold_steps(x, 2)  # [2, 1, 1, 6, 2]
    assert folded.shape == (2, 1, 1, 6, 2)
    torch.testing.assert_close(folded[1, 0, 0, 3:], x[3, 0, 0])  # block 1's second step, tokens 0..2
    torch.testing.assert_close(unfold_steps(folded, 2), x)


def test_statten_block_one_is_ssa_exactly():
    ssa_cfg = tiny(num_steps=4)
    st_cfg = tiny(num_steps=4, attention="statten", attn_block=1)
    torch.manual_seed(1)
    ssa_model = build_model(ssa_cfg).eval()
    st_model = build_model(st_cfg).eval()
    st_model.load_state_dict(ssa_model.state_dict())  # same parameters, same names
    x = example_input(ssa_cfg, batch_size=2, rate=0.4)
    assert type(st_model.blocks[0].attn.branch).__name__ == "SpatialTemporalAttention"
    with Recorder(ssa_model) as ssa_rec, Recorder(st_model) as st_rec:
        assert torch.equal(ssa_model(x), st_model(x))
    assert ssa_rec.attention.keys() == st_rec.attention.keys()
    for name, ssa_map in ssa_rec.attention.items():  # the maps too
        assert torch.equal(ssa_map, st_rec.attention[name]), name


def test_statten_mixes_steps_within_a_block_only():
    cfg = tiny(num_steps=4, attention="statten", attn_block=2)
    module = attention(cfg)
    module.attn_neuron = nn.Identity()  # look at s · Q̃ (K̃ᵀ Ṽ) itself
    q, k, v = (spikes(4, 1, 2, 3, 16, seed=s) for s in (1, 2, 3))  # [T, B, H, N, d]
    out = module.core(q, k, v)
    for step in range(4):
        block = slice(step // 2 * 2, step // 2 * 2 + 2)
        kv = sum(k[s].transpose(-1, -2) @ v[s] for s in range(4)[block])  # [B, H, d, d] summed over the block
        torch.testing.assert_close(out[step], q[step] @ kv * cfg.attn_scale)


def test_statten_maps_sum_key_steps_of_the_block():
    cfg = tiny(num_steps=4, attention="statten", attn_block=2)
    module = attention(cfg)
    q, k = spikes(4, 1, 2, 3, 16, seed=4), spikes(4, 1, 2, 3, 16, seed=5)
    full = module.block_map(q, k)  # [2, 1, 2, 6, 6]
    assert full.shape == (2, 1, 2, 6, 6)
    torch.testing.assert_close(full[1, :, :, 3:, :3], q[3] @ k[2].transpose(-1, -2) * cfg.attn_scale)
    expected = (q[1] @ (k[0] + k[1]).transpose(-1, -2)) * cfg.attn_scale  # step 1 sees keys of steps 0 and 1
    torch.testing.assert_close(module.attention_map(q, k)[1], expected)


def test_statten_energy_by_hand_equals_ssa():
    q = t([[1, 0], [0, 0]], [[1, 1], [0, 1]])  # nnz 4 -> Q (Kᵀ V): 4 spikes x d=2 = 8 adds
    k = t([[1, 1], [0, 0]], [[0, 1], [1, 0]])  # active per (step, token): (2, 0), (1, 1)
    v = t([[1, 0], [1, 1]], [[0, 0], [1, 1]])  # active per (step, token): (1, 2), (0, 2)
    # Kᵀ V: 2*1 + 0*2 + 1*0 + 1*2 = 4 adds; s · result: 8 MACs (one per entry of [T, B, H, N, d])
    for block in (1, 2):
        cfg = HSTConfig(n_layer=1, n_embd=2, n_head=1, num_steps=2, attention="statten", attn_block=block)
        assert attention(cfg).matmul_ops(q, k, v) == (8.0, 12.0)
    ssa = HSTConfig(n_layer=1, n_embd=2, n_head=1, num_steps=2)
    assert attention(ssa).matmul_ops(q, k, v) == (8.0, 12.0)


# -------------------------------------------------------------------------------------- emsa
def test_emsa_router_gates_whole_heads():
    cfg = tiny(attention="emsa", experts=4)
    module = attention(cfg).eval()
    assert (module.n_head, module.head_dim) == (4, 8)
    x = spikes(2, 1, 16, 32, rate=0.5)
    heads_out = torch.rand(2, 1, 4, 16, 8) + 0.1  # [T, B, m, N, d], all non-zero
    mixed = module.mix(x, heads_out)
    gate = module.last_gate  # [T, B, N, m]
    assert set(gate.unique().tolist()) <= {0.0, 1.0}
    expected = heads_out * gate.permute(0, 1, 3, 2)[..., None]
    torch.testing.assert_close(mixed, expected)
    assert ((mixed != 0).any(-1) == gate.permute(0, 1, 3, 2).bool()).all()  # a head passes iff its gate spikes


def test_emsa_energy_by_hand():
    cfg = HSTConfig(n_layer=1, n_embd=4, n_head=1, num_steps=2, attention="emsa", experts=2)
    module = attention(cfg)  # 2 experts of width 2
    q = t([[1, 0], [0, 0]], [[1, 1], [0, 1]])
    k = t([[1, 1], [0, 0]], [[0, 1], [1, 0]])
    v = t([[1, 0], [1, 1]], [[0, 0], [1, 1]])
    module.last_gate = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])  # [T, B, N, m]: 3
    # the expert (SSA) costs of the statten test (8 MACs, 12 adds) + 3 gate spikes x d=2 masked adds
    assert module.matmul_ops(q, k, v) == (8.0, 18.0)


# ----------------------------------------------------------------------------------- bipolar
def test_shiftmax_is_powers_of_two_with_a_power_of_two_denominator():
    scores = torch.randn(3, 5, 7) * 4
    probs = shiftmax(scores)
    sums = probs.sum(-1)
    assert ((sums > 0.5) & (sums <= 1.0)).all()
    exps = torch.log2(probs)
    torch.testing.assert_close(exps, exps.round())  # every weight is 2^integer: a shift
    causal = torch.ones(7, 7, dtype=torch.bool).tril()[:5]
    masked = shiftmax(scores, causal)
    assert (masked[..., ~causal] == 0).all()
    scores.requires_grad_(True)
    shiftmax(scores).square().sum().backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0


def test_bipolar_q_and_k_are_ternary_and_v_binary():
    cfg = tiny(attention="bipolar")
    module = attention(cfg).train()
    seen = {}
    for role in ("q", "k", "v"):
        getattr(module, f"{role}_probe").register_forward_hook(
            lambda m, i, o, role=role: seen.__setitem__(role, o))
    module(torch.randn(2, 2, 16, 32))
    for role in ("q", "k"):
        assert set(seen[role].unique().tolist()) == {-1.0, 0.0, 1.0}, role
    assert set(seen["v"].unique().tolist()) <= {0.0, 1.0}


def test_bipolar_ternary_operands_are_read_as_signed_spikes():
    from hstlab.energy.counting import CountContext, OpCounter

    cfg = tiny(attention="bipolar")
    module = attention(cfg).train()  # batch statistics: the ternary neurons fire both ways
    captured = {}
    for role in ("q", "k", "v"):
        getattr(module, f"{role}_probe").register_forward_hook(
            lambda m, i, o, role=role: captured.__setitem__(role, o.detach()))
    x = torch.randn(2, 1, 16, 32, generator=torch.Generator().manual_seed(0)) * 4  # strong drive both ways
    with torch.no_grad(), OpCounter(module, CountContext(batch_size=1, act_bits=32)) as counter:
        module(x)
    tally = counter.tallies[""]
    assert (tally.mode, tally.input_kind) == ("spiking", "spikes")
    q, k, v = captured["q"], captured["k"], captured["v"]
    assert (q < 0).any() and (k < 0).any() and (q > 0).any()
    # Q, K: 2 bits per non-zero (event, sign); V: 1 bit per spike; the product written at 32 bits
    expected = 2 * float(q.count_nonzero() + k.count_nonzero()) + float(v.count_nonzero()) + 32 * q.numel()
    assert tally.act_bits == pytest.approx(expected)
    assert tally.acs == pytest.approx(module.matmul_ops(q, k, v)[1])


def test_bipolar_energy_by_hand():
    cfg = HSTConfig(n_layer=1, n_embd=2, n_head=1, num_steps=1, attention="bipolar")
    q = t([[1, -1], [0, 1]])  # |q| = [[1, 1], [0, 1]]
    k = t([[-1, -1], [1, 0]])  # |k| = [[1, 1], [1, 0]]: |q||k|ᵀ = [[2, 1], [1, 0]], 4 signed adds
    v = t([[1, 0], [1, 1]])  # V spikes per token: 1, 2
    # 4 scores: 4 MACs (c ·), 4 · SHIFTMAX_ACS; A V: each of 2 rows adds 1 + 2 V spikes = 6
    assert attention(cfg).matmul_ops(q, k, v) == (4.0, 4 + 4 * SHIFTMAX_ACS + 6)
    causal = attention(dataclasses.replace(cfg, causal=True))
    # 3 scores (j <= i); pairs 2 + 1 + 0 = 3; A V: row 0 sees 1 spike, row 1 sees 1 + 2
    assert causal.matmul_ops(q, k, v) == (3.0, 3 + 3 * SHIFTMAX_ACS + 4)


# ----------------------------------------------------------------------------------- lateral
def test_lateral_subtracts_the_inhibitory_map_before_the_neuron():
    cfg = tiny(attention="lateral")
    module = attention(cfg)
    module.attn_neuron = nn.Identity()
    with torch.no_grad():
        module.inhibition.copy_(torch.tensor([0.25, 1.5]))
    q, k = spikes(2, 1, 4, 16, 16, seed=1), spikes(2, 1, 4, 16, 16, seed=2)  # [T, B, 2H, N, d]
    v = spikes(2, 1, 2, 16, 16, seed=3)
    net = module.attention_map(q, k)  # [T, B, H, N, N]
    torch.testing.assert_close(module.core(q, k, v), net @ v)  # linear order = the net map times V
    excite = q[:, :, :2] @ k[:, :, :2].transpose(-1, -2) * cfg.attn_scale
    torch.testing.assert_close(excite - module.inhibition_map(q, k), net)
    assert (net < 0).any()  # inhibition wins somewhere


def test_lateral_energy_by_hand():
    cfg = HSTConfig(n_layer=1, n_embd=2, n_head=1, num_steps=1, attention="lateral")
    q = torch.tensor([[[[1, 0], [1, 1]], [[0, 1], [0, 0]]]], dtype=torch.float32)[:, None]  # Q_E, Q_I
    k = torch.tensor([[[[1, 1], [0, 1]], [[1, 0], [0, 0]]]], dtype=torch.float32)[:, None]  # K_E, K_I
    v = t([[1, 0], [1, 1]])
    # excitatory: Kᵀ V 2*1 + 1*2 = 4, Q 3 spikes x 2 = 6; inhibitory: 1*1 + 0 = 1, 1 spike x 2 = 2;
    # subtraction 4 adds; λ · and s · one MAC per output entry each: 8 MACs
    assert attention(cfg).matmul_ops(q, k, v) == (8.0, 4 + 6 + 1 + 2 + 4)


# -------------------------------------------------------------------------------------- emsp
def test_emsp_fc2_pays_only_for_gated_spikes_by_hand():
    cfg = HSTConfig(n_layer=1, n_embd=8, n_head=1, num_steps=2, mlp_ratio=2.0, mlp_kind="emsp", experts=4)
    mlp = ExpertsMixtureMLP(cfg, cfg.layer(0)).eval()
    with torch.no_grad():  # untrained BN in eval mode would silence every neuron: shift them awake
        gen = torch.Generator().manual_seed(0)
        mlp.norm1.bias.copy_(torch.rand(16, generator=gen) * 3)
        mlp.router.norm.bias.copy_(torch.tensor([0.0, 2.0, 0.5, 3.0]))
    seen = {}
    mlp.fc2.register_forward_hook(lambda m, i, o: seen.__setitem__("fc2_in", i[0]))
    mlp.neuron1.register_forward_hook(lambda m, i, o: seen.__setitem__("hidden", o))
    x = spikes(2, 1, 5, 8, rate=0.5)  # [T, B=1, N, D]
    with Recorder(mlp) as rec:
        report = energy_report(mlp, x, memory=False)
    gate = rec.gates[""]  # [T, B, N, m]
    assert gate.shape == (2, 1, 5, 4)
    gated = seen["hidden"].unflatten(-1, (4, 4)) * gate[..., None]  # [T, B, N, m, 16/m]
    assert torch.equal(seen["fc2_in"], gated.flatten(-2))
    nnz_x = float(x.count_nonzero())
    assert row(report, "router.linear")["acs"] == nnz_x * 4  # each input spike adds one weight per expert
    assert row(report, "fc1")["acs"] == nnz_x * 16
    assert row(report, "fc2")["acs"] == float(gated.count_nonzero()) * 8  # only the gated hidden spikes
    assert 0 < float(gated.count_nonzero()) < float(seen["hidden"].count_nonzero())  # the router closed a gate


# ------------------------------------------------------------------------- energy on whole models
@pytest.mark.parametrize("kind", NEW_KINDS)
def test_model_energy_prices_new_kinds_through_their_matmul_ops(kind):
    cfg = tiny(attention=kind)
    model = build_model(cfg).eval()
    module = model.blocks[0].attn.branch
    captured = {}
    for role in ("q", "k", "v"):
        getattr(module, f"{role}_probe").register_forward_hook(
            lambda m, i, o, role=role: captured.__setitem__(role, o.detach()))
    x = example_input(cfg, batch_size=1, rate=0.4)
    calibrate_batchnorm(model, example_input(cfg, batch_size=4, rate=0.4))  # wake the untrained neurons
    model.reset_state()
    report = energy_report(model, x, memory=False)
    assert not [u for u in report.unpriced if "attn" in u], report.unpriced
    assert captured["q"].count_nonzero() > 0 and captured["v"].count_nonzero() > 0  # real operands
    macs, acs = module.matmul_ops(captured["q"], captured["k"], captured["v"])
    parts = report.breakdown["blocks.0.attn.branch"]
    assert acs > 0 and parts["products_acs"] == pytest.approx(acs) and parts["products_macs"] == pytest.approx(macs)


# ---------------------------------------------------------------------------------- Recorder
def test_recorder_keeps_gates_of_expert_kinds_and_maps_of_every_new_kind():
    cfg = tiny(attention="emsa", experts=4, mlp_kind="emsp")
    model = build_model(cfg).eval()
    with Recorder(model) as rec:
        model(example_input(cfg, batch_size=2, rate=0.3))
    assert rec.gates["blocks.0.attn.branch"].shape == (2, 2, 16, 4)
    assert rec.gates["blocks.1.mlp.branch"].shape == (2, 2, 16, 4)
    torch.testing.assert_close(rec.gates["blocks.0.attn.branch"], model.blocks[0].attn.branch.last_gate)
    assert rec.attention["blocks.0.attn.branch"].shape == (2, 2, 4, 16, 16)  # one head per expert
    bip = build_model(tiny(attention="bipolar")).eval()
    with Recorder(bip) as rec:
        bip(example_input(cfg, batch_size=2, rate=0.3))
    sums = rec.attention["blocks.0.attn.branch"].sum(-1)
    assert ((sums > 0.5) & (sums <= 1.0)).all()  # Shiftmax rows


# -------------------------------------------------------------------- ablation and explorer
@pytest.mark.parametrize("step", ["+statten", "+emsa", "+emsp", "+bipolar", "+lateral"])
def test_new_kinds_work_as_ablation_steps(step):
    configs = ablation_configs("tiny", ("+tim", step))
    variant, change, cfg = configs[-1]
    assert variant == step and change != "no field changed"
    model = build_model(cfg)
    assert model(example_input(cfg, batch_size=2, rate=0.3)).shape == (2, cfg.num_classes)
    assert not same_network(configs[-2][2], cfg)


def test_explorer_layer_table_offers_and_builds_new_kinds(no_data):
    from hstlab.ui.state import LAYER_CHOICES, ExplorerState

    assert set(NEW_KINDS) <= set(LAYER_CHOICES["attention"]) and "emsp" in LAYER_CHOICES["mlp_kind"]
    state = ExplorerState(preset="tiny")
    state.set_layer(1, "attention", "lateral")
    assert state.error == "" and type(state.model.blocks[1].attn.branch).__name__ == "LateralInhibitionAttention"
    state.set_layer(0, "mlp_kind", "emsp")
    assert state.error == "" and type(state.model.blocks[0].mlp.branch).__name__ == "ExpertsMixtureMLP"
    state.set_layer(0, "attention", "bipolar")
    state.set_layer(0, "tim", True)
    assert "tim=True" in state.error and "bipolar" in state.error
