"""Products of two activations (``q @ k.transpose(-1, -2)``, ``torch.bmm``, ``einsum``,
``F.scaled_dot_product_attention``) wherever a model computes them outside a counted module.

A product costs accumulates when an operand is spikes or spike counts, MACs otherwise:

- both operands spikes/counts: one accumulate per pair of non-zero entries that meet
  (``sum_l colsum(A)[l] * rowsum(B)[l]``, counts weighted by their values);
- one operand spikes/counts: each spike adds one row (or column) of the other operand;
- both real: ``batch * n * k * m`` MACs.

Each op name maps to a pricing rule in ``PRODUCT_OPS`` (``torch.matmul``, ``Tensor.__matmul__``, ...
share the name). A product with a weight operand (a parameter or a view of one) is a layer, not an
activation product: it is left to the layer's counter, or reported as unpriced.

Example:
    >>> spikes = torch.tensor([[1.0, 0.0, 1.0]])  # [n=1, k=3]
    >>> real = torch.ones(3, 4)  # [k=3, m=4]
    >>> price_matmul(spikes, real, "spikes", "real")  # 2 spikes x 4 columns
    Cost(macs=0.0, acs=8.0, dense=12.0)
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hstlab.energy.constants import ELEMENTWISE_MACS
from hstlab.energy.provenance import REAL, events


@dataclass(frozen=True)
class Cost:
    """Operations of one product (whole batch): MACs, accumulates, and the dense MAC count."""

    macs: float
    acs: float
    dense: float


@dataclass(frozen=True)
class Operand:
    """One operand as the pricing rule sees it: the tensor and how it is priced."""

    tensor: torch.Tensor
    kind: str  # "spikes" | "counts" | "real"

    @property
    def spiking(self) -> bool:
        return self.kind != REAL


@dataclass
class Priced:
    """What one op costs: its products, its softmax (SDPA), and the bits it reads and writes."""

    products: list[Cost]
    operands: list[Operand]
    softmax_scores: float = 0.0
    result_numel: float = 0.0


def price_matmul(a: torch.Tensor, b: torch.Tensor, kind_a: str, kind_b: str) -> Cost:
    """``torch.matmul(a, b)`` semantics (1-D operands, broadcast batch axes); ``kind_*`` is
    "spikes", "counts" or "real" (a real operand's values are never read)."""
    a2 = events(a.unsqueeze(0) if a.dim() == 1 else a, kind_a)  # [*ba, n, k]
    b2 = events(b.unsqueeze(-1) if b.dim() == 1 else b, kind_b)  # [*bb, k, m]
    n, k, m = a2.shape[-2], a2.shape[-1], b2.shape[-1]
    batch = torch.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    batches = math.prod(batch)
    dense = float(batches * n * k * m)
    spiking_a, spiking_b = kind_a != REAL, kind_b != REAL
    if spiking_a and spiking_b:  # pairs of non-zero entries that meet on the inner axis
        colsum = a2.float().sum(-2)  # [*ba, k]
        rowsum = b2.float().sum(-1)  # [*bb, k]
        pairs = (colsum * rowsum).expand(*batch, k).sum()
        return Cost(0.0, float(pairs), dense)
    if spiking_a:  # each spike adds a row of b: m accumulates
        return Cost(0.0, float(a2.float().sum()) * batches / math.prod(a2.shape[:-2]) * m, dense)
    if spiking_b:  # each spike adds a column of a: n accumulates
        return Cost(0.0, float(b2.float().sum()) * batches / math.prod(b2.shape[:-2]) * n, dense)
    return Cost(dense, 0.0, dense)


def price_einsum(equation: str, operands: list[Operand]) -> tuple[list[Cost], float]:
    """Products of an ``einsum`` contracted left to right (a product of two spike operands is a count
    operand of the next one); returns the costs and the result's size."""
    inputs, _, output = equation.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum equation {equation!r} has {len(terms)} operands, got {len(operands)}")
    spare = [c for c in string.ascii_letters if c not in equation]
    width = max((op.tensor.dim() - len(t.replace("...", "")) for op, t in zip(operands, terms) if "..." in t),
                default=0)
    ellipsis = "".join(spare[:width])
    terms = [t.replace("...", ellipsis[width - (op.tensor.dim() - len(t.replace("...", ""))):])
             for op, t in zip(operands, terms)]
    if "->" in equation:
        output = output.replace("...", ellipsis)
    else:  # implicit output: the letters that appear once, in order, after the broadcast axes
        letters = "".join(terms)
        output = ellipsis + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ellipsis))
    sizes: dict[str, int] = {}
    for op, term in zip(operands, terms):
        for letter, size in zip(term, op.tensor.shape):
            sizes[letter] = max(sizes.get(letter, 1), int(size))

    def expanded(op: Operand, term: str) -> torch.Tensor:
        return events(op.tensor, op.kind).float().expand(*(sizes[c] for c in term)) if op.spiking else op.tensor

    costs = []
    left, left_term = operands[0], terms[0]
    for index in range(1, len(operands)):
        right, right_term = operands[index], terms[index]
        later = "".join(terms[index + 1:]) + output
        joint = "".join(dict.fromkeys(left_term + right_term))
        dense = float(math.prod(sizes[c] for c in joint))
        if left.spiking and right.spiking:
            pairs = torch.einsum(f"{left_term},{right_term}->", expanded(left, left_term), expanded(right, right_term))
            cost = Cost(0.0, float(pairs), dense)
        elif left.spiking or right.spiking:
            spiking, term, other = (left, left_term, right_term) if left.spiking else (right, right_term, left_term)
            fan = math.prod(sizes[c] for c in dict.fromkeys(other) if c not in term)
            cost = Cost(0.0, float(expanded(spiking, term).sum()) * fan, dense)
        else:
            cost = Cost(dense, 0.0, dense)
        costs.append(cost)
        kept = "".join(c for c in joint if c in later)
        if left.spiking and right.spiking:  # the intermediate is a count tensor the next product reads
            value = torch.einsum(f"{left_term},{right_term}->{kept}", expanded(left, left_term),
                                 expanded(right, right_term))
            left = Operand(value, "counts")
        else:
            left = Operand(torch.empty((*(sizes[c] for c in kept),), device="meta"), REAL)
        left_term = kept
    return costs, float(math.prod(sizes[c] for c in output))


# --------------------------------------------------------------------------------- op rules
# Each rule gets the op's args and kwargs and a function that prices one tensor ("spikes" ...),
# and returns what the op costs, or None when it is not a product of two activations.
Kind = Callable[[torch.Tensor], str]
Rule = Callable[[tuple, dict, Kind], "Priced | None"]
PRODUCT_OPS: dict[str, Rule] = {}


def _two(a: torch.Tensor, b: torch.Tensor, kind: Kind) -> Priced:
    ops = [Operand(a, kind(a)), Operand(b, kind(b))]
    cost = price_matmul(a, b, ops[0].kind, ops[1].kind)
    out_numel = cost.dense / max(1, a.shape[-1])
    return Priced([cost], ops, result_numel=out_numel)


def _rule(*names: str) -> Callable[[Rule], Rule]:
    def register(rule: Rule) -> Rule:
        for name in names:
            PRODUCT_OPS[name] = rule
        return rule

    return register


@_rule("matmul", "__matmul__", "mm", "bmm", "mv", "dot")
def _matmul(args: tuple, kwargs: dict, kind: Kind) -> Priced | None:
    a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("mat2", kwargs.get("vec")))
    return _two(a, b, kind)


@_rule("__rmatmul__")
def _rmatmul(args: tuple, kwargs: dict, kind: Kind) -> Priced | None:
    return _two(args[1], args[0], kind)  # Tensor.__rmatmul__(self, other) is other @ self


@_rule("baddbmm", "addmm", "addbmm", "addmv")
def _add_product(args: tuple, kwargs: dict, kind: Kind) -> Priced | None:
    a = args[1] if len(args) > 1 else kwargs.get("batch1", kwargs.get("mat1", kwargs.get("mat")))
    b = args[2] if len(args) > 2 else kwargs.get("batch2", kwargs.get("mat2", kwargs.get("vec")))
    return _two(a, b, kind)


@_rule("einsum")
def _einsum(args: tuple, kwargs: dict, kind: Kind) -> Priced | None:
    if not args or not isinstance(args[0], str):
        raise ValueError("einsum in sublist form (operand, [axes], ...) is not priced; use an equation string")
    operands = list(args[1]) if len(args) == 2 and isinstance(args[1], (tuple, list)) else list(args[1:])
    if len(operands) < 2:
        return None  # a transpose, trace or sum of one operand: no product
    ops = [Operand(t, kind(t)) for t in operands]
    costs, out_numel = price_einsum(args[0], ops)
    return Priced(costs, ops, result_numel=out_numel)


@_rule("scaled_dot_product_attention")
def _sdpa(args: tuple, kwargs: dict, kind: Kind) -> Priced | None:
    names = ("query", "key", "value")
    q, k, v = (args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))
    ops = [Operand(q, kind(q)), Operand(k, kind(k)), Operand(v, kind(v))]
    if kwargs.get("enable_gqa", False) and q.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        groups = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(groups, -3), v.repeat_interleave(groups, -3)
    scores = price_matmul(q, k.transpose(-1, -2), ops[0].kind, ops[1].kind)  # [*, L, S]
    shape = (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])  # [*, L, S]
    probabilities = torch.empty(shape, device="meta")  # real: softmax output, values never read
    mixed = price_matmul(probabilities, v, REAL, ops[2].kind)  # [*, L, Ev]
    n_scores = float(math.prod(shape))
    return Priced([scores, mixed], ops, softmax_scores=n_scores,
                  result_numel=n_scores / max(1, k.shape[-2]) * v.shape[-1])


SOFTMAX_MACS = ELEMENTWISE_MACS["softmax"]
