"""One-line explanations of hstlab's fields and terms: the one table the explorer's tooltips read.

Keys are config and training field names (``tokenizer_mode``, ``limit``), the values a field
takes (``ssa``, ``sew_add``, ``step-major``) and the names of the explorer's plots
(``plot:attention``). :func:`explain` joins a field's line with the lines of its choices, so
a tooltip says what the field is and what each option does.

Example:
    >>> explain("tim").split(":")[0]
    'TIM (temporal interaction module)'
    >>> "SDSA" in explain("attention")
    True
    >>> explain("no-such-field")
    Traceback (most recent call last):
    ...
    KeyError: "no explanation for 'no-such-field'; see hstlab.glossary.GLOSSARY"
"""

from __future__ import annotations

from hstlab.config import (
    ATTENTION_KINDS,
    MLP_KINDS,
    NEURONS,
    POS_ENCODINGS,
    RESIDUALS,
    SURROGATES,
    TOKENIZERS,
)
from hstlab.energy.constants import DATAFLOWS

GLOSSARY: dict[str, str] = {
    # ---- model fields
    "preset": "a named starting config (hstlab presets lists them); every field below can then be edited",
    "pretrained": "a trained model of the zoo (hstlab zoo list): its config and trained weights",
    "n_layer": "depth: the number of transformer blocks",
    "n_embd": "width D: channels of every token (must divide by the number of heads)",
    "n_head": "attention heads; each head sees D / heads channels",
    "num_steps": "T: time steps the network runs per sample (input frames are spread over them)",
    "tokenizer_mode": "the stem (tokenizer) on its own: spiking, standard, or following layer 0's "
                      "attention mode",
    "tokenizer": "how input becomes tokens",
    "pos_encoding": "positional code added to the tokens",
    "neuron": "spiking neuron model of every spiking layer",
    "surrogate": "the smooth stand-in for the spike's step function used in the backward pass",
    "weight_bits": "bits per weight (32: float; fewer: quantization-aware, cheaper memory and MACs)",
    "membrane_bits": "bits per stored membrane potential (memory traffic of the neurons)",
    "attn_mode": "spiking: spike inputs, accumulate-only ops (AC); standard: real values, MACs",
    "mlp_mode": "spiking or standard MLP of this block (the same trade-off as attention mode)",
    "attention": "the attention kind of this block",
    "mlp_kind": "the spiking MLP of this block (a standard MLP half is always the GELU MLP)",
    "attn_block": "STAtten's block: time steps attended together (divides T)",
    "experts": "number of spiking experts of EMSA / EMSP (divides the width it splits)",
    "tim": "TIM (temporal interaction module): mixes each step's query with a convolution of "
           "the previous step's, so attention sees time",
    "residual": "how the block's shortcut joins its branch",
    "mask_ratio": "masking: the fraction of tokens dropped at random in training (0: off)",
    "dataflow": "memory dataflow of the energy model: " + "; ".join(
        f"{name}: {text}" for name, text in (
            ("step-major", "weights and membranes are moved at every time step"),
            ("time-batched", "each layer runs over all T steps, reading weights and membranes once"),
            ("fused", "also runs activations and neurons inside the Linear/Conv before them, so "
                      "that output is never written"),
        )),
    "dataset": "the event dataset the sample comes from (inputs for Inspect and Energy)",
    "sample_index": "which validation sample is shown and measured",
    # ---- training settings
    "limit": "samples per split: the first N samples of the train split and, separately, of the "
             "val split (a number above a split's size uses all of it)",
    "batch_size": "samples per optimizer step",
    "epochs": "passes over the training samples",
    "lr": "peak learning rate of AdamW (warm-up, then cosine decay)",
    # ---- choices
    "spiking": "binary spikes between layers; adds replace multiplies (ACs)",
    "standard": "real-valued activations (a standard transformer layer, MACs)",
    "ssa": "SSA: Spikformer's spiking self-attention, Q·Kᵀ·V on spikes, no softmax",
    "sdsa": "SDSA: spike-driven self-attention (SDT), Q ⊙ SN(Σ over tokens of K ⊙ V): linear in "
            "tokens, no multiplies",
    "qk": "QK (QKFormer): a binary token mask from Q applied to K; no V, linear in tokens",
    "qk_channel": "QK (QKFormer) with the binary mask taken over channels instead of tokens",
    "conv": "conv: Q, K and V from a depth-wise convolution over the tokens (locality-aware "
            "attention)",
    "softmax": "softmax attention (as in a standard transformer)",
    "statten": "STAtten: SSA over blocks of time steps × tokens, Q·(Kᵀ·V) order (block 1 is SSA)",
    "emsa": "EMSA (SEMM): spiking experts, one head each, gated per token by a spiking router; "
            "no softmax, no top-k",
    "bipolar": "bipolar: ternary Q and K in {-1, 0, 1} and Shiftmax (power-of-two softmax) rows",
    "lateral": "lateral (SpiLiFormer): an inhibitory Q·Kᵀ map subtracted from the excitatory one",
    "spikegpt": "SpikeGPT: an RWKV-style recurrence over tokens with spiking gates (always causal; "
                "its MLP is the spiking channel mix)",
    "mlp": "mlp: the spiking two-layer MLP (Spikformer)",
    "emsp": "EMSP (SEMM): the MLP's hidden channels in expert groups, each gated by a spiking router",
    "sps": "SPS: Spikformer's conv stem (convs, BatchNorm, pooling) from frames to patches",
    "events": "events: patches of event frames, linearly projected",
    "linear": "linear: a sequence of vectors projected to tokens (no frames)",
    "cpg": "CPG-PE: a central-pattern-generator code, spiking oscillators per position",
    "sincos": "sin/cos: the transformer's sinusoidal positional code",
    "learned": "a learned vector per position",
    "none": "no positional code",
    "add": "add: x + f(x) on real values",
    "sew_add": "SEW add: spike-element-wise residual, spikes added (may exceed 1)",
    "sew_and": "SEW AND: spikes joined by logical AND",
    "sew_iand": "SEW IAND: (NOT x) AND f(x), passes new spikes only",
    "membrane": "membrane shortcut (SDT): add real values before the neuron",
    "lif": "LIF: leaky integrate-and-fire",
    "plif": "PLIF: LIF with a learned leak",
    "alif": "ALIF: LIF with an adaptive threshold",
    "ilif": "I-LIF: integer spikes clip(round(U), 0, D) in training, D binary virtual steps at "
            "inference",
    "ternary": "ternary: spikes in {-α, 0, α} with a learnable α (signed accumulates)",
    "atan": "atan surrogate (Spikformer's default)",
    "sigmoid": "sigmoid surrogate",
    "fast_sigmoid": "fast-sigmoid surrogate (SuperSpike)",
    "triangle": "triangle surrogate",
    # ---- what the explorer's plots show
    "plot:events": "The input: event frames of the chosen sample (ON/OFF polarity), one per "
                   "input step.",
    "plot:spikes": "Which neurons of the layer fire at each time step (raster), their membrane "
                   "potentials against the threshold, and each layer's firing rate.",
    "plot:attention": "One head's attention map (query tokens × key tokens). Spiking maps count "
                      "Q-K spike overlaps; at t = 0 they are empty while the neurons charge, "
                      "so the mean over steps is shown by default.",
    "plot:compare": "The same sample through the trained spiking model and its trained standard "
                    "twin.",
    "plot:posenc": "The positional code each token position gets (CPG-PE or sin/cos).",
    "plot:energy_compare": "Energy per sample of this model and its variants on the same input; "
                           "the bar axis starts at 0.",
    "plot:energy_layers": "Energy and operations per layer (layers that cost nothing are left out).",
    "plot:training": "Training loss and accuracy per step; validation points are marked per epoch.",
}
_CHOICES: dict[str, tuple] = {
    "attention": ATTENTION_KINDS,
    "mlp_kind": MLP_KINDS,
    "tokenizer": TOKENIZERS,
    "pos_encoding": POS_ENCODINGS,
    "residual": RESIDUALS,
    "neuron": NEURONS,
    "surrogate": SURROGATES,
    "attn_mode": ("spiking", "standard"),
    "mlp_mode": ("spiking", "standard"),
}


def explain(key: str) -> str:
    """The line for ``key``, followed by the lines of its choices (raises ``KeyError`` if none)."""
    if key not in GLOSSARY:
        raise KeyError(f"no explanation for {key!r}; see hstlab.glossary.GLOSSARY")
    choices = [GLOSSARY[c] for c in _CHOICES.get(key, ()) if c in GLOSSARY]
    return "; ".join([GLOSSARY[key], *choices])


def missing() -> list[str]:
    """Choices of the config's registries without a line here (a test keeps this empty)."""
    names = {c for values in _CHOICES.values() for c in values} | set(DATAFLOWS)
    return sorted(n for n in names if n not in GLOSSARY and n not in DATAFLOWS)
