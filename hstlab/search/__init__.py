"""Which layers should spike? A multi-objective (accuracy, energy) search over per-layer modes.

Example:
    >>> from hstlab.search import SearchSpace
    >>> SearchSpace(num_steps=(4,)).num_steps
    (4,)
"""

from hstlab.search.objectives import DEFAULT_OBJECTIVES, OBJECTIVES, Objective, check_objectives
from hstlab.search.runner import (
    SAMPLERS,
    SearchResult,
    collect,
    load_search,
    pareto_mask,
    run_search,
)
from hstlab.search.space import SearchSpace, design_record

__all__ = [
    "DEFAULT_OBJECTIVES",
    "OBJECTIVES",
    "SAMPLERS",
    "Objective",
    "SearchResult",
    "SearchSpace",
    "check_objectives",
    "collect",
    "design_record",
    "load_search",
    "pareto_mask",
    "run_search",
]
