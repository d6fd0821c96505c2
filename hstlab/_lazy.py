"""Module-level ``__getattr__`` support: names imported from their home module on first use."""

from __future__ import annotations

import importlib
from typing import Any


def lazy_attribute(module: str, exports: dict[str, str], namespace: dict[str, Any], name: str) -> Any:
    """``name`` imported from ``exports[name]`` and cached in ``namespace`` (the caller's globals).

    Example:
        >>> cache = {}
        >>> lazy_attribute("demo", {"sqrt": "math"}, cache, "sqrt")(9.0), "sqrt" in cache
        (3.0, True)
    """
    if name not in exports:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(exports[name]), name)
    namespace[name] = value
    return value
