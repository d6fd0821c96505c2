"""Shared fixtures: deterministic seeds, few threads, the tiny config."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP (see hstlab/__init__.py)

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HSTLAB_SMOKE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_cfg():
    from hstlab import HSTConfig

    return HSTConfig.from_preset("tiny")
