"""What a model-zoo entry records, and how its weights file is read safely.

An entry is two files in ``hstlab/zoo/weights/``: ``NAME.safetensors`` (the state dict, read
without unpickling anything) and ``NAME.json``, its record: the model config, the training
recipe and seed, the exact command that trained it, library versions, the dataset and a hash of
its test split as loaded, and val/test metrics.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

WEIGHTS_DIR = Path(__file__).with_name("weights")
RECORD_FORMAT = "hstlab-zoo-1"


class ZooError(ValueError):
    """A zoo entry that is unknown, damaged, or does not fit its record."""


@dataclass(frozen=True)
class ZooRecord:
    """The JSON record of one zoo entry (see the module docstring)."""

    name: str
    description: str
    config: dict[str, Any]
    recipe: dict[str, Any]
    seed: int
    command: list[str]
    dataset: str
    dataset_args: dict[str, Any]  # load_dataset keyword arguments that define the evaluated split
    loss: str
    data_sha256: str  # over the test split's inputs and targets as loaded (see data_fingerprint)
    metrics: dict[str, float]  # val/test scores of the shipped weights
    weights_sha256: str
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    format: str = RECORD_FORMAT

    @property
    def weights_file(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def read(cls, path: Path) -> ZooRecord:
        """Parse ``path``; a damaged or foreign file gets a :class:`ZooError` naming it."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ZooError(f"zoo record {path}: cannot be read as JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ZooError(f"zoo record {path}: not an hstlab zoo record (format {RECORD_FORMAT!r})")
        missing = sorted(set(cls.__dataclass_fields__) - set(data) - {"versions", "notes"})
        if missing:
            raise ZooError(f"zoo record {path}: missing field(s) {missing}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ZooError(f"zoo record {path}: unknown field(s) {unknown}")
        return cls(**data)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weights(record: ZooRecord) -> dict[str, torch.Tensor]:
    """The entry's state dict, after checking the file against the recorded hash."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = record.weights_file
    if not path.is_file():
        raise ZooError(f"zoo entry {record.name!r}: weights file {path} is missing")
    actual = file_sha256(path)
    if actual != record.weights_sha256:
        raise ZooError(f"zoo entry {record.name!r}: weights file {path} is damaged or replaced "
                       f"(sha256 {actual[:12]}..., record says {record.weights_sha256[:12]}...)")
    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise ZooError(f"zoo entry {record.name!r}: weights file {path} cannot be read ({exc})") from None


def data_fingerprint(dataset: Any) -> str:
    """sha256 over every sample's input and target tensors, in order (what a metric depends on).

    Example:
        >>> data_fingerprint([(torch.zeros(2), 1)]) == data_fingerprint([(torch.zeros(2), 1)])
        True
    """
    import torch

    digest = hashlib.sha256()
    for i in range(len(dataset)):
        x, y = dataset[i]
        for value in (x, y):
            tensor = torch.as_tensor(value).contiguous()
            digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
            digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()
