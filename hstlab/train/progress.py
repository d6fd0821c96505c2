"""A tqdm progress bar as a trainer callback (the CLI's live view)."""

from __future__ import annotations

from typing import Any

from hstlab.train.events import TrainEvent


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class TqdmProgress:
    """Advances one tick per optimizer step; shows loss, score, firing rate and the last val result.

    Example:
        >>> bar = TqdmProgress(total=10, disable=True)
        >>> bar.on_step_end(TrainEvent(kind="step", step=1, epoch=0, loss=0.5, accuracy=0.25))
        >>> bar.close()
    """

    def __init__(self, total: int | None = None, **tqdm_options: Any) -> None:
        self.total = total
        self.options = tqdm_options
        self.bar: Any = None
        self.last_val = "-"

    def _ensure(self, step: int) -> Any:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=step - 1, unit="step", dynamic_ncols=True, **self.options)
        return self.bar

    def on_step_end(self, ev: TrainEvent) -> None:
        bar = self._ensure(ev.step)
        score = ev.accuracy if ev.accuracy is not None else ev.bits_per_spike
        bar.set_description(f"epoch {ev.epoch} [{ev.modes or ''}]")
        bar.set_postfix_str(f"loss {ev.loss:.3f} score {_fmt(score, '.3f')} fr {_fmt(ev.firing_rate, '.3f')} "
                            f"val {self.last_val}", refresh=False)
        bar.update(1)

    def on_epoch_end(self, ev: TrainEvent) -> None:
        score = ev.val_accuracy if ev.val_accuracy is not None else ev.val_bits_per_spike
        self.last_val = _fmt(score, ".3f")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
