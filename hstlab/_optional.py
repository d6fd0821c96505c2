"""Optional packages (Optuna, TensorBoard, NIR): imported on use, with a message that names the package."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {"optuna": "search", "tensorboard": "tensorboard", "nir": "nir"}


class MissingDependency(ImportError):
    """An optional package a feature needs is not installed; the message says what to install."""


def require(module: str, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the package and the extra.

    Example:
        >>> require("json", "tests").__name__
        'json'
        >>> require("no_such_module_xyz", "the demo", "xyz")
        Traceback (most recent call last):
        ...
        hstlab._optional.MissingDependency: the demo needs the 'xyz' package, which is not installed: pip install xyz
    """
    package = package or module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but one of its own imports failed: show the real error
        extra = EXTRAS.get(package)
        hint = f" (or pip install -e '.[{extra}]' in an hstlab checkout)" if extra else ""
        raise MissingDependency(f"{feature} needs the {package!r} package, which is not installed: "
                                f"pip install {package}{hint}") from exc
