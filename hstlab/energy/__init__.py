"""Energy per sample of any spiking or standard network, measured with forward hooks (design.md §4).

Example:
    >>> import torch
    >>> from torch import nn
    >>> report = energy_report(nn.Linear(16, 8), (torch.rand(4, 2, 16) < 0.2).float())
    >>> report.layers.columns[:4].tolist()
    ['name', 'kind', 'mode', 'macs']
"""


from hstlab._lazy import lazy_exports

# names -> home modules, imported on first use (so `hstlab --help` does not start torch)
_EXPORTS: dict[str, str] = {
    "DATAFLOWS": "hstlab.energy.constants",
    "ENERGY_PRESETS": "hstlab.energy.constants",
    "MEMORY_LEVELS": "hstlab.energy.constants",
    "EnergyPreset": "hstlab.energy.constants",
    "MemoryLevel": "hstlab.energy.constants",
    "OpEnergy": "hstlab.energy.constants",
    "memory_energy": "hstlab.energy.constants",
    "mixed_op_energy": "hstlab.energy.constants",
    "op_energy": "hstlab.energy.constants",
    "select_memory_level": "hstlab.energy.constants",
    "twin_activation_bits": "hstlab.energy.constants",
    "COUNTERS": "hstlab.energy.counting",
    "LayerTally": "hstlab.energy.counting",
    "OpCounter": "hstlab.energy.counting",
    "EpilogueTracker": "hstlab.energy.epilogue",
    "EnergyReport": "hstlab.energy.report",
    "energy_per_sample": "hstlab.energy.report",
    "energy_report": "hstlab.energy.report",
    "model_weight_bytes": "hstlab.energy.report",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
