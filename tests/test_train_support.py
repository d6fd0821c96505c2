"""Shared helpers for the trainer tests: tiny configs, data and a builder (no tests here)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from hstlab.config import HSTConfig

INPUT_SHAPE = (2, 8, 8)


@pytest.fixture
def one_thread():
    """Tiny models run far faster on one intra-op thread (and do not fight parallel test runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_cfg(**overrides) -> HSTConfig:
    """A tiny config for the stand-in network (8x8 frames, T=2, 4 classes)."""
    values = {"name": "trainer-test", "n_layer": 2, "n_embd": 16, "n_head": 2, "num_steps": 2,
              "num_classes": 4, "input_shape": INPUT_SHAPE, "cpg_neurons": 4}
    values.update(overrides)
    return HSTConfig(**values)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v >= 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad / (1 + (3.14159 * v) ** 2)


class StepLIF(nn.Module):
    """LIF neuron (tau 2, threshold 0.25, hard reset) with state kept across calls."""

    is_spiking_neuron = True

    def __init__(self) -> None:
        super().__init__()
        self.v = None

    def reset_state(self) -> None:
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, D] -> [T, B, D]
        v = torch.zeros_like(x[0]) if self.v is None else self.v
        out = []
        for x_t in x:
            v = v + (x_t - v) / 2.0
            s = _Spike.apply(v - 0.25)
            v = v * (1 - s.detach())
            out.append(s)
        self.v = v
        return torch.stack(out)


class StandInNet(nn.Module):
    """Per-layer spiking (Linear + LIF) or standard (Linear + GELU, plus a learned gain) blocks.

    Standard layers own a ``gain`` parameter spiking layers lack, so a mode switch exercises
    partial state transfer.
    """

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.n_embd
        self.embed = nn.Linear(int(torch.tensor(cfg.input_shape).prod()), d)
        self.blocks = nn.ModuleList()
        for layer in cfg.resolved_layers():
            block = nn.Module()
            block.fc = nn.Linear(d, d)
            if layer.mlp_mode == "spiking":
                block.act = StepLIF()
            else:
                block.act = nn.GELU()
                block.gain = nn.Parameter(torch.ones(d))
            self.blocks.append(block)
        self.head = nn.Linear(d, cfg.num_classes)

    def reset_state(self) -> None:
        for m in self.modules():
            if isinstance(m, StepLIF):
                m.reset_state()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, C, H, W] -> [B, K]
        h = self.embed(x.flatten(2))  # [T, B, D]
        for block in self.blocks:
            z = block.fc(h)
            if isinstance(block.act, StepLIF):
                h = h + block.act(z)
            else:
                h = h + block.act(z) * block.gain
        return self.head(h).mean(0)  # rate decoding: mean over T


def build_standin(cfg: HSTConfig) -> StandInNet:
    return StandInNet(cfg)


def synthetic_frames(n: int, seed: int, num_classes: int = 4, steps: int = 2) -> TensorDataset:
    """Class k lights up quadrant k of an 8x8 frame (Bernoulli events), plus background noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    rate = torch.full((n, steps, *INPUT_SHAPE), 0.05)
    for i, k in enumerate(y.tolist()):
        r, c = divmod(k, 2)
        rate[i, :, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 0.6
    x = (torch.rand(rate.shape, generator=g) < rate).float()  # [N, T, C, H, W]
    return TensorDataset(x, y)


def splits(n_train: int = 48, n_val: int = 16, n_test: int = 16):
    return synthetic_frames(n_train, 1), synthetic_frames(n_val, 2), synthetic_frames(n_test, 3)


class Kill(Exception):
    """Raised by :func:`kill_at` to simulate a run killed mid-training."""


def kill_at(step: int):
    """A callback that raises :class:`Kill` after optimizer step ``step``."""

    def cb(ev):
        if ev.kind == "step" and ev.step == step:
            raise Kill

    return cb


def run_two_gloo_ranks(worker: str, tmp_path: Path) -> tuple[dict, dict]:
    """Run ``worker`` (a script template with ``{tests}``, ``{run_dir}``, ``{out}`` fields that
    saves ``{out}/rank<r>.pt``) on 2 CPU processes under torchrun with gloo; return both ranks'
    saved dicts (``tmp_path/run`` is the run directory)."""
    from server_support import free_port

    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(worker.format(tests=str(Path(__file__).resolve().parent),
                                                    run_dir=str(tmp_path / "run"), out=str(tmp_path))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(script)]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (torch.load(tmp_path / "rank0.pt", weights_only=True),
            torch.load(tmp_path / "rank1.pt", weights_only=True))
