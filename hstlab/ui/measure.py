"""The slow half of an explorer rebuild, run after it answers: one cancellable job per state.

A change answers with the new config, model and parameter count at once; BatchNorm calibration,
the energy report, the Inspect recording and the Energy tab's comparison follow, one
:data:`STEPS` entry at a time, in a :class:`Job` (a background thread of the served app, inline
in scripts). Each result is published as soon as it is measured; until then the views mark the
earlier value as stale. A newer change cancels the job of the model it replaces: the job stops at
its next module call (:func:`cancellable`) and publishes nothing.

Example:
    >>> import torch
    >>> job = Job(generation=1)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> job.cancel()
    >>> with cancellable(net, job.cancelled):
    ...     net(torch.zeros(1, 2))
    Traceback (most recent call last):
    ...
    hstlab.ui.measure.Superseded: a newer change replaced the model being measured
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

# what a job measures, in this order; "calibrate" (BatchNorm of an untrained model) is not shown
STEPS = ("calibrate", "energy", "inspection", "comparison")
SHOWN = STEPS[1:]  # results the views show (and mark stale while they are measured)
JOIN_TIMEOUT_S = 30.0  # a cancelled job stops at its next module call: milliseconds, not seconds


class Superseded(Exception):
    """A newer change replaced the model a job was measuring (the job publishes nothing)."""

    def __init__(self) -> None:
        super().__init__("a newer change replaced the model being measured")


@contextlib.contextmanager
def cancellable(model: torch.nn.Module, cancelled: threading.Event | None) -> Iterator[None]:
    """Raise :class:`Superseded` at ``model``'s next module call once ``cancelled`` is set.

    A forward pre-hook on every submodule checks the event (removed on exit, so a model that is
    copied for training later carries no hook). ``cancelled=None``: no check.
    """
    if cancelled is None:
        yield
        return

    def check(_module: torch.nn.Module, _args: tuple) -> None:
        if cancelled.is_set():
            raise Superseded

    handles = [m.register_forward_pre_hook(check) for m in model.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Job:
    """The measuring of one shown model (``generation`` counts the models a state has shown)."""

    generation: int
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)
    thread: threading.Thread | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def start(self, run: Callable[[Job], None]) -> None:
        """Run ``run(self)`` in a daemon thread that sees the caller's context variables (Panel's
        current document, so that view updates are scheduled on that session's event loop)."""
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(run, self), daemon=True,
                                       name=f"hstlab-measure-{self.generation}")
        self.thread.start()

    def stop(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Cancel and wait until the thread has left (no-op for an inline job or from itself)."""
        self.cancel()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()
