"""Residual connections ``g(A, S)`` (A: the branch output, S: the identity path)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hstlab.config import RESIDUALS as RESIDUAL_NAMES
from hstlab.registry import Registry

Residual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RESIDUALS: Registry[Residual] = Registry("residual", declared=RESIDUAL_NAMES)


@RESIDUALS.register("add")
def add(identity: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """Plain residual ``S + A``; in a spiking half the block puts a neuron after the sum
    (Spiking ResNet), in a standard half this is the Transformer's residual."""
    return identity + branch


@RESIDUALS.register("sew_add")
def sew_add(identity: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """SEW ADD ``A + S`` on spikes (values may exceed 1)."""
    return identity + branch


@RESIDUALS.register("sew_and")
def sew_and(identity: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """SEW AND ``A · S``."""
    return identity * branch


@RESIDUALS.register("sew_iand")
def sew_iand(identity: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """SEW IAND ``(1 - A) · S``."""
    return (1.0 - branch) * identity


@RESIDUALS.register("membrane")
def membrane(identity: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """Membrane shortcut (SDT): add real-valued branch outputs before the next neuron."""
    return identity + branch
