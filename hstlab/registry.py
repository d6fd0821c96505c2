"""A tiny name -> factory registry, so components are chosen by config strings, not if-chains.

A registry whose names must be known without importing its implementations (config validation
and the CLI parsers import no torch) is built from a declared name tuple in a light module
(``hstlab.config``): it then refuses to register an undeclared name, ``names()`` is the
declaration, and ``unregistered()`` lists declared names that have no implementation yet (a test
checks every declared registry is complete once its modules are imported).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories and fails with the list of known names.

    Example:
        >>> ATTENTION = Registry("attention")
        >>> @ATTENTION.register("ssa")
        ... def make_ssa(cfg, spec): ...
        >>> ATTENTION.names()
        ('ssa',)
    """

    def __init__(self, kind: str, declared: tuple[str, ...] | None = None) -> None:
        self.kind = kind
        self.declared = declared
        self._items: dict[str, T] = {}
        if declared is not None and len(set(declared)) != len(declared):
            raise ValueError(f"{kind} names {declared} repeat a name")

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``item`` under ``name`` (declared registries: a declared name).

        Example:
            >>> RESETS = Registry("reset", declared=("hard", "soft"))
            >>> _ = RESETS.register("hard")(0)
            >>> RESETS.names(), RESETS.unregistered()
            (('hard', 'soft'), ('soft',))
            >>> RESETS.register("zero")
            Traceback (most recent call last):
            ...
            KeyError: "reset 'zero' is not declared; declared: hard, soft"
        """
        if self.declared is not None and name not in self.declared:
            raise KeyError(f"{self.kind} {name!r} is not declared; declared: {', '.join(self.declared)}")

        def decorator(item: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        if name not in self.names():
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        if name not in self._items:
            raise LookupError(f"{self.kind} {name!r} is declared but its implementation was never "
                              f"registered (import the module that registers it)")
        return self._items[name]

    def names(self) -> tuple[str, ...]:
        """The names, in declaration (else registration) order."""
        return self.declared if self.declared is not None else tuple(self._items)

    def unregistered(self) -> tuple[str, ...]:
        """Declared names with no implementation registered (always ``()`` when undeclared)."""
        return tuple(n for n in self.names() if n not in self._items)

    def first(self, accepts: Callable[[T], bool]) -> T | None:
        """The first registered item (in registration order) that ``accepts``; None if none does.

        Example:
            >>> KINDS = Registry("kind")
            >>> _ = KINDS.register("small")(1), KINDS.register("large")(100)
            >>> KINDS.first(lambda n: n > 10), KINDS.first(lambda n: n > 1000)
            (100, None)
        """
        return next((item for item in self._items.values() if accepts(item)), None)

    def __contains__(self, name: object) -> bool:
        return name in self._items
