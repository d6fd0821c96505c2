"""What a layer's input is: spikes, spike counts, or real values.

A binary tensor is priced as spikes. A non-binary tensor of non-negative integers is priced as
spike counts (a count c on one synapse = c accumulates) only when it comes from spikes: a neuron's
output, the model's input declared as counts, or what sums, copies and reshapes make of those
(SEW-ADD residuals give 0/1/2). Anything else (raw 0-255 pixels, a float MLP's activations) is
real-valued and costs MACs. The tracker follows tensors by identity while one forward pass runs:
neurons and the model input are tagged by the counters, and every torch op seen by the op watcher
passes its inputs' tags on to its outputs when it keeps values or sums them.

Example:
    >>> prov = Provenance()
    >>> spikes = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    >>> prov.tag(spikes, SPIKES)
    >>> total = spikes + spikes  # 0/2 values: a SEW-ADD sum of spikes
    >>> prov.observe(torch.Tensor.__add__, (spikes, spikes), {}, total)
    >>> prov.kind_of(total), prov.kind_of(total.clone().mul_(1.0)), prov.kind_of(torch.tensor([3.0]))
    ('counts', 'real', 'real')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.weak import WeakIdKeyDictionary

from hstlab.energy.stats import is_binary, is_spike_count  # noqa: F401  (re-exported)

# energy_report(input_kind=...): how the model's own input is priced
INPUT_KINDS: dict[str, str] = {
    "auto": "spikes when binary, spike counts when the model declares counts (input_kind attribute or "
            "its config's tokenizer) and the values are non-negative integers, real values otherwise",
    "spikes": "binary spikes (every value 0 or 1)",
    "counts": "spike or event counts (non-negative integers: a count c is c accumulates)",
    "real": "real values: dense MACs even when binary",
}
# what an hstlab config's tokenizer takes as input, when the model does not say (input_kind attribute)
TOKENIZER_INPUT_KINDS: dict[str, str] = {"sps": "counts", "events": "counts"}

# provenance tags
SPIKES, COUNTS, REAL, WEIGHT = "spikes", "counts", "real", "weight"
SIGNED = "signed"  # ternary spikes {-α, 0, α}: each non-zero entry is one event (a signed accumulate)

# ops whose output holds values of their inputs (views, copies, concatenation, indexing, max-pooling)
VALUE_OPS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute", "transpose", "t", "mT",
    "contiguous", "clone", "detach", "to", "float", "double", "half", "bfloat16", "bool", "int", "long", "type",
    "type_as", "__getitem__", "unsqueeze", "squeeze", "expand", "expand_as", "cat", "concat", "concatenate",
    "stack", "chunk", "split", "tensor_split", "unbind", "narrow", "select", "movedim", "moveaxis", "repeat",
    "repeat_interleave", "roll", "flip", "index_select", "gather", "pad", "dropout", "max_pool1d",
    "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices", "__setitem__",
})
# ops that add or combine spikes into counts (their result is checked for non-negative integers anyway);
# a product of two spike tensors counts the spike pairs that meet
ARITH_OPS = frozenset({
    "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv", "dot", "einsum",
    "add", "__add__", "__radd__", "__iadd__", "add_", "sum", "cumsum", "sub", "__sub__", "__rsub__", "rsub",
    "__isub__", "sub_", "mul", "__mul__", "__rmul__", "__imul__", "mul_", "maximum", "minimum", "max", "min",
    "clamp", "clamp_", "relu", "abs", "logical_or", "logical_and", "__or__", "__and__", "bitwise_or",
    "bitwise_and",
})


def check_input_kind(kind: str) -> str:
    """``kind`` if it is one of ``INPUT_KINDS``; else ``ValueError`` naming the allowed values."""
    if kind not in INPUT_KINDS:
        raise ValueError(f"input_kind={kind!r} is not allowed; allowed: {', '.join(INPUT_KINDS)}")
    return kind


def is_signed_spikes(x: torch.Tensor) -> bool:
    """True when every non-zero entry has the same magnitude α (ternary spikes {-α, 0, α}).

    Example:
        >>> is_signed_spikes(torch.tensor([0.5, -0.5, 0.0])), is_signed_spikes(torch.tensor([1.0, 2.0]))
        (True, False)
    """
    if not x.is_floating_point() or x.numel() == 0:
        return False
    mags = x.detach().abs()
    nonzero = mags[mags != 0]
    return nonzero.numel() == 0 or bool((nonzero == nonzero[0]).all())


def events(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The events a layer reading ``x`` as ``kind`` accumulates: ``x`` for spikes and counts, and
    ``x != 0`` (as ``x``'s dtype) for signed spikes, whose every non-zero entry is one event."""
    return x.ne(0).to(x.dtype) if kind == SIGNED else x


def tensors(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors in ``obj``, looking inside (nested) tuples, lists and mappings."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from tensors(item)
    elif isinstance(obj, Mapping):
        for item in obj.values():
            yield from tensors(item)


class Provenance:
    """Tags tensors as spikes, counts, real (the declared model input) or weights, by identity."""

    def __init__(self) -> None:
        self._tags: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def tag(self, x: Any, kind: str) -> None:
        for t in tensors(x):
            self._tags[t] = kind

    def get(self, x: torch.Tensor) -> str | None:
        return self._tags.get(x)

    def kind_of(self, x: torch.Tensor) -> str:
        """How a layer reading ``x`` prices it: ``"spikes"``, ``"counts"``, ``"signed"`` (ternary spikes
        of a neuron, each non-zero entry one event) or ``"real"``."""
        tag = self.get(x)
        if tag == REAL:
            return REAL
        if is_binary(x):
            return SPIKES
        if tag in (SPIKES, COUNTS) and is_spike_count(x):
            return COUNTS
        if tag == SPIKES and is_signed_spikes(x):
            return SIGNED
        return REAL

    def clear(self) -> None:
        self._tags = WeakIdKeyDictionary()

    def _combined(self, name: str, inputs: list[torch.Tensor]) -> str | None:
        """The tag an op called ``name`` passes on from ``inputs`` (None: its output is untagged)."""
        value_op, arith_op = name in VALUE_OPS, name in ARITH_OPS
        if not (value_op or arith_op):
            return None
        tags = set()
        for t in inputs:
            if t.dim() == 0:  # a scalar operand: a threshold or a scale, not data
                continue
            tag = self._tags.get(t)
            if tag is None and is_binary(t):
                tag = SPIKES  # a 0/1 mask or spike code (a binary tensor is spikes by its values)
            if tag is None:
                return None
            tags.add(tag)
        if not tags:
            return None
        if tags <= {SPIKES, COUNTS}:
            return COUNTS if arith_op or tags != {SPIKES} else SPIKES
        if value_op and len(tags) == 1:  # the declared real input and weights keep their tag through copies
            return next(iter(tags))
        return None

    def observe(self, func: Any, args: tuple, kwargs: dict, result: Any) -> None:
        """One torch op ran: tag its outputs (or, in place, its destination) from its data inputs."""
        name = getattr(func, "__name__", "")
        destinations = list(tensors(kwargs.get("out"))) if "out" in kwargs else []
        in_place = bool(destinations) or name in _IN_PLACE_DUNDERS or (
            name.endswith("_") and not name.endswith("__"))
        if not in_place and name not in VALUE_OPS and name not in ARITH_OPS:
            return  # a new, untagged output
        inputs = _data_inputs(name, args, kwargs)
        targets = destinations or (list(tensors(args[:1])) if in_place else list(tensors(result)))
        if not targets:
            return
        tagged = any(t in self._tags or t.dtype == torch.bool for t in inputs)
        if not tagged and not in_place:
            return  # untagged inputs make untagged, new outputs
        tag = self._combined(name, inputs) if tagged else None
        for t in targets:
            if tag is None:
                self._tags.pop(t, None)
            else:
                self._tags[t] = tag


_IN_PLACE_DUNDERS = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__",
                               "__imod__", "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__",
                               "__irshift__", "__imatmul__"})
_INDEXING_OPS = frozenset({"__getitem__", "index_select", "gather", "narrow", "select", "repeat_interleave"})


def _data_inputs(name: str, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensors whose values an op passes on (indices and masks of indexing ops are not data)."""
    if name in _INDEXING_OPS:
        return list(tensors(args[:1]))
    if name == "__setitem__":
        return [t for t in (args[0], args[2] if len(args) > 2 else None) if isinstance(t, torch.Tensor)]
    return list(tensors((args, tuple(v for k, v in kwargs.items() if k != "out"))))
