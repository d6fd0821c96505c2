"""Energy per sample of any spiking or standard network, measured with forward hooks (design.md §4).

Example:
    >>> import torch
    >>> from torch import nn
    >>> report = energy_report(nn.Linear(16, 8), (torch.rand(4, 2, 16) < 0.2).float())
    >>> report.layers.columns[:4].tolist()
    ['name', 'kind', 'mode', 'macs']
"""

from hstlab.energy.constants import (
    DATAFLOWS,
    ENERGY_PRESETS,
    MEMORY_LEVELS,
    EnergyPreset,
    MemoryLevel,
    OpEnergy,
    memory_energy,
    mixed_op_energy,
    op_energy,
    select_memory_level,
    twin_activation_bits,
)
from hstlab.energy.counting import COUNTERS, LayerTally, OpCounter
from hstlab.energy.epilogue import EpilogueTracker
from hstlab.energy.report import EnergyReport, energy_per_sample, energy_report, model_weight_bytes

__all__ = [
    "COUNTERS",
    "DATAFLOWS",
    "ENERGY_PRESETS",
    "MEMORY_LEVELS",
    "EnergyPreset",
    "EnergyReport",
    "EpilogueTracker",
    "LayerTally",
    "MemoryLevel",
    "OpCounter",
    "OpEnergy",
    "energy_per_sample",
    "energy_report",
    "memory_energy",
    "mixed_op_energy",
    "model_weight_bytes",
    "op_energy",
    "select_memory_level",
    "twin_activation_bits",
]
