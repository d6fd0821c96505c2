"""Fixed, seeded, stratified splits."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> np.ndarray:
    """Assign every item a split number (0, 1, ...) with the same class mix in each split.

    Within each class the items are shuffled by ``seed`` and cut at the cumulative fractions
    (rounded), so each split holds every class that has enough items.

    Example:
        >>> s = stratified_split(np.repeat(np.arange(2), 10), (0.8, 0.2), seed=0)
        >>> np.bincount(s).tolist()
        [16, 4]
    """
    labels = np.asarray(labels)
    fr = np.asarray(fractions, dtype=np.float64)
    if len(fr) < 1 or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions={tuple(fractions)!r} must be >= 0 and sum to 1")
    out = np.empty(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        where = where[rng.permutation(len(where))]
        cuts = np.round(np.cumsum(fr)[:-1] * len(where)).astype(int)
        for k, part in enumerate(np.split(where, cuts)):
            out[part] = k
    return out


def stratified_first(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` items taken round-robin over classes (keeps classes balanced)."""
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    order = np.lexsort((labels, rank))  # by rank within class, then class
    return order[:n]
