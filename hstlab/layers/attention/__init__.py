"""Attention kinds, chosen by name from the ``ATTENTION`` registry."""

from hstlab.layers.attention import conv, qk, sdsa, softmax, spikegpt, ssa  # noqa: F401  (registers the kinds)
from hstlab.layers.attention.base import ATTENTION, AttentionBase, SpikingAttention

__all__ = ["ATTENTION", "AttentionBase", "SpikingAttention"]
