"""Training: :class:`Trainer`, its events, losses, LR schedule, checkpoints and distributed helpers."""

from hstlab.train.checkpoint import load_checkpoint, read_checkpoint
from hstlab.train.events import TrainEvent, TrainingDiverged
from hstlab.train.losses import LOSSES, bits_per_spike, build_loss
from hstlab.train.meters import SpikeRateMeter
from hstlab.train.progress import TqdmProgress
from hstlab.train.schedule import WarmupCosine, warmup_cosine_factor
from hstlab.train.trainer import Trainer, default_collate

__all__ = [
    "LOSSES",
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
    "train_run",
    "warmup_cosine_factor",
]


def __getattr__(name: str):  # train_run pulls in data/model code; import it on first use
    if name == "train_run":
        from hstlab.train.run import train_run

        return train_run
    raise AttributeError(f"module 'hstlab.train' has no attribute {name!r}")
