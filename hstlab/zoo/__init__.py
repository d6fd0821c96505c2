"""The model zoo: trained hstlab models shipped inside the package, loadable offline.

Example:
    >>> import hstlab
    >>> "hst-small-digits-dvs" in hstlab.list_pretrained()
    True
    >>> model = hstlab.load_pretrained("hst-small-digits-dvs")
    >>> model.cfg.modes, model.training
    ('SS', False)
    >>> model.zoo_record.metrics["test_accuracy"] >= 0.98
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hstlab.zoo.record import WEIGHTS_DIR, ZooError, ZooRecord, read_weights

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ZooError", "ZooRecord", "list_pretrained", "load_pretrained", "pretrained_record"]


def list_pretrained() -> list[str]:
    """Names of the shipped zoo entries, sorted."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


def pretrained_record(name: str) -> ZooRecord:
    """The JSON record of entry ``name``; an unknown name gets an error listing the names."""
    if not isinstance(name, str) or name not in list_pretrained():
        raise ZooError(f"unknown pretrained model {name!r}; allowed: {', '.join(list_pretrained())}")
    record = ZooRecord.read(WEIGHTS_DIR / f"{name}.json")
    if record.name != name:
        raise ZooError(f"zoo record {WEIGHTS_DIR / (name + '.json')} names {record.name!r}, not {name!r}")
    return record


def load_pretrained(name: str) -> nn.Module:
    """The trained model of entry ``name`` in eval mode, with ``.cfg`` and ``.zoo_record``.

    The weights file is checked against its recorded sha256 and must fit the recorded config
    exactly: a damaged or mismatched file gets a :class:`ZooError` naming the file and the
    missing, unexpected or mis-shaped tensors.
    """
    from hstlab.config import HSTConfig
    from hstlab.model import build_model

    record = pretrained_record(name)
    state = read_weights(record)
    model = build_model(HSTConfig.from_dict(record.config))
    check_fits(model, state, str(record.weights_file))
    model.load_state_dict(state, strict=True)
    model.eval()
    model.zoo_record = record
    return model


def check_fits(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`ZooError` naming missing, unexpected and mis-shaped tensors of ``state``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{label} {items[:8]}{' ...' if len(items) > 8 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected),
                                      ("mis-shaped", shapes)) if items]
        raise ZooError(f"{source} does not fit the model: " + "; ".join(parts))
