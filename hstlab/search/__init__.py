"""Which layers should spike? A multi-objective (accuracy, energy) search over per-layer modes.

Names are imported on first use, so the CLI can register ``hstlab search`` without loading torch.

Example:
    >>> from hstlab.search import SearchSpace
    >>> SearchSpace(num_steps=(4,)).num_steps
    (4,)
"""

from __future__ import annotations

from typing import Any

from hstlab._lazy import lazy_attribute

_EXPORTS = {
    "DEFAULT_OBJECTIVES": "hstlab.search.objectives",
    "OBJECTIVES": "hstlab.search.objectives",
    "SAMPLERS": "hstlab.search.objectives",
    "Objective": "hstlab.search.objectives",
    "check_objectives": "hstlab.search.objectives",
    "SearchResult": "hstlab.search.runner",
    "collect": "hstlab.search.runner",
    "load_search": "hstlab.search.runner",
    "pareto_mask": "hstlab.search.runner",
    "run_search": "hstlab.search.runner",
    "SearchSpace": "hstlab.search.space",
    "design_record": "hstlab.search.space",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute("hstlab.search", _EXPORTS, globals(), name)


def __dir__() -> list[str]:
    return __all__
