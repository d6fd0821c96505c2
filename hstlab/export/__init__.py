"""Export hstlab networks to other formats: :mod:`hstlab.export.nir` (Neuromorphic Intermediate Representation).

Names are imported on first use, so the CLI can register ``hstlab export-nir`` without loading torch.
"""

from __future__ import annotations

from typing import Any

from hstlab._lazy import lazy_attribute

_EXPORTS = {name: "hstlab.export.nir" for name in ("NIRExport", "NotExpressible", "export_nir", "to_nir")}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute("hstlab.export", _EXPORTS, globals(), name)


def __dir__() -> list[str]:
    return __all__
