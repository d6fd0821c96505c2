"""spread_indices: per-sample estimates must not be made on the first (class-sorted) samples."""

from __future__ import annotations

import pytest

from hstlab.data import spread_indices


@pytest.mark.parametrize(("length", "n", "expected"), [
    (10, 4, [0, 3, 6, 9]), (10, 1, [0]), (3, 8, [0, 1, 2]), (5, 5, [0, 1, 2, 3, 4]), (0, 4, []), (4, 0, []),
])
def test_spread_indices(length, n, expected):
    assert spread_indices(length, n) == expected


def test_spread_covers_every_class_of_a_sorted_split():
    labels = [c for c in range(10) for _ in range(27)]  # 270 samples sorted by class, like digits-dvs val
    picked = spread_indices(len(labels), 32)
    assert len(picked) == len(set(picked)) == 32
    assert {labels[i] for i in picked} == set(range(10))
