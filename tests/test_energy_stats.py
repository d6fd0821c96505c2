"""The cached tensor statistics of the energy engine agree with their plain definitions."""

from __future__ import annotations

import pytest
import torch

from hstlab.energy.counting import LayerTally
from hstlab.energy.epilogue import EpilogueTracker
from hstlab.energy.stats import cached, is_binary, is_spike_count, nnz, total


def _reference(x: torch.Tensor) -> tuple[bool, bool, int]:
    binary = x.dtype == torch.bool or x.numel() == 0 or bool(((x == 0) | (x == 1)).all())
    if x.dtype == torch.bool or x.numel() == 0:
        count = True
    elif x.is_floating_point():
        count = bool(((x >= 0) & (x == torch.round(x))).all())
    else:
        count = bool((x >= 0).all())
    return binary, count, int(torch.count_nonzero(x))


CASES = {
    "spikes": (torch.rand(3, 4, 5) < 0.3).float(),
    "spikes permuted": (torch.rand(3, 4, 5) < 0.3).float().permute(2, 0, 1),
    "spikes sliced": (torch.rand(6, 5) < 0.5).float()[::2],
    "counts": torch.tensor([0.0, 2.0, 1.0, 3.0]),
    "real": torch.randn(4, 3),
    "in [0, 1]": torch.tensor([0.0, 1.0, 0.5, 1.0]),
    "just below 1": torch.tensor([0.0, 1.0, 1.0 - 2.0**-24]),
    "tiny": torch.tensor([0.0, 1.0, 1e-45]),
    "negative zero": torch.tensor([-0.0, 1.0]),
    "nan": torch.tensor([0.0, float("nan")]),
    "inf": torch.tensor([1.0, float("inf")]),
    "all zero": torch.zeros(2, 3),
    "int binary": torch.tensor([0, 1, 1], dtype=torch.int64),
    "int counts": torch.tensor([0, 3], dtype=torch.int32),
    "int negative": torch.tensor([0, -1], dtype=torch.int8),
    "half": torch.tensor([0.0, 1.0, 1.0], dtype=torch.float16),
    "bool": torch.tensor([True, False, True]),
    "expanded": torch.tensor([[0.0, 1.0]]).expand(3, 2),
    "empty": torch.empty(0, 3),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("use_cache", [False, True])
def test_statistics_match_their_definitions(name: str, use_cache: bool) -> None:
    x = CASES[name]
    binary, count, nonzero = _reference(x)
    with cached() if use_cache else torch.no_grad():
        for _ in range(2):  # the second call is answered from the cache
            assert (is_binary(x), is_spike_count(x), nnz(x)) == (binary, count, nonzero)
            if x.dtype != torch.bool:
                assert total(x) == float(x.sum()) or x.isnan().any()


def test_cached_statistics_follow_in_place_writes() -> None:
    x = torch.tensor([0.0, 1.0, 1.0])
    with cached():
        assert (is_binary(x), nnz(x)) == (True, 2)
        x.mul_(0.5)  # bumps the version: the cached answers are stale
        assert (is_binary(x), nnz(x), total(x)) == (False, 2, 1.0)


def test_tracker_forgets_a_freed_output() -> None:
    tracker, linear = EpilogueTracker(), LayerTally("fc", "linear")
    y = torch.ones(2, 3)
    tracker.produced(y, linear, write_bits=6 * 32)
    view = y.view(6)
    del y
    assert len(tracker._outputs) == 1  # a view keeps the storage alive
    del view
    assert not tracker._outputs  # the address may now hold an unrelated tensor
    tracker.settle()
