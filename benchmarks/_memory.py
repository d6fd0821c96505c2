"""Peak resident memory of a block of work, for the benchmarks (Linux: ``/proc/self/statm``)."""

from __future__ import annotations

import resource
import threading
import time


def rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


class PeakRSS:
    """``with PeakRSS() as mem: work()`` then ``mem.rise_mb``: the peak resident memory during the
    block above ``mem.before_mb`` (sampled every 0.5 ms by a thread; torch ops release the GIL)."""

    def __enter__(self) -> PeakRSS:
        self.before_mb = rss_mb()
        self._peak, self._done = self.before_mb, threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self._peak = max(self._peak, rss_mb())
            time.sleep(0.0005)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()
        self.rise_mb = max(self._peak, rss_mb()) - self.before_mb
