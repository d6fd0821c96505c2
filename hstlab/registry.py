"""A tiny name -> factory registry, so components are chosen by config strings, not if-chains."""

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

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

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
