"""Run directories and checkpoints: safetensors files written atomically, read without unpickling.

A run directory holds ``config.json``, ``metrics.json``, ``history.csv``, ``last.safetensors``
(latest state, also mid-epoch, for resume) and ``best.safetensors`` (best validation model);
:func:`run_checkpoint` is the one place that names them. A checkpoint is one safetensors file:
the tensors (the model's under ``model/``, the optimizer's, RNG states and loss state under
``state/``) and, in its JSON metadata, the model's config, ``meta`` and the rest of the training
state (numbers, strings, lists). So :func:`load_checkpoint` rebuilds the model without the code
that trained it, and reading a run directory never unpickles anything.

Run directories written before safetensors hold ``best.pt``/``last.pt``; they are still read,
with ``torch.load(..., weights_only=True)`` (which refuses anything but tensors and plain data)
and a ``DeprecationWarning``. New runs never write ``.pt`` files.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import importlib
import json
import os
import pickle
import platform
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hstlab.config import HSTConfig
from hstlab.registry import Registry

FORMAT = "hstlab-checkpoint-1"  # the dict read_checkpoint returns (and legacy .pt files hold)
FILE_FORMAT = "hstlab-checkpoint-2"  # a safetensors checkpoint's metadata["format"]

# a run's checkpoints: kind -> file name. The one place these names are decided.
CHECKPOINT_KINDS = ("best", "last")
CHECKPOINT_SUFFIX = ".safetensors"
LEGACY_SUFFIX = ".pt"  # pickled (torch.save) checkpoints of runs written before safetensors
CHECKPOINT_FILES = tuple(f"{kind}{CHECKPOINT_SUFFIX}" for kind in CHECKPOINT_KINDS)
LEGACY_CHECKPOINT_FILES = tuple(f"{kind}{LEGACY_SUFFIX}" for kind in CHECKPOINT_KINDS)

# what a run directory may hold (written by train_run, the Trainer and write_model_card)
RUN_FILES = ("run.json", "config.json", "metrics.json", "history.csv", *CHECKPOINT_FILES,
             *LEGACY_CHECKPOINT_FILES, "model_card.md", "model_card.html", "model_card.json")


def run_checkpoint(run_dir: str | os.PathLike, kind: str = "best", *, new: bool = False) -> Path:
    """The file of a run's ``kind`` checkpoint (``"best"`` or ``"last"``).

    ``best.safetensors`` / ``last.safetensors``; for a run written before safetensors that holds
    only the legacy ``best.pt`` / ``last.pt``, that file (read safely, with a deprecation
    warning). ``new=True`` always names the safetensors file (where a checkpoint is written).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> run_checkpoint(d).name, run_checkpoint(d, "last").name
        ('best.safetensors', 'last.safetensors')
        >>> _ = (d / "best.pt").write_bytes(b"old run")
        >>> run_checkpoint(d).name, run_checkpoint(d, new=True).name
        ('best.pt', 'best.safetensors')
    """
    if kind not in CHECKPOINT_KINDS:
        raise ValueError(f"checkpoint kind {kind!r} is not one of {', '.join(CHECKPOINT_KINDS)}")
    run_dir = Path(run_dir)
    path = run_dir / f"{kind}{CHECKPOINT_SUFFIX}"
    legacy = run_dir / f"{kind}{LEGACY_SUFFIX}"
    if not new and not path.exists() and legacy.exists():
        return legacy
    return path
# atomic_write_bytes' temp files: "." + target name + "." + 8 random characters (mkstemp) + ".tmp"
TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


def atomic_write_bytes(path: str | os.PathLike, writer: Callable[[Any], None]) -> None:
    """Write via ``writer(file)`` to a temp file in the same folder, then ``os.replace``.

    A process killed mid-write leaves only the temp file (named like :data:`TEMP_NAME`), which
    :func:`remove_temp_files` clears on the next start.
    """
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


def atomic_save(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a checkpoint dict (:func:`make_checkpoint`) as one safetensors file, never half-written.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "best.safetensors"
        >>> cfg = HSTConfig.from_preset("tiny")
        >>> atomic_save(make_checkpoint(nn.Linear(2, 1), cfg, {"step": 3}, {"seen": [1.5, None]}), path)
        >>> ckpt = read_checkpoint(path)
        >>> ckpt["meta"]["step"], sorted(ckpt["model"]), ckpt["train_state"]["seen"]
        (3, ['bias', 'weight'], [1.5, None])
    """
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {f"model/{k}": _plain_tensor(v) for k, v in ckpt["model"].items()}
    metadata = {"format": FILE_FORMAT, "config": json.dumps(ckpt["config"]), "meta": _dumps(ckpt["meta"], {})}
    if ckpt.get("train_state") is not None:
        metadata["train_state"] = _dumps(ckpt["train_state"], tensors)
    data = save(tensors, metadata=metadata)
    atomic_write_bytes(path, lambda f: f.write(data))


# JSON stand-ins for what JSON lacks: a tensor (stored beside it in the file), a tuple, a dict
# with non-string keys (the optimizer's state is keyed by parameter index)
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def _plain_tensor(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().clone()


def _dumps(value: Any, tensors: dict[str, torch.Tensor]) -> str:
    """JSON of ``value``; its tensors go into ``tensors`` (as ``state/<n>``) and are named in the JSON."""
    def pack(v: Any, where: str) -> Any:
        if isinstance(v, torch.Tensor):
            key = f"state/{len(tensors)}"
            tensors[key] = _plain_tensor(v)
            return {_TENSOR: key}
        if isinstance(v, dict):
            if all(isinstance(k, str) for k in v):
                return {k: pack(x, f"{where}.{k}") for k, x in v.items()}
            return {_ITEMS: [[pack(k, where), pack(x, f"{where}[{k!r}]")] for k, x in v.items()]}
        if isinstance(v, tuple):
            return {_TUPLE: [pack(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [pack(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, Path):
            return str(v)
        raise TypeError(f"checkpoint: {where} is a {type(v).__name__}; a checkpoint holds only tensors, numbers, "
                        "strings, lists, tuples and dicts")

    return json.dumps(pack(value, "state"))


def _loads(text: str, tensors: dict[str, torch.Tensor], path: Path) -> Any:
    """Inverse of :func:`_dumps`."""
    def unpack(v: Any) -> Any:
        if isinstance(v, dict):
            if set(v) == {_TENSOR}:
                if v[_TENSOR] not in tensors:
                    raise CheckpointError(f"checkpoint {str(path)!r} names a tensor {v[_TENSOR]!r} it does not hold")
                return tensors[v[_TENSOR]]
            if set(v) == {_TUPLE}:
                return tuple(unpack(x) for x in v[_TUPLE])
            if set(v) == {_ITEMS}:
                return {unpack(k): unpack(x) for k, x in v[_ITEMS]}
            return {k: unpack(x) for k, x in v.items()}
        if isinstance(v, list):
            return [unpack(x) for x in v]
        return v

    return unpack(json.loads(text))


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


def utc_stamp() -> str:
    """The current UTC time to the second, as run directories name it (``20261203-152411``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


def default_run_dir(root: str | os.PathLike, cfg_name: str, dataset: str, seed: int,
                    claim: bool = True) -> Path:
    """A new run directory ``<root>/<model>-<dataset>-s<seed>-<UTC time>``.

    With ``claim`` the directory is created here (atomically), and a second run started in the same
    second gets ``-2``, ``-3``... instead of colliding with the first.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> a, b = default_run_dir(root, "m", "d", 0), default_run_dir(root, "m", "d", 0)
    >>> a != b and a.is_dir() and b.is_dir()
    True
    """
    base = Path(root) / f"{cfg_name}-{dataset}-s{seed}-{utc_stamp()}"
    if not claim:
        return base
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"run_dir: no free name under {str(root)!r} for {base.name!r}")


# ----------------------------------------------------------------------------- model builders
# A checkpoint names its builder; the name is looked up here and never imported, so a file can
# only choose among functions this process registered (code the user runs, not data it reads).
BUILDERS: Registry[Callable[[HSTConfig], nn.Module]] = Registry("model builder")
DEFAULT_BUILDER = "hst-net"
# what checkpoints written before the registry stored ("module:function" of hstlab.build_model)
LEGACY_BUILDERS = {"hstlab:build_model": DEFAULT_BUILDER, "hstlab.model:build_model": DEFAULT_BUILDER}


@BUILDERS.register(DEFAULT_BUILDER)
def build_hst_net(cfg: HSTConfig) -> nn.Module:
    """:func:`hstlab.build_model` (imported on first use)."""
    from hstlab.model import build_model

    return build_model(cfg)


def builder_path(fn: Callable[..., nn.Module]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"


def builder_name(fn: Callable[..., nn.Module]) -> str:
    """What a checkpoint records for ``fn``: its registered name, else its ``module:function`` path.

    An unregistered path is only a note: loading such a checkpoint needs ``build_fn=``.

    Example:
        >>> builder_name(build_hst_net)
        'hst-net'
    """
    for name in BUILDERS.names():
        if BUILDERS.get(name) is fn:
            return name
    path = builder_path(fn)
    return LEGACY_BUILDERS.get(path, path)


def resolve_builder(name: str | None) -> Callable[[HSTConfig], nn.Module]:
    """The registered builder called ``name`` (None: the default, :func:`hstlab.build_model`).

    Legacy ``"hstlab:build_model"`` / ``"hstlab.model:build_model"`` mean the default. Any
    other value is refused (``ValueError`` naming it and the registered names): nothing is
    imported.

    Example:
        >>> resolve_builder("hstlab:build_model") is resolve_builder(None)
        True
        >>> resolve_builder("builtins:input")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: builder='builtins:input' is not a registered model builder; registered: hst-net ...
    """
    if name is None:
        name = DEFAULT_BUILDER
    if isinstance(name, str):
        name = LEGACY_BUILDERS.get(name, name)
        if name in BUILDERS:
            return BUILDERS.get(name)
    raise ValueError(f"builder={name!r} is not a registered model builder; registered: "
                     f"{', '.join(BUILDERS.names())} (a checkpoint names its builder and never imports code: "
                     "load it with build_fn=, or register the builder in hstlab.train.checkpoint.BUILDERS)")


def make_checkpoint(model: nn.Module, cfg: HSTConfig, meta: dict[str, Any],
                    train_state: dict[str, Any] | None = None, *,
                    state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The plain dict :func:`atomic_save` stores (tensors, numbers, strings, lists, dicts only).

    ``state``: the model's full state dict when given (e.g. gathered from FSDP shards), else
    ``model.state_dict()`` copied to the CPU.
    """
    model_state = _cpu_state(model) if state is None else state
    ckpt = {"format": FORMAT, "config": cfg.to_dict(), "model": model_state, "meta": dict(meta)}
    if train_state is not None:
        ckpt["train_state"] = train_state
    return ckpt


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class CheckpointError(ValueError):
    """A checkpoint file that is missing parts, corrupt, truncated, not finite or not hstlab's.

    The message names the file and what is wrong with it.
    """


class NotACheckpoint(CheckpointError):
    """A readable file that is not an hstlab checkpoint (another format or program's file)."""


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``state`` holding NaN or inf (parameters and buffers).

    Example:
        >>> nonfinite_tensors({"w": torch.ones(2), "bn.running_var": torch.tensor([1.0, float("inf")])})
        ['bn.running_var']
    """
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    """Say in one line why ``torch.load`` failed on ``path`` (its own messages run to 20 lines)."""
    text = str(exc)
    if isinstance(exc, EOFError):
        why = "it ends early (truncated)"
    elif isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        why = (f"it asks to load {found.group(1) if found else 'a Python object'}, and a checkpoint may hold only "
               "tensors, numbers, strings, lists and dicts (refused, nothing was run)")
    elif "zip archive" in text or "central directory" in text:
        why = "it is truncated or not a torch zip file"
    else:  # torch's own text is long and may suggest weights_only=False: keep only its reason
        found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = found.group(1).strip() if found else (lines[0] if lines else "")
        why = f"it is corrupt or not a torch file ({type(exc).__name__}{': ' + reason[:120] if reason else ''})"
    return CheckpointError(f"checkpoint {str(path)!r} cannot be read: {why}")


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict without unpickling and check its layout.

    ``path``: a ``.safetensors`` checkpoint, a run directory (its :func:`run_checkpoint`), or a
    legacy ``.pt`` checkpoint, read with ``torch.load(weights_only=True)`` and a
    ``DeprecationWarning``. Refuses (:class:`CheckpointError`, naming the file) an empty,
    truncated or corrupt file, one holding anything but plain data, one missing
    ``config``/``model``/``meta``, and one whose model tensors hold NaN or inf. A missing file
    is a ``FileNotFoundError`` naming it.
    """
    path = Path(path)
    if path.is_dir():
        path = run_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: it is empty (0 bytes)")
    ckpt = _read_legacy(path, map_location) if path.suffix == LEGACY_SUFFIX else _read_safetensors(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise NotACheckpoint(f"{str(path)!r} is not an hstlab checkpoint (format {FORMAT!r})")
    for key, kind in (("config", dict), ("model", dict), ("meta", dict)):
        if not isinstance(ckpt.get(key), kind):
            raise CheckpointError(f"checkpoint {str(path)!r} has no {key!r} dict (damaged or hand-made)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt["model"].items()):
        raise CheckpointError(f"checkpoint {str(path)!r}: 'model' must map names to tensors")
    bad = nonfinite_tensors(ckpt["model"])
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(f"checkpoint {str(path)!r} holds NaN/inf in {', '.join(bad[:3])}{more}; "
                              "it is not a usable state (a diverged run): use an earlier checkpoint or retrain")
    return ckpt


def _read_safetensors(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    """A safetensors checkpoint as the dict :func:`make_checkpoint` made (no pickle involved)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: it is truncated, corrupt or not a "
                              f"safetensors file ({type(exc).__name__}: {first})") from exc
    if metadata.get("format") != FILE_FORMAT:
        raise NotACheckpoint(f"{str(path)!r} is not an hstlab checkpoint (metadata format {FILE_FORMAT!r})")
    if map_location != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    try:
        ckpt = {"format": FORMAT, "config": json.loads(metadata.get("config", "null")),
                "model": {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")},
                "meta": _loads(metadata.get("meta", "null"), tensors, path)}
        if "train_state" in metadata:
            ckpt["train_state"] = _loads(metadata["train_state"], tensors, path)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: its metadata is not valid JSON ({exc})") from exc
    return ckpt


def _read_legacy(path: Path, map_location: str | torch.device) -> Any:
    """A ``.pt`` checkpoint of a run written before safetensors, via the restricted unpickler."""
    warnings.warn(f"{str(path)!r} is a legacy pickled checkpoint (.pt); it is read with weights_only=True, "
                  f"but new runs write {CHECKPOINT_SUFFIX} files and .pt support will be removed: retrain, or "
                  "convert it with hstlab.train.checkpoint.convert_legacy", DeprecationWarning, stacklevel=3)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt file fails in many ways; each becomes one message
        raise _unreadable(path, exc) from exc


def convert_legacy(run_dir: str | os.PathLike) -> list[str]:
    """Rewrite a run directory's legacy ``best.pt``/``last.pt`` as safetensors; returns the names written.

    The ``.pt`` files are read with ``weights_only=True`` and then deleted.
    """
    run_dir = Path(run_dir)
    written = []
    for kind in CHECKPOINT_KINDS:
        legacy = run_dir / f"{kind}{LEGACY_SUFFIX}"
        if legacy.is_file():
            target = run_checkpoint(run_dir, kind, new=True)
            atomic_save(read_checkpoint(legacy), target)
            legacy.unlink()
            written.append(target.name)
    return written


def config_of(ckpt: dict[str, Any], source: str | os.PathLike) -> HSTConfig:
    """The :class:`HSTConfig` stored in a checkpoint (or config.json) dict; errors name ``source``."""
    return config_from_dict(ckpt.get("config"), source)


def config_from_dict(data: Any, source: str | os.PathLike) -> HSTConfig:
    """``HSTConfig.from_dict`` whose errors name the file the dict came from."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(source)!r}: the config must be a JSON object / dict, not {type(data).__name__}")
    try:
        return HSTConfig.from_dict(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{str(source)!r}: invalid config ({exc})") from exc


def load_checkpoint(path: str | os.PathLike, build_fn: Callable[[HSTConfig], nn.Module] | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, HSTConfig, dict[str, Any]]:
    """Rebuild the model a checkpoint holds: ``(model in eval mode, cfg, meta)``.

    ``path`` may be a checkpoint file or a run directory (then its :func:`run_checkpoint`). The model is built
    from the stored config by ``build_fn``; without it, by the registered builder the checkpoint
    names (:data:`BUILDERS`; normally ``"hst-net"``, i.e. :func:`hstlab.build_model`). A name
    that is not registered is refused: a checkpoint never makes hstlab import or call other code.
    The tensors are loaded strictly; a file that is corrupt, not finite or does not fit its
    config raises :class:`CheckpointError` naming it.

    Example:
        >>> model, cfg, meta = load_checkpoint("runs/tiny-digits-dvs")  # doctest: +SKIP
        >>> meta["val_accuracy"]  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        path = run_checkpoint(path)
    ckpt = read_checkpoint(path, map_location)
    cfg = config_of(ckpt, path)
    if build_fn is None:
        try:
            build_fn = resolve_builder(ckpt["meta"].get("builder"))
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {str(path)!r}: meta.{exc}") from exc
    model = build_fn(cfg)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {str(path)!r}: its tensors do not fit the model its config builds "
                              f"({first})") from exc
    model.to(map_location)
    model.eval()
    return model, cfg, ckpt["meta"]


# ----------------------------------------------------------------------------- run directory files
def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from a run directory; missing or corrupt files raise errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist (a run directory written by hstlab train holds it)")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, not {type(data).__name__}")
    return data


def run_files(run_dir: str | os.PathLike) -> list[str]:
    """The names in ``run_dir`` that a run writes (:data:`RUN_FILES`), sorted."""
    run_dir = Path(run_dir)
    return sorted(name for name in RUN_FILES if (run_dir / name).exists()) if run_dir.is_dir() else []


def temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Left-over temp files of :func:`atomic_write_bytes` for a run file (a write killed mid-way)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for path in run_dir.iterdir():
        match = TEMP_NAME.fullmatch(path.name)
        if match and match.group("target") in RUN_FILES and path.is_file() and not path.is_symlink():
            found.append(path)
    return sorted(found)


def remove_temp_files(run_dir: str | os.PathLike) -> list[str]:
    """Delete :func:`temp_files` of ``run_dir``; returns the names removed.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / ".last.safetensors.ab12_x9z.tmp").write_bytes(b"x")
        >>> _ = (d / "notes.tmp").write_bytes(b"keep")
        >>> remove_temp_files(d), sorted(p.name for p in d.iterdir())
        (['.last.safetensors.ab12_x9z.tmp'], ['notes.tmp'])
    """
    removed = []
    for path in temp_files(run_dir):
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


class RunDirExists(FileExistsError):
    """A new run was pointed at a directory that already holds a run (and ``force`` was not given)."""


def check_new_run_dir(run_dir: str | os.PathLike, force: bool = False) -> list[str]:
    """The run files a new run in ``run_dir`` would replace; refuses (:class:`RunDirExists`) unless ``force``.

    Example:
        >>> import tempfile
        >>> check_new_run_dir(tempfile.mkdtemp())
        []
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"run_dir={str(run_dir)!r} exists and is not a directory")
    found = run_files(run_dir)
    if found and not force:
        raise RunDirExists(f"run_dir={str(run_dir)!r} already holds a run ({', '.join(found)}); nothing was "
                           f"changed: resume it (--resume {run_dir}), pick another run directory, or pass "
                           "--force (force=True) to replace it")
    return found


def clear_run_dir(run_dir: str | os.PathLike) -> list[str]:
    """Delete the run files (:data:`RUN_FILES`) and write debris of ``run_dir``; returns the names.

    Other files in the folder are left alone.
    """
    run_dir = Path(run_dir)
    removed = remove_temp_files(run_dir)
    for name in run_files(run_dir):
        (run_dir / name).unlink()
        removed.append(name)
    return sorted(removed)
