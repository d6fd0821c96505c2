"""Shared fixtures: deterministic seeds, few threads, the tiny config."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP (see hstlab.runtime.use_passive_threads)

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


# ------------------------------------------------------------- explorer tests: data folders
@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small digits-dvs build (100 of the 1,797 digits) in a temporary data folder."""
    from hstlab.data.digits_dvs import build_digits_dvs

    root = tmp_path_factory.mktemp("hstlab-data")
    build_digits_dvs(root / "digits-dvs", seed=0, n_samples=100)
    return root


@pytest.fixture
def data_env(digits_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HSTLAB_DATA", str(digits_root))
    return digits_root


@pytest.fixture
def no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HSTLAB_DATA", str(tmp_path / "empty"))
    return tmp_path
