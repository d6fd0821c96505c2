"""Which activations a fused epilogue keeps in registers (the ``"fused"`` dataflow).

A Linear/Conv output that flows (through folded BatchNorm, pooling, dropout or views) into an
activation function or a spiking neuron can be consumed inside the producing kernel: the consumer's
read of it is saved, and, when nothing else reads that output, so is the producer's write. The
tracker follows outputs by their storage while one forward pass runs. Reads by hooked modules are
reported by their counters; every other torch op on a followed output (a residual add, a copy) is
seen by the op watcher of :class:`~hstlab.energy.counting.OpCounter` (a ``TorchFunctionMode``),
which calls :meth:`EpilogueTracker.observe`, and counts as one more reader, so the write is kept.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from hstlab.energy.counting import LayerTally

# torch functions that look at a tensor's metadata or allocate a tensor like it, without reading its data
_NO_DATA_READ = frozenset({
    "__get__", "size", "dim", "ndimension", "numel", "nelement", "stride", "storage_offset", "element_size",
    "is_contiguous", "is_floating_point", "is_complex", "get_device", "data_ptr", "untyped_storage", "__len__",
    "__hash__", "empty_like", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "new_empty",
    "new_zeros", "new_ones", "new_full", "new_tensor",
})


@dataclass(eq=False)
class _Output:
    """One followed Linear/Conv output: who wrote it, how many bits, who read it."""

    producer: LayerTally
    write_bits: float
    readers: int = 0
    fused_reader: LayerTally | None = None
    fused_read_bits: float = 0.0


class EpilogueTracker:
    """Follows Linear/Conv outputs to their readers during one forward pass.

    Counters call :meth:`produced`, :meth:`alias` and :meth:`read`; :meth:`observe` sees the torch
    ops that run outside counted modules; :meth:`settle` writes the savings into the tallies'
    ``fused_bits`` and forgets the pass.

    Example:
        >>> from hstlab.energy.counting import LayerTally
        >>> linear, relu = LayerTally("fc", "linear"), LayerTally("act", "relu")
        >>> tracker = EpilogueTracker()
        >>> y = torch.ones(2, 3)
        >>> tracker.produced(y, linear, write_bits=6 * 32)
        >>> tracker.read(y, relu, read_bits=6 * 32, fusable=True)
        >>> tracker.settle()
        >>> linear.fused_bits, relu.fused_bits
        (192.0, 192.0)
    """

    def __init__(self) -> None:
        self._outputs: dict[tuple[str, int], _Output] = {}  # by storage address
        self._followed: list[_Output] = []
        # an address is forgotten when its storage is freed, so a new tensor at a reused address is not
        # taken for a followed output: a finalizer on the storage (torch keeps one Python object per live
        # storage), or, where torch does not, the storage held until the pass ends (the pass's peak
        # memory then grows by the sum of the followed outputs)
        self._finalizers: list[weakref.finalize] = []
        self._storages: list[Any] = []
        self.depth = 0  # > 0 while a counted module runs (its own ops are its counter's business)

    @staticmethod
    def _key(x: torch.Tensor) -> tuple[str, int] | None:
        if x.numel() == 0:
            return None
        return (str(x.device), x.untyped_storage().data_ptr())

    def _follow(self, out: torch.Tensor, key: tuple[str, int], followed: _Output) -> None:
        self._outputs[key] = followed
        storage = out.untyped_storage()
        if _STORAGE_OBJECTS_PRESERVED:
            self._finalizers.append(weakref.finalize(storage, self._freed, key, followed))
        else:
            self._storages.append(storage)

    def _freed(self, key: tuple[str, int], followed: _Output) -> None:
        """The storage at ``key`` was freed: its address may hold another tensor from now on."""
        if self._outputs.get(key) is followed:
            del self._outputs[key]

    def _find(self, x: Any) -> _Output | None:
        if not isinstance(x, torch.Tensor):
            return None
        key = self._key(x)
        return self._outputs.get(key) if key is not None else None

    def produced(self, out: torch.Tensor, producer: LayerTally, write_bits: float) -> None:
        """``out`` was just written by ``producer`` (``write_bits`` of traffic)."""
        key = self._key(out)
        if key is not None:
            self._followed.append(_Output(producer, float(write_bits)))
            self._follow(out, key, self._followed[-1])

    def alias(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """``out`` is ``x`` passed through a free layer (folded BatchNorm, pooling): the same output."""
        followed, key = self._find(x), self._key(out)
        if followed is not None and key is not None and key not in self._outputs:
            self._follow(out, key, followed)

    def read(self, x: Any, reader: LayerTally | None, read_bits: float = 0.0, fusable: bool = False) -> None:
        """``reader`` reads ``x`` (``read_bits``); ``fusable``: it can run in the producer's epilogue."""
        followed = self._find(x)
        if followed is None:
            return
        followed.readers += 1
        if fusable and followed.fused_reader is None and reader is not None:
            followed.fused_reader, followed.fused_read_bits = reader, float(read_bits)

    def returned(self, result: Any) -> None:
        """The model returned ``result``: its caller reads every tensor in it from memory."""
        with self.paused():
            for t in _tensors(result):
                self.read(t, None)

    def wrote(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """A counted layer read ``x`` and wrote ``out``; written in place (e.g. ``ReLU(inplace=True)``), the
        storage holds that layer's output now."""
        key = self._key(out)
        if key is not None and key == self._key(x):
            self.overwritten(out)

    def overwritten(self, x: torch.Tensor) -> None:
        """``x``'s storage now holds new values (an in-place layer wrote its output there): stop following it,
        so its later readers read that layer's output, not the Linear/Conv's."""
        key = self._key(x)
        if key is not None:
            self._outputs.pop(key, None)

    def settle(self) -> None:
        """Credit the fused reads (and the writes of outputs with a single reader); forget the pass."""
        for followed in self._followed:
            if followed.fused_reader is None:
                continue
            followed.fused_reader.fused_bits += followed.fused_read_bits
            if followed.readers == 1:
                followed.producer.fused_bits += followed.write_bits
        self._outputs.clear()
        self._followed.clear()
        self._storages.clear()
        for finalizer in self._finalizers:
            finalizer.detach()
        self._finalizers.clear()

    def enter(self) -> None:
        """A counted module starts: its ops are its counter's business, not watched (until :meth:`leave`)."""
        self.depth += 1

    def leave(self) -> None:
        self.depth -= 1

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Ops inside (a counter's own bookkeeping) are not watched."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def observe(self, func: Any, args: tuple, kwargs: dict, result: Any) -> None:
        """One op outside counted modules: views, metadata queries and ``*_like`` allocations pass; any other
        op reads its followed inputs (an in-place op or ``x[...] = ...`` also ends the following of what it
        overwrites)."""
        name = getattr(func, "__name__", "")
        if name in _NO_DATA_READ:
            return
        destinations = list(_tensors(kwargs.get("out")))
        inputs = list(_tensors((args, tuple(v for k, v in kwargs.items() if k != "out"))))
        followed = [f for f in (self._find(t) for t in inputs) if f is not None]
        in_place = (name.endswith("_") and not name.endswith("__")) or name == "__setitem__" or bool(destinations)
        if followed:
            outputs = list(_tensors(result))
            input_keys = {self._key(t) for t in inputs}
            is_view = outputs and not in_place and all(self._key(t) in input_keys for t in outputs)
            if not is_view:  # a view (reshape, transpose, split, ...) of a followed output is the same data
                for f in {id(f): f for f in followed}.values():
                    f.readers += 1
        if in_place:
            for t in destinations or inputs[:1]:
                self.overwritten(t)


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors in ``obj``, looking inside (nested) tuples, lists and mappings."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, Mapping):
        for item in obj.values():
            yield from _tensors(item)


def _storage_objects_preserved() -> bool:
    """True when torch keeps one Python object per live storage (a finalizer on it runs when the storage
    is freed, not when the object returned by ``untyped_storage()`` goes out of scope)."""
    x = torch.empty(1)
    freed: list[bool] = []
    weakref.finalize(x.untyped_storage(), freed.append, True)
    alive = not freed
    del x
    return alive and bool(freed)


_STORAGE_OBJECTS_PRESERVED = _storage_objects_preserved()
