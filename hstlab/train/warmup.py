"""The threshold-balancing warm-up a :class:`~hstlab.train.Trainer` runs before its first step.

A model built with ``HSTConfig(threshold_balance="hold" | "learn")`` has a threshold scale on
every neuron (:mod:`hstlab.neurons.balance`); :func:`warm_up_thresholds` sets them from the
membranes on fixed batches of a seeded shuffle of the training split (as many as the BatchNorm
calibration uses, at least :data:`MIN_BATCHES`; the same on every rank), under a forked, seeded RNG so training randomness is untouched. A resumed
run skips it (its checkpoint holds the scales).
"""

from __future__ import annotations

from typing import Any

import torch

from hstlab.neurons.balance import balance_thresholds, balanced_neurons

MIN_BATCHES = 2


def warm_up_thresholds(trainer: Any) -> dict[str, float]:
    """Balance the thresholds of ``trainer.model`` (``{}`` when it has no threshold scales).

    The thresholds set are stored on ``trainer.balanced_thresholds`` and returned.
    """
    from hstlab.train.trainer import EVAL_SEED_OFFSET  # here: the trainer imports this module

    trainer.balanced_thresholds = {}
    if not balanced_neurons(trainer.model):
        return {}
    generator = torch.Generator().manual_seed(trainer.seed + EVAL_SEED_OFFSET)
    order = torch.randperm(len(trainer.train_data), generator=generator).tolist()
    wanted = max(trainer.bn_recalibration_batches, MIN_BATCHES) * trainer.batch_size
    indices = order[:wanted]  # the same batches on every rank: every rank sets the same thresholds
    batches = [indices[i:i + trainer.batch_size] for i in range(0, len(indices), trainer.batch_size)]
    inputs = [trainer.loss_fn.prepare(trainer._to_device(x), trainer._to_device(y))[0]
              for x, y in trainer._loader(trainer.train_data, batches)]
    devices = [trainer.device] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(trainer.seed + EVAL_SEED_OFFSET)
        rate = float(getattr(trainer.cfg, "threshold_balance_rate", 0.1))
        trainer.balanced_thresholds = balance_thresholds(trainer.model, inputs, rate=rate)
    return trainer.balanced_thresholds
