"""The explorer's deferred measuring (served app): a change answers at once, a newer one supersedes.

The energy step is held on a gate where a test needs a job to still be running, so nothing here
depends on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch

from hstlab.ui import BuildView, ExplorerState
from hstlab.ui.measure import Superseded, cancellable

TIMEOUT_S = 120


def gate_energy(state: ExplorerState) -> tuple[threading.Event, threading.Event, list]:
    """Hold every energy measurement of ``state`` until the returned gate is set.

    Returns ``(gate, entered, calls)``: ``entered`` is set when a measurement waits at the gate;
    ``calls`` lists the models measured (once past the gate).
    """
    gate, entered, calls = threading.Event(), threading.Event(), []
    measure = state._energy

    def held(model, sample, dataflow=None):
        entered.set()
        assert gate.wait(TIMEOUT_S), "the test never opened the gate"
        calls.append(model)
        return measure(model, sample, dataflow)

    state._energy = held
    return gate, entered, calls


def in_thread(fn: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def published(state: ExplorerState, name: str) -> list[tuple[Any, Any]]:
    """Every value ``state.<name>`` takes, with the config shown at that moment."""
    seen: list[tuple[Any, Any]] = []
    state.param.watch(lambda event: seen.append((state.cfg, event.new)), name)
    return seen


def measured_alone(**fields: Any) -> ExplorerState:
    """The same change in a state that measures inline (the reference values)."""
    return ExplorerState(preset="tiny", **fields)


def test_a_change_answers_before_its_energy_which_is_marked_stale_until_measured(no_data):
    state = ExplorerState(preset="tiny", deferred=True, live_inspection=False)
    assert state.settle(TIMEOUT_S) and state.stale == [] and not state.busy
    before = state.energy
    gate, entered, _ = gate_energy(state)
    view = BuildView(state=state)
    state.n_layer = 1  # returns with the model built; the job waits at the gate
    reference = measured_alone(n_layer=1)
    assert state.cfg.n_layer == 1 and state.n_params == reference.n_params and not state.error
    assert entered.wait(TIMEOUT_S)
    assert state.busy and state.stale == ["energy"] and state.energy is before
    text = view.summary_text()
    assert "measuring" in text and "of the previous model" in text and f"{reference.n_params:,}" in text
    gate.set()
    assert state.settle(TIMEOUT_S) and state.stale == [] and not state.busy
    assert state.energy.total_j == pytest.approx(reference.energy.total_j)  # calibrated the same
    assert "measuring" not in view.summary_text() and state.measure_seconds >= state.build_seconds


def test_a_newer_change_supersedes_the_pending_measurement(no_data):
    state = ExplorerState(preset="tiny", deferred=True)
    assert state.settle(TIMEOUT_S) and state.inspection is not None  # live: recorded
    energies, inspections = published(state, "energy"), published(state, "inspection")
    gate, entered, calls = gate_energy(state)
    state.n_layer = 1
    assert entered.wait(TIMEOUT_S)
    first = state._job
    first_model = state.model
    second = in_thread(lambda: state.param.update(n_layer=3))  # stops the first job, then builds
    while not first.cancelled.wait(0.01):
        pass
    gate.set()  # the first job reaches its model's next module call and stops there
    second.join(TIMEOUT_S)
    assert not second.is_alive() and state.cfg.n_layer == 3
    assert state.settle(TIMEOUT_S) and state.stale == [] and not state.error
    assert not first.running and state._job is None
    # the superseded measurement never showed: every energy published belongs to the shown config
    assert [cfg.n_layer for cfg, _ in energies] == [3]
    assert [(cfg.n_layer, insp.logits.shape) for cfg, insp in inspections] == [(3, (1, 10))]
    assert energies[0][1].total_j == pytest.approx(measured_alone(n_layer=3).energy.total_j)
    assert calls[0] is first_model and len(calls) == 2  # it got as far as the energy pass
    hooks = [m for m in (*first_model.modules(), *state.model.modules()) if m._forward_pre_hooks]
    assert not hooks  # the cancellation hooks are gone (a model copied for training carries none)


def test_a_failed_measurement_keeps_the_model_says_so_and_the_next_change_recovers(no_data):
    state = ExplorerState(preset="tiny", deferred=True)
    assert state.settle(TIMEOUT_S)
    before, measure = state.energy, state._energy

    def broken(*_: Any) -> Any:
        raise ValueError("dataflow='x' is not allowed")

    state._energy = broken
    state.n_layer = 1
    assert state.settle(TIMEOUT_S) and not state.busy
    assert state.cfg.n_layer == 1 and state.stale == ["energy", "inspection"]
    assert state.energy is before and state.inspection.logits is not None  # the old ones, marked
    assert "measuring its energy failed (energy, inspection not updated)" in state.error
    assert "dataflow='x'" in state.error
    assert "not measured" in BuildView(state=state).summary_text()
    state._energy = measure
    state.n_layer = 2
    assert state.settle(TIMEOUT_S) and state.stale == [] and not state.error


def test_a_view_that_opens_gets_its_results_measured_for_the_shown_model(no_data):
    state = ExplorerState(preset="tiny", deferred=True, live_inspection=False)
    state.n_layer = 1
    assert state.settle(TIMEOUT_S) and state.inspection is None and state.variants is None
    state.param.update(live_inspection=True, live_comparison=True)  # Inspect / Energy shown
    assert state.settle(TIMEOUT_S) and state.stale == []
    assert torch.equal(state.inspection.sample.x, state.sample.x)
    reference = measured_alone(n_layer=1).energy_variants()
    assert {k: r.total_j for k, r in state.variants.items()} == pytest.approx(
        {k: r.total_j for k, r in reference.items()})
    state.dataflow = "time-batched"  # repriced at once, the comparison too
    assert {r.dataflow for r in state.variants.values()} == {"time-batched"}


def test_training_copies_the_model_once_its_batchnorm_is_calibrated(no_data):
    state = ExplorerState(preset="tiny", deferred=True)
    gate, entered, _ = gate_energy(state)
    state.n_layer = 1
    assert entered.wait(TIMEOUT_S)  # calibrated; the energy pass waits
    copies: list[torch.nn.Module] = []
    in_thread(lambda: copies.append(state.model_copy())).join(TIMEOUT_S / 2)
    assert copies and not gate.is_set(), "model_copy waited for the energy, not the calibration"
    copy = copies[0]
    reference = measured_alone(n_layer=1).model
    norms = [(a, b) for a, b in zip(copy.modules(), reference.modules())
             if isinstance(a, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(torch.allclose(a.running_var, b.running_var) for a, b in norms)
    gate.set()
    assert state.settle(TIMEOUT_S)


def test_cancellable_stops_a_forward_pass_at_the_next_module():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    cancelled, seen = threading.Event(), []
    net[1].register_forward_hook(lambda *_: seen.append("relu") or cancelled.set())
    with pytest.raises(Superseded), cancellable(net, cancelled):
        net(torch.zeros(2, 3))  # [B, in]
    assert seen == ["relu"]  # stopped before the last Linear
    assert all(not m._forward_pre_hooks for m in net.modules())
    assert net(torch.zeros(2, 3)).shape == (2, 1)  # no hook left behind


def test_a_served_session_publishes_in_its_event_order_and_drops_superseded_results(no_data):
    """With a publisher (the served app's session queue) every result is shown from that queue;
    a result that reaches the queue after a newer change is dropped there."""
    from concurrent.futures import ThreadPoolExecutor

    queue = ThreadPoolExecutor(1)  # one session's events, one at a time
    held = threading.Event()
    queue.submit(held.wait, TIMEOUT_S)  # a long browser event: results wait behind it
    state = ExplorerState(preset="tiny", deferred=True, live_inspection=False)
    publishers: list[str] = []
    queued = threading.Event()

    def publish(work: Callable[[], Any]) -> Any:
        queued.set()
        return queue.submit(lambda: (publishers.append(threading.current_thread().name), work())[1])

    state.publisher = publish
    energies = published(state, "energy")
    state.n_layer = 1  # measured; its energy waits in the queue
    assert queued.wait(TIMEOUT_S) and state.busy and state.stale == ["energy"]
    state.n_layer = 3  # supersedes it before the queue runs
    held.set()
    assert state.settle(TIMEOUT_S) and state.stale == [] and not state.error
    assert [cfg.n_layer for cfg, _ in energies] == [3]  # the queued n_layer=1 result was dropped
    assert publishers and all(name.startswith("ThreadPoolExecutor") for name in publishers)
    queue.shutdown()
