"""Text generation with character models (text-chars): ``model.generate(prompt, steps, temperature, top_k)``.

A character model reads one-hot characters ``[L, B, V]`` and predicts the next one ``[L, B, V]``
(``head="sequence"``, causal). Two ways to get the logits of the next character:

- **recurrent** (every token-mixing layer is SpikeGPT-style, :class:`~hstlab.layers.attention.spikegpt.Streamed`):
  the prompt runs once, then each new character is one call on one token; the layers carry
  their recurrent state (token shift and ``wkv``) from call to call, neurons start afresh per
  token as in the full forward (each token's T steps are its own). The result equals the
  full-sequence forward (:func:`step_logits`, tested). With a positional encoding the total
  length must stay within ``seq_len``; with ``pos_encoding="none"`` it is unlimited.
- **window** (attention kinds, or a positional encoding shorter than the text): each new
  character re-runs the last ``seq_len`` characters (no KV cache: a spiking attention
  recomputes its spikes from the whole window anyway).

:func:`generation_path` says which one a model and length take.

Example:
    >>> from hstlab import HSTConfig, build_model
    >>> cfg = HSTConfig.from_preset("tiny", attention="spikegpt", tokenizer="linear", head="sequence",
    ...     input_shape=(3,), num_classes=3, seq_len=8, causal=True, pos_encoding="none")
    >>> text = build_model(cfg).generate("ab", steps=5, vocab="abc", seed=0)
    >>> len(text), set(text) <= set("abc")
    (5, True)
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from hstlab.config import HSTConfig

PATHS = ("recurrent", "window")


@functools.cache
def text_chars_vocab() -> tuple[str, ...]:
    """The text-chars vocabulary (every character of its corpus, sorted), as its dataset builds it."""
    from hstlab.data.text import corpus

    return tuple(sorted(set(corpus())))


def check_generation_model(model: nn.Module) -> HSTConfig:
    """The config of ``model`` if it can write characters, else ``ValueError`` naming the field."""
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, HSTConfig):
        raise ValueError(f"model must be an HSTNet (with .cfg), got {type(model).__name__}")
    if cfg.head != "sequence":
        raise ValueError(f"head={cfg.head!r}: generate needs a sequence model (head='sequence', a character "
                         "model such as one trained on text-chars), not a classifier")
    if cfg.input_shape[0] != cfg.num_classes:
        raise ValueError(f"input_shape={cfg.input_shape} and num_classes={cfg.num_classes}: generate needs a "
                         "character model that reads and predicts the same vocabulary (input_shape=(V,), "
                         "num_classes=V)")
    if not cfg.causal and not _all_streamed(model):
        raise ValueError("causal=False: generate needs causal attention (a model that sees only earlier "
                         "characters); train with causal=True")
    return cfg


def check_arguments(prompt: object, steps: object, temperature: object, top_k: object, vocab_size: int) -> None:
    """``ValueError`` naming the first bad argument of :func:`generate`."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt={prompt!r} must be a non-empty string (the text to continue)")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be an integer >= 1 (characters to generate)")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature={temperature!r} must be a finite number >= 0 (0: always the most likely)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or not 1 <= top_k <= vocab_size):
        raise ValueError(f"top_k={top_k!r} must be None or an integer in [1, {vocab_size}] (the vocabulary size)")


def encode(text: str, vocab: Sequence[str]) -> torch.Tensor:
    """Character indices ``[len(text)]`` (int64); characters outside ``vocab`` raise ``ValueError``
    naming ``prompt`` and listing them."""
    index = {c: i for i, c in enumerate(vocab)}
    unknown = sorted({c for c in text if c not in index})
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise ValueError(f"prompt contains {len(unknown)} character(s) not in the model's vocabulary: {shown} "
                         f"(the vocabulary has {len(vocab)} characters)")
    return torch.tensor([index[c] for c in text], dtype=torch.int64)


def _token_mixers(model: nn.Module) -> list[nn.Module]:
    from hstlab.layers.attention import AttentionBase

    return [m for m in model.modules() if isinstance(m, AttentionBase)]


def _all_streamed(model: nn.Module) -> bool:
    from hstlab.layers.attention.spikegpt import Streamed

    mixers = _token_mixers(model)
    return bool(mixers) and all(isinstance(m, Streamed) for m in mixers)


def generation_path(model: nn.Module, total_length: int) -> str:
    """``"recurrent"`` when every token mixer carries state and the positional encoding reaches
    ``total_length`` characters, else ``"window"`` (re-run the last ``seq_len`` characters)."""
    cfg = model.cfg
    if _all_streamed(model) and (cfg.pos_encoding == "none" or total_length <= cfg.seq_len):
        return "recurrent"
    return "window"


@contextlib.contextmanager
def streaming(model: nn.Module) -> Iterator[None]:
    """Every :class:`Streamed` module of ``model`` carries its state between calls inside the block."""
    from hstlab.layers.attention.spikegpt import Streamed

    streamed = [m for m in model.modules() if isinstance(m, Streamed)]
    for m in streamed:
        m.begin_stream()
    try:
        yield
    finally:
        for m in streamed:
            m.end_stream()


def _one_hot(ids: torch.Tensor, model: nn.Module) -> torch.Tensor:
    weight = model.head.weight
    return F.one_hot(ids, model.cfg.input_shape[0]).to(weight.dtype).to(weight.device).unsqueeze(1)  # [L, 1, V]


def _run(model: nn.Module, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Logits ``[L, V]`` of one call on ``ids`` ``[L]`` (neurons reset first)."""
    model.reset_state()
    return model(_one_hot(ids, model), offset=offset)[:, 0]  # [L, V]


def step_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-character logits ``[L, V]`` for ``ids`` ``[L]``, computed one character per call with
    the recurrent state carried (the recurrent path of :func:`generate`; needs a streamed model)."""
    if not _all_streamed(model):
        raise ValueError("step_logits needs a model whose token mixing is recurrent (attention='spikegpt' "
                         "in every layer)")
    with streaming(model):
        return torch.cat([_run(model, ids[i: i + 1], offset=i) for i in range(len(ids))])  # [L, V]


def sample(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> int:
    """One index from ``logits`` ``[V]``: the arg-max at temperature 0, else a draw from
    ``softmax(logits / temperature)`` over the ``top_k`` largest (all if None)."""
    logits = logits.detach().double().cpu()  # [V]
    if temperature == 0:
        return int(logits.argmax())
    if top_k is not None:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits / temperature, dim=0)  # [V]
    return int(torch.multinomial(probs, 1, generator=generator))


def generate(model: nn.Module, prompt: str, steps: int, temperature: float = 1.0, top_k: int | None = None, *,
             vocab: Sequence[str] | None = None, seed: int | None = None) -> str:
    """The ``steps`` characters ``model`` writes after ``prompt`` (the prompt is not repeated).

    ``vocab``: the characters of the model's one-hot input, in index order (default: the text-chars
    vocabulary). ``seed`` fixes the draws. Runs in eval mode without gradients and restores the
    model's mode; bad arguments raise ``ValueError`` naming the field.
    """
    cfg = check_generation_model(model)
    vocab = tuple(text_chars_vocab() if vocab is None else vocab)
    if len(vocab) != cfg.num_classes:
        raise ValueError(f"vocab has {len(vocab)} characters but the model reads and predicts "
                         f"num_classes={cfg.num_classes}; pass the vocabulary it was trained with")
    check_arguments(prompt, steps, temperature, top_k, len(vocab))
    ids = encode(prompt, vocab)  # [P]
    generator = torch.Generator()
    generator.manual_seed(int(seed)) if seed is not None else generator.seed()  # the global RNG is left alone
    path = generation_path(model, len(ids) + steps)
    was_training = model.training
    model.eval()
    out: list[int] = []
    try:
        with torch.no_grad(), (streaming(model) if path == "recurrent" else contextlib.nullcontext()):
            if path == "recurrent":
                logits = torch.cat([_run(model, ids[i: i + cfg.seq_len], offset=i)
                                    for i in range(0, len(ids), cfg.seq_len)])[-1]  # prompt in chunks
            else:
                logits = _run(model, ids[-cfg.seq_len:])[-1]
            for n in range(steps):
                out.append(sample(logits, float(temperature), top_k, generator))
                if n == steps - 1:
                    break
                if path == "recurrent":
                    logits = _run(model, torch.tensor(out[-1:]), offset=len(ids) + n)[-1]
                else:
                    window = torch.cat([ids, torch.tensor(out, dtype=torch.int64)])[-cfg.seq_len:]
                    logits = _run(model, window)[-1]
    finally:
        model.train(was_training)
        model.reset_state()
    return "".join(vocab[i] for i in out)
