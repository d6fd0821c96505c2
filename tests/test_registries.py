"""Every registry name builds and runs, timm style: tests are parametrized over the registries.

Registries whose names the config and the CLI need without torch are *declared*: their names
are the tuples in ``hstlab.config`` (or ``hstlab.train.config``) and each torch module registers
its implementation under a declared name. Here: every declared name has exactly one
implementation, and every name of every registry builds a tiny model or layer that runs.
"""

from __future__ import annotations

import pytest
import torch

from hstlab import HSTConfig, StageSpec, build_model, example_input
from hstlab import config as C
from hstlab.data.encode import ENCODERS, spike_encode
from hstlab.layers.attention import ATTENTION
from hstlab.layers.mlp import MLPS
from hstlab.layers.posenc import POS_ENCODINGS
from hstlab.layers.residual import RESIDUALS
from hstlab.layers.tokenizers import TOKENIZERS
from hstlab.model import HSTNet  # noqa: F401  (imports every layer module, so all kinds register)
from hstlab.neurons import NEURONS, SURROGATES
from hstlab.registry import Registry
from hstlab.staged import EMBEDS
from hstlab.train.config import REGULARISER_NAMES
from hstlab.train.regularisers import REGULARISERS, build_regulariser

DECLARED: dict[str, tuple[Registry, tuple[str, ...]]] = {
    "attention": (ATTENTION, C.ATTENTION_KINDS),
    "mlp_kind": (MLPS, C.MLP_KINDS),
    "neuron": (NEURONS, C.NEURONS),
    "surrogate": (SURROGATES, C.SURROGATES),
    "tokenizer": (TOKENIZERS, C.TOKENIZERS),
    "pos_encoding": (POS_ENCODINGS, C.POS_ENCODINGS),
    "residual": (RESIDUALS, C.RESIDUALS),
    "stage embed": (EMBEDS, C.STAGE_EMBEDS),
    "regulariser": (REGULARISERS, tuple(n for n in REGULARISER_NAMES if n != "none")),
}
# Extra fields a kind needs to run at tiny size (everything else is the "tiny" preset).
NEEDS: dict[tuple[str, str], dict] = {
    ("attention", "statten"): dict(num_steps=4, attn_block=2),
    ("tokenizer", "linear"): dict(input_shape=(6,), seq_len=5),
}


def tiny(field: str, name: str) -> HSTConfig:
    return HSTConfig.from_preset("tiny", **{field: name}, **NEEDS.get((field, name), {}))


def run(cfg: HSTConfig) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(cfg)
    out = model(example_input(cfg, batch_size=2))
    assert torch.isfinite(out).all(), f"{cfg.name}: non-finite output"
    return out


@pytest.mark.parametrize("kind", DECLARED)
def test_declared_names_have_exactly_one_implementation(kind: str) -> None:
    registry, declared = DECLARED[kind]
    assert registry.declared == declared, f"{kind} registry is not built from its declared names"
    assert registry.names() == declared
    assert registry.unregistered() == (), f"{kind} names {registry.unregistered()} have no implementation"
    for name in declared:
        assert registry.get(name) is not None  # registered twice raises at import; get finds each one


def test_a_declared_registry_refuses_an_undeclared_name_and_a_missing_implementation() -> None:
    reg: Registry[int] = Registry("demo", declared=("a", "b"))
    reg.register("a")(1)
    with pytest.raises(KeyError, match="'c' is not declared; declared: a, b"):
        reg.register("c")
    with pytest.raises(KeyError, match="registered twice"):
        reg.register("a")(2)
    with pytest.raises(LookupError, match="'b' is declared but its implementation was never registered"):
        reg.get("b")
    with pytest.raises(ValueError, match="unknown demo 'z'; allowed: a, b"):
        reg.get("z")
    with pytest.raises(ValueError, match="repeat"):
        Registry("demo", declared=("a", "a"))


MODEL_FIELDS = {"attention": ATTENTION, "mlp_kind": MLPS, "neuron": NEURONS, "tokenizer": TOKENIZERS,
                "pos_encoding": POS_ENCODINGS, "residual": RESIDUALS}
MODEL_CASES = [(field, name) for field, registry in MODEL_FIELDS.items() for name in registry.names()]


@pytest.mark.parametrize("field, name", MODEL_CASES, ids=[f"{f}={n}" for f, n in MODEL_CASES])
@pytest.mark.parametrize("modes", ["S", "ST"])
def test_every_model_component_builds_and_runs(field: str, name: str, modes: str) -> None:
    cfg = tiny(field, name).with_modes(modes * (2 // len(modes)))
    out = run(cfg)
    assert out.shape[-1] == cfg.num_classes, f"{field}={name}: output {tuple(out.shape)}"


@pytest.mark.parametrize("name", SURROGATES.names())
def test_every_surrogate_trains_a_tiny_model(name: str) -> None:
    cfg = tiny("surrogate", name)
    torch.manual_seed(0)
    model = build_model(cfg)
    model(example_input(cfg, rate=0.3)).square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads), f"surrogate={name}: no gradient reaches the weights"


@pytest.mark.parametrize("name", EMBEDS.names())
def test_every_stage_embed_builds_and_runs(name: str) -> None:
    stages = (StageSpec(depth=1, n_embd=8, n_head=1, kind="conv"),
              StageSpec(depth=1, n_embd=16, n_head=2, attention="ssa", embed=name))
    cfg = HSTConfig.from_preset("tiny").with_stages(stages)
    out = run(cfg)
    assert out.shape == (2, cfg.num_classes)


@pytest.mark.parametrize("name", REGULARISERS.names())
def test_every_regulariser_penalises_a_tiny_model(name: str) -> None:
    cfg = HSTConfig.from_preset("tiny")
    model = build_model(cfg)
    regulariser = build_regulariser(name, weight=1.0)
    regulariser.attach(model)
    try:
        model(example_input(cfg, rate=0.3))
        penalty = regulariser.penalty()
    finally:
        regulariser.close()
    assert penalty.ndim == 0 and torch.isfinite(penalty) and penalty >= 0


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_spike_encoding_runs(name: str) -> None:
    x = torch.linspace(0, 1, 12).reshape(4, 3)  # delta reads dim 0 as time: T = 4
    spikes = spike_encode(x, name, num_steps=4)
    assert spikes.shape[0] == 4 and torch.isfinite(spikes).all()
