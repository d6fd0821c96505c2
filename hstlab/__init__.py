"""hstlab: build, inspect, train and compare Hybrid SNN-Transformer networks (HST-Net).

Names are imported lazily, so ``import hstlab`` stays fast and the GUI stack loads only when used.

Example:
    >>> import hstlab
    >>> cfg = hstlab.HSTConfig.from_preset("tiny").with_modes("ST")
    >>> model = hstlab.build_model(cfg)
    >>> model(hstlab.example_input(cfg)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import importlib
from typing import Any

from hstlab._lazy import lazy_attribute

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "HSTConfig": "hstlab.config",
    "LayerSpec": "hstlab.config",
    "StageSpec": "hstlab.config",
    "list_presets": "hstlab.presets",
    "build_model": "hstlab.model",
    "example_input": "hstlab.model",
    "HSTNet": "hstlab.model",
    "load_released": "hstlab.released",
    "ReleasedWeightsError": "hstlab.released",
    "Recorder": "hstlab.recorder",
    "LIF": "hstlab.neurons",
    "PLIF": "hstlab.neurons",
    "ALIF": "hstlab.neurons",
    "ILIF": "hstlab.neurons",
    "TernaryLIF": "hstlab.neurons",
    "reset_state": "hstlab.neurons",
    "SpikingNeuron": "hstlab.neurons",
    "build_neuron": "hstlab.neurons",
    "SURROGATES": "hstlab.neurons",
    "spike": "hstlab.neurons",
    "smoke_mode": "hstlab.runtime",
    "pick": "hstlab.runtime",
    "use_passive_threads": "hstlab.runtime",
    "list_pretrained": "hstlab.zoo",
    "load_pretrained": "hstlab.zoo",
    "energy_report": "hstlab.energy",
    "EnergyReport": "hstlab.energy",
    "energy_per_sample": "hstlab.energy",
    "ENERGY_PRESETS": "hstlab.energy",
    "DATAFLOWS": "hstlab.energy",
    "LiveCurves": "hstlab.viz",
    "load_dataset": "hstlab.data",
    "dataset_info": "hstlab.data",
    "list_datasets": "hstlab.data",
    "spike_encode": "hstlab.data",
    "time_first_collate": "hstlab.data",
    "DatasetUnavailable": "hstlab.data",
    "Trainer": "hstlab.train",
    "TrainConfig": "hstlab.train",
    "TrainEvent": "hstlab.train",
    "TrainingDiverged": "hstlab.train",
    "load_checkpoint": "hstlab.train",
    "train_run": "hstlab.train",
    "bits_per_spike": "hstlab.train",
    "write_model_card": "hstlab.train",
    "run_ablation": "hstlab.train",
    "run_search": "hstlab.search",
    "SearchSpace": "hstlab.search",
    "TensorBoardLogger": "hstlab.train.tensorboard",
    "export_nir": "hstlab.export",
}
_SUBPACKAGES = ("config", "data", "energy", "layers", "neurons", "train", "viz", "ui", "search", "export")

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"hstlab.{name}")
    return lazy_attribute("hstlab", _EXPORTS, globals(), name)


def __dir__() -> list[str]:
    return __all__
