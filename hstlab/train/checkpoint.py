"""Run directories and checkpoints: plain dicts of tensors, written atomically, loaded with
``torch.load(..., weights_only=True)``.

A run directory holds ``config.json``, ``metrics.json``, ``history.csv``, ``last.pt`` (latest
state, also mid-epoch, for resume) and ``best.pt`` (best validation model). A checkpoint
stores the config of the model it holds, so :func:`load_checkpoint` rebuilds the model
without the code that trained it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import importlib
import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hstlab.config import HSTConfig

FORMAT = "hstlab-checkpoint-1"
DEFAULT_BUILDER = "hstlab:build_model"


def atomic_write_bytes(path: str | os.PathLike, writer: Callable[[Any], None]) -> None:
    """Write via ``writer(file)`` to a temp file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written file at ``path``."""
    atomic_write_bytes(path, lambda f: torch.save(obj, f))


def write_json(path: str | os.PathLike, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_history_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """One row per epoch; the header is the union of keys in first-seen order."""
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)

    def writer(f: Any) -> None:
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in keys})
        f.write(buf.getvalue().encode())

    atomic_write_bytes(path, writer)


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions that matter for reproducing a run."""
    out = {"python": platform.python_version(), "torch": str(torch.__version__)}
    for name in ("hstlab", "numpy", "snntorch"):
        try:
            from importlib.metadata import PackageNotFoundError, version

            out[name] = str(version(name))
        except PackageNotFoundError:  # not installed as a distribution
            mod = _try_import(name)
            out[name] = str(getattr(mod, "__version__", "unknown")) if mod else "absent"
    return out


def _try_import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def default_run_dir(root: str | os.PathLike, cfg_name: str, dataset: str, seed: int) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{cfg_name}-{dataset}-s{seed}-{stamp}"


def builder_path(fn: Callable[..., nn.Module]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def resolve_builder(path: str | None) -> Callable[[HSTConfig], nn.Module]:
    """Import ``"module:function"``; the default is ``hstlab.build_model``."""
    module, _, name = (path or DEFAULT_BUILDER).partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"builder={path!r} cannot be imported ({exc}); pass build_fn= explicitly") from exc
    return obj


def make_checkpoint(model: nn.Module, cfg: HSTConfig, meta: dict[str, Any],
                    train_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plain dict stored in a ``.pt`` file (tensors, numbers, strings, lists, dicts only)."""
    ckpt = {"format": FORMAT, "config": cfg.to_dict(), "model": _cpu_state(model), "meta": dict(meta)}
    if train_state is not None:
        ckpt["train_state"] = train_state
    return ckpt


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an hstlab checkpoint (format {FORMAT!r})")
    return ckpt


def load_checkpoint(path: str | os.PathLike, build_fn: Callable[[HSTConfig], nn.Module] | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, HSTConfig, dict[str, Any]]:
    """Rebuild the model a checkpoint holds: ``(model in eval mode, cfg, meta)``.

    ``path`` may be a ``.pt`` file or a run directory (then ``best.pt``). The model is built
    from the stored config by ``build_fn`` (default: the builder recorded at save time,
    normally ``hstlab.build_model``) and loaded strictly.

    Example:
        >>> model, cfg, meta = load_checkpoint("runs/tiny-digits-dvs/best.pt")  # doctest: +SKIP
        >>> meta["val_accuracy"]  # doctest: +SKIP
    """
    ckpt = read_checkpoint(path, map_location)
    cfg = HSTConfig.from_dict(ckpt["config"])
    builder = build_fn or resolve_builder(ckpt["meta"].get("builder"))
    model = builder(cfg)
    model.load_state_dict(ckpt["model"], strict=True)
    model.to(map_location)
    model.eval()
    return model, cfg, ckpt["meta"]
