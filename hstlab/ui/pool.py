"""The served explorer's worker threads: sessions run in parallel, each session's events in order.

Panel (``config.nthreads``) hands every browser event to a thread pool so that the event loop
stays free, but a plain pool may run two events of one tab at once or out of order (a typed
learning rate could be applied after the click on Start that followed it). This pool keeps one
queue per Bokeh document: a session's events run one after another in the order they arrived,
while different sessions run side by side.

Example:
    >>> pool = SessionOrderedPool(2)
    >>> order = []
    >>> futures = [pool.submit(order.append, i) for i in range(3)]  # no document: plain pool
    >>> [f.result() for f in futures]
    [None, None, None]
    >>> pool.shutdown()
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def _document_of(args: tuple) -> Any:
    """The Bokeh document a Panel job is for (its first argument), else None."""
    from bokeh.document import Document

    return args[0] if args and isinstance(args[0], Document) else None


class SessionOrderedPool(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` that runs jobs for the same document one at a time, in order."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="hstlab-explorer")
        self._queues: dict[int, deque] = {}
        self._guard = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        doc = _document_of(args)
        if doc is None:
            return super().submit(fn, *args, **kwargs)
        future: Future = Future()
        key = id(doc)
        with self._guard:
            queue = self._queues.setdefault(key, deque())
            queue.append((future, fn, args, kwargs))
            first = len(queue) == 1
        if first:  # no job of this document is running: start its queue
            try:
                super().submit(self._run_queue, key)
            except BaseException as exc:  # e.g. shut down: do not leave a queue nobody runs
                with self._guard:
                    self._queues.pop(key, None)
                future.set_exception(exc)
                raise
        return future

    def _run_queue(self, key: int) -> None:
        while True:
            with self._guard:
                future, fn, args, kwargs = self._queues[key][0]
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # noqa: BLE001 - handed to the future, as a pool does
                    future.set_exception(exc)
            with self._guard:
                queue = self._queues[key]
                queue.popleft()
                if not queue:
                    del self._queues[key]
                    return


def ordered_publisher(doc: Any) -> Callable[[Callable[[], Any]], Future] | None:
    """``publish(work) -> Future``: run ``work`` as a job of ``doc``'s session, in the order of its
    browser events (for :attr:`hstlab.ui.state.ExplorerState.publisher`); None when ``doc`` is
    not a served session or the pool is not a :class:`SessionOrderedPool`."""
    import panel as pn
    from panel.io.state import set_curdoc

    pool = getattr(pn.state, "_thread_pool", None)
    if doc is None or doc.session_context is None or not isinstance(pool, SessionOrderedPool):
        return None

    def run(document: Any, work: Callable[[], Any]) -> Any:
        with set_curdoc(document):  # views find their session, as in Panel's own event threads
            return work()

    return lambda work: pool.submit(run, doc, work)

