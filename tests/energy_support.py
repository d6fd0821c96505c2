"""Helpers shared by the energy-engine tests."""

from __future__ import annotations

from hstlab.energy import EnergyReport


def row(report: EnergyReport, name: str) -> dict:
    """The one layer row of ``report`` named ``name``, as a dict."""
    rows = report.layers[report.layers["name"] == name]
    assert len(rows) == 1, f"expected one row named {name!r}, got {report.layers['name'].tolist()}"
    return rows.iloc[0].to_dict()
