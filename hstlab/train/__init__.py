"""Training: :class:`Trainer`, its events, losses, LR schedule, checkpoints, distributed helpers,
model cards (:func:`write_model_card`) and cumulative ablations (:func:`run_ablation`)."""


from hstlab._lazy import lazy_exports

# names -> home modules, imported on first use (so `hstlab --help` does not start torch)
_EXPORTS: dict[str, str] = {
    "BUILDERS": "hstlab.train.checkpoint",
    "CheckpointError": "hstlab.train.checkpoint",
    "RunDirExists": "hstlab.train.checkpoint",
    "load_checkpoint": "hstlab.train.checkpoint",
    "read_checkpoint": "hstlab.train.checkpoint",
    "TrainEvent": "hstlab.train.events",
    "TrainingDiverged": "hstlab.train.events",
    "LOSSES": "hstlab.train.losses",
    "bits_per_spike": "hstlab.train.losses",
    "build_loss": "hstlab.train.losses",
    "SpikeRateMeter": "hstlab.train.meters",
    "REGULARISERS": "hstlab.train.regularisers",
    "build_regulariser": "hstlab.train.regularisers",
    "TqdmProgress": "hstlab.train.progress",
    "WarmupCosine": "hstlab.train.schedule",
    "warmup_cosine_factor": "hstlab.train.schedule",
    "Trainer": "hstlab.train.trainer",
    "TrainConfig": "hstlab.train.config",
    "run_checkpoint": "hstlab.train.checkpoint",
    "default_collate": "hstlab.train.trainer",
    "train_run": "hstlab.train.run",
    "write_model_card": "hstlab.train.card",
    "run_ablation": "hstlab.train.ablate",
    "TensorBoardLogger": "hstlab.train.tensorboard",
    "ABLATION_STEPS": "hstlab.train.ablate",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
