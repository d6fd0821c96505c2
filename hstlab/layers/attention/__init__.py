"""Attention kinds, chosen by name from the ``ATTENTION`` registry."""

from hstlab.layers.attention import (  # noqa: F401  (registers the kinds)
    bipolar,
    conv,
    emsa,
    lateral,
    qk,
    sdsa,
    softmax,
    spikegpt,
    ssa,
    statten,
)
from hstlab.layers.attention.base import ATTENTION, AttentionBase, SpikingAttention

__all__ = ["ATTENTION", "AttentionBase", "SpikingAttention"]
