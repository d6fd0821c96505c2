"""Generation with character models: recurrent state equals the full forward; sampling; bad input; CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from hstlab import HSTConfig, build_model
from hstlab.cli import main
from hstlab.generate import generate, generation_path, step_logits
from hstlab.layers.norm import calibrate_batchnorm
from hstlab.recorder import Recorder
from hstlab.train.checkpoint import atomic_save, make_checkpoint, run_checkpoint

VOCAB = "abcde"


def char_cfg(**overrides) -> HSTConfig:
    base = dict(attention="spikegpt", tokenizer="linear", head="sequence", input_shape=(5,), num_classes=5,
                seq_len=12, causal=True, pos_encoding="none", threshold=0.5)
    return HSTConfig.from_preset("tiny", **{**base, **overrides})


def calibrated(cfg: HSTConfig, dtype=torch.float64) -> torch.nn.Module:
    model = build_model(cfg).to(dtype)
    batch = F.one_hot(torch.randint(0, 5, (cfg.seq_len, 8)), 5).to(dtype)  # [L, B, V]
    calibrate_batchnorm(model, batch)
    return model.eval()


@pytest.mark.parametrize("overrides", [{}, {"pos_encoding": "cpg", "cpg_neurons": 8},
                                       {"residual": "membrane"}])
def test_recurrent_steps_equal_the_full_forward(overrides):
    model = calibrated(char_cfg(**overrides))
    ids = torch.randint(0, 5, (12,))
    model.reset_state()
    with torch.no_grad(), Recorder(model) as rec:
        full = model(F.one_hot(ids, 5).double().unsqueeze(1))[:, 0]  # [L, V]
    assert sum(float(s.sum()) for s in rec.spikes.values()) > 100  # the layers do spike
    with torch.no_grad():
        steps = step_logits(model, ids)
    torch.testing.assert_close(steps, full, rtol=0, atol=1e-10)
    assert all(m.stream is None for m in model.modules() if hasattr(m, "begin_stream"))  # streams closed


def test_generation_paths():
    spikegpt, ssa = build_model(char_cfg()), build_model(char_cfg(attention="ssa"))
    assert generation_path(spikegpt, 1000) == "recurrent"  # no positional encoding: unlimited
    assert generation_path(ssa, 5) == "window"
    with_pe = build_model(char_cfg(pos_encoding="cpg", cpg_neurons=8))
    assert generation_path(with_pe, 12) == "recurrent" and generation_path(with_pe, 13) == "window"
    mixed = build_model(char_cfg().with_layer(1, attention="ssa"))
    assert generation_path(mixed, 5) == "window"
    with pytest.raises(ValueError, match="recurrent"):
        step_logits(ssa, torch.tensor([0, 1]))


def greedy_by_rerun(model, prompt: str, steps: int) -> str:
    """Arg-max continuation computed by re-running the whole (windowed) text each step."""
    ids = [VOCAB.index(c) for c in prompt]
    for _ in range(steps):
        window = torch.tensor(ids[-model.cfg.seq_len:])
        model.reset_state()
        with torch.no_grad():
            ids.append(int(model(F.one_hot(window, 5).double().unsqueeze(1))[-1, 0].argmax()))
    return "".join(VOCAB[i] for i in ids[len(prompt):])


@pytest.mark.parametrize("attention", ["spikegpt", "ssa"])
def test_greedy_generation_matches_a_full_rerun(attention):
    torch.manual_seed(2)  # a model whose greedy text is not one repeated character
    model = calibrated(char_cfg(attention=attention))
    text = generate(model, "abcab", 7, temperature=0, vocab=VOCAB)  # 12 characters: within seq_len
    assert text == greedy_by_rerun(model, "abcab", 7) and len(set(text)) > 1
    assert generate(model, "abcab", 7, temperature=2.0, top_k=1, vocab=VOCAB) == text  # top-1 is greedy


def test_long_prompt_runs_in_chunks_and_sampling_is_seeded():
    model = calibrated(char_cfg())
    prompt = "abcde" * 6  # 30 characters > seq_len = 12
    assert generate(model, prompt, 5, temperature=0, vocab=VOCAB) == greedy_by_rerun_recurrent(model, prompt, 5)
    first = model.generate(prompt, 20, temperature=1.5, top_k=3, vocab=VOCAB, seed=3)
    assert first == model.generate(prompt, 20, temperature=1.5, top_k=3, vocab=VOCAB, seed=3)
    assert len(first) == 20 and set(first) <= set(VOCAB)
    assert model.training is False
    model.train()
    model.generate("ab", 2, vocab=VOCAB, seed=0)
    assert model.training is True  # mode restored


def greedy_by_rerun_recurrent(model, prompt: str, steps: int) -> str:
    ids = torch.tensor([VOCAB.index(c) for c in prompt])
    for _ in range(steps):
        with torch.no_grad():
            ids = torch.cat([ids, step_logits(model, ids)[-1].argmax().view(1)])
    return "".join(VOCAB[i] for i in ids[len(prompt):])


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,match", [
    ({"prompt": ""}, "prompt=''"),
    ({"prompt": "abz!"}, r"prompt contains 2 character\(s\) not in the model's vocabulary: '!', 'z'"),
    ({"steps": 0}, "steps=0 must be an integer >= 1"),
    ({"steps": -3}, "steps=-3"),
    ({"steps": 2.5}, "steps=2.5"),
    ({"steps": True}, "steps=True"),
    ({"temperature": -1.0}, "temperature=-1.0"),
    ({"temperature": float("nan")}, "temperature=nan"),
    ({"top_k": 0}, r"top_k=0 must be None or an integer in \[1, 5\]"),
    ({"top_k": 6}, "top_k=6"),
    ({"vocab": "abc"}, "vocab has 3 characters but the model reads and predicts num_classes=5"),
])
def test_bad_arguments_name_the_field(kwargs, match):
    model = build_model(char_cfg())
    args = {"prompt": "abc", "steps": 3, "vocab": VOCAB, **kwargs}
    with pytest.raises(ValueError, match=match):
        model.generate(args.pop("prompt"), args.pop("steps"), **args)


def test_generate_refuses_a_classification_model(tiny_cfg):
    with pytest.raises(ValueError, match="head='classify': generate needs a sequence model"):
        build_model(tiny_cfg).generate("ab", 3, vocab="ab")
    counts = build_model(char_cfg(num_classes=3))  # reads 5 channels, predicts 3
    with pytest.raises(ValueError, match=r"input_shape=\(5,\) and num_classes=3"):
        counts.generate("ab", 3, vocab="abc")
    bidirectional = build_model(char_cfg(attention="ssa", causal=False))
    with pytest.raises(ValueError, match="causal=False"):
        bidirectional.generate("ab", 3, vocab=VOCAB)


# ----------------------------------------------------------------------------------------- CLI
def text_chars_run(tmp_path, dataset="text-chars", cfg=None):
    from hstlab.generate import text_chars_vocab

    v = len(text_chars_vocab())
    cfg = cfg or char_cfg(input_shape=(v,), num_classes=v)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    atomic_save(make_checkpoint(build_model(cfg), cfg, {"builder": "hst-net"}), run_checkpoint(run_dir, new=True))
    (run_dir / "run.json").write_text(json.dumps({"dataset": dataset}))
    return run_dir


def test_cli_generates_from_a_run_dir(tmp_path, capsys):
    run_dir = text_chars_run(tmp_path)
    assert main(["generate", str(run_dir), "--prompt", "The ", "--steps", "7", "--top-k", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The ") and len(out.rstrip("\n")) >= 4  # 7 characters, some may be whitespace
    assert len(out) == len("The ") + 7 + 1


@pytest.mark.parametrize("extra,match", [
    (["--prompt", ""], "prompt=''"),
    (["--prompt", "caf\u00e9 \u2603"], "not in the model's vocabulary"),
    (["--prompt", "a", "--steps", "0"], "steps=0"),
    (["--prompt", "a", "--temperature", "-2"], "temperature=-2.0"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, match):
    run_dir = text_chars_run(tmp_path)
    assert main(["generate", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and match in err


def test_cli_refuses_classification_runs_and_missing_dirs(tmp_path, capsys, tiny_cfg):
    run_dir = text_chars_run(tmp_path, dataset="digits-dvs", cfg=tiny_cfg)
    assert main(["generate", str(run_dir), "--prompt", "a"]) == 2
    assert "trained on dataset 'digits-dvs'" in capsys.readouterr().err
    (run_dir / "run.json").unlink()  # no record of the data: the config decides
    assert main(["generate", str(run_dir), "--prompt", "a"]) == 2
    assert "head='classify'" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "nope"), "--prompt", "a"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_unseeded_generation_leaves_the_global_rng_alone():
    model = build_model(char_cfg())
    state = torch.get_rng_state()
    text = model.generate("ab", 4, vocab=VOCAB)
    assert len(text) == 4 and torch.equal(torch.get_rng_state(), state)
