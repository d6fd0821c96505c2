"""Names the docstring examples of ``hstlab`` may use without building them each time.

``pytest --doctest-modules hstlab`` runs every ``>>>`` example. Examples that look at a model
start from these objects, built once per test process from the ``tiny`` preset:

- ``cfg``, ``model`` (eval mode, BatchNorm calibrated), ``x`` (``example_input(cfg, 2)``);
- ``rec``: a :class:`hstlab.Recorder` after ``model(x)`` (spikes, membranes, attention);
- ``report``: ``energy_report(model, x)``;
- ``events``: a tonic-style structured event array (``x``, ``y``, ``t``, ``p``);
- the public names of ``hstlab``, ``hstlab.viz`` and ``hstlab.train``, plus ``torch``, ``np``
  and ``pd``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

os.environ.setdefault("HSTLAB_SMOKE", "1")

import pytest  # noqa: E402


@functools.lru_cache(maxsize=1)
def _doctest_objects() -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    import torch

    import hstlab
    import hstlab.train
    import hstlab.viz
    from hstlab.layers.norm import calibrate_batchnorm
    from hstlab.layers.posenc import cpg_code, cpg_phases

    torch.manual_seed(0)
    cfg = hstlab.HSTConfig.from_preset("tiny")
    model = hstlab.build_model(cfg).eval()
    x = hstlab.example_input(cfg, batch_size=2)  # [T, B, 2, H, W]
    calibrate_batchnorm(model, x)
    with torch.no_grad(), hstlab.Recorder(model) as rec:
        model(x)
    rng = np.random.default_rng(0)
    events = np.zeros(200, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    events["x"], events["y"] = rng.integers(0, 34, 200), rng.integers(0, 34, 200)
    events["t"], events["p"] = np.sort(rng.integers(0, 100_000, 200)), rng.integers(0, 2, 200)
    names: dict[str, Any] = {}
    for module in (hstlab, hstlab.viz, hstlab.train):
        names.update({n: getattr(module, n) for n in getattr(module, "__all__", ())})
    names.update(torch=torch, np=np, pd=pd, hstlab=hstlab, cpg_code=cpg_code, cpg_phases=cpg_phases,
                 cfg=cfg, model=model, x=x, rec=rec, events=events,
                 report=hstlab.energy_report(model, x))
    return names


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        request.getfixturevalue("doctest_namespace").update(_doctest_objects())
