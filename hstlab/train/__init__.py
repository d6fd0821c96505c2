"""Training: :class:`Trainer`, its events, losses, LR schedule, checkpoints, distributed helpers,
model cards (:func:`write_model_card`) and cumulative ablations (:func:`run_ablation`)."""

from hstlab.train.checkpoint import (
    BUILDERS,
    CheckpointError,
    RunDirExists,
    load_checkpoint,
    read_checkpoint,
)
from hstlab.train.events import TrainEvent, TrainingDiverged
from hstlab.train.losses import LOSSES, bits_per_spike, build_loss
from hstlab.train.meters import SpikeRateMeter
from hstlab.train.progress import TqdmProgress
from hstlab.train.schedule import WarmupCosine, warmup_cosine_factor
from hstlab.train.trainer import Trainer, default_collate

__all__ = [
    "ABLATION_STEPS",
    "BUILDERS",
    "CheckpointError",
    "LOSSES",
    "RunDirExists",
    "SpikeRateMeter",
    "TqdmProgress",
    "TrainEvent",
    "Trainer",
    "TrainingDiverged",
    "WarmupCosine",
    "bits_per_spike",
    "build_loss",
    "default_collate",
    "load_checkpoint",
    "read_checkpoint",
    "run_ablation",
    "train_run",
    "warmup_cosine_factor",
    "write_model_card",
]


_LAZY = {  # these pull in data/model/viz code; import them on first use
    "train_run": "hstlab.train.run",
    "write_model_card": "hstlab.train.card",
    "run_ablation": "hstlab.train.ablate",
    "ABLATION_STEPS": "hstlab.train.ablate",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hstlab.train' has no attribute {name!r}")
