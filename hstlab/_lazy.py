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


def lazy_exports(module: str, exports: dict[str, str], namespace: dict[str, Any]) -> tuple[Any, Any]:
    """``(__getattr__, __dir__)`` for a package whose public names are imported on first use.

    Example (in a package's ``__init__.py``):
        >>> ns = {}
        >>> getattr_, dir_ = lazy_exports("demo", {"sqrt": "math"}, ns)
        >>> getattr_("sqrt")(4.0), dir_()
        (2.0, ['sqrt'])
    """

    def __getattr__(name: str) -> Any:
        return lazy_attribute(module, exports, namespace, name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
