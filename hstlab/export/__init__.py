"""Export hstlab networks to other formats: :mod:`hstlab.export.nir` (Neuromorphic Intermediate Representation)."""

from hstlab.export.nir import NIRExport, NotExpressible, export_nir, to_nir

__all__ = ["NIRExport", "NotExpressible", "export_nir", "to_nir"]
