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
import pickle
import platform
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hstlab.config import HSTConfig
from hstlab.registry import Registry

FORMAT = "hstlab-checkpoint-1"


# what a run directory may hold (written by train_run, the Trainer and write_model_card)
RUN_FILES = ("run.json", "config.json", "metrics.json", "history.csv", "last.pt", "best.pt",
             "model_card.md", "model_card.html", "model_card.json")
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
                    train_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plain dict stored in a ``.pt`` file (tensors, numbers, strings, lists, dicts only)."""
    ckpt = {"format": FORMAT, "config": cfg.to_dict(), "model": _cpu_state(model), "meta": dict(meta)}
    if train_state is not None:
        ckpt["train_state"] = train_state
    return ckpt


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class CheckpointError(ValueError):
    """A checkpoint file that is missing parts, corrupt, truncated, not finite or not hstlab's.

    The message names the file and what is wrong with it.
    """


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
    """Load a checkpoint dict safely (``weights_only=True``) and check its layout.

    Refuses (:class:`CheckpointError`, naming the file) an empty, truncated or corrupt file, one
    holding anything but plain data, one missing ``config``/``model``/``meta``, and one whose
    model tensors hold NaN or inf. A missing file is a ``FileNotFoundError`` naming it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: it is empty (0 bytes)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt file fails in many ways; each becomes one message
        raise _unreadable(path, exc) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an hstlab checkpoint (format {FORMAT!r})")
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

    ``path`` may be a ``.pt`` file or a run directory (then ``best.pt``). The model is built
    from the stored config by ``build_fn``; without it, by the registered builder the checkpoint
    names (:data:`BUILDERS`; normally ``"hst-net"``, i.e. :func:`hstlab.build_model`). A name
    that is not registered is refused: a checkpoint never makes hstlab import or call other code.
    The tensors are loaded strictly; a file that is corrupt, not finite or does not fit its
    config raises :class:`CheckpointError` naming it.

    Example:
        >>> model, cfg, meta = load_checkpoint("runs/tiny-digits-dvs/best.pt")  # doctest: +SKIP
        >>> meta["val_accuracy"]  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
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
        >>> d = Path(tempfile.mkdtemp()); _ = (d / ".last.pt.ab12_x9z.tmp").write_bytes(b"x")
        >>> _ = (d / "notes.tmp").write_bytes(b"keep")
        >>> remove_temp_files(d), sorted(p.name for p in d.iterdir())
        (['.last.pt.ab12_x9z.tmp'], ['notes.tmp'])
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
