"""Hostile and careless data: damaged files, records, caches and options (issue #21, items 5c, 9).

One table, one test. Each case builds a small dataset folder in the real format, damages it the
way a careless copy, a full disk or a stray edit would, and loads it. A case expects either an
exact exception type whose one-line message names the file (or the option), or a load that
succeeds with a :class:`DataWarning` naming what was repaired or skipped. Every case also checks
that the loader changed none of the user's files (only the frame cache may be rewritten).
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from aedat4_files import EVENT_DTYPE, write_aedat4

from hstlab.data import (
    DataFileError,
    DataOptionError,
    DatasetUnavailable,
    DataWarning,
    EventFileError,
    SplitRecordError,
    load_dataset,
)
from hstlab.data.digits_dvs import build_digits_dvs
from hstlab.data.events_io import encode_nmnist

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _full_size(monkeypatch):
    monkeypatch.delenv("HSTLAB_SMOKE", raising=False)


@pytest.fixture(scope="session")
def digits_src(tmp_path_factory) -> Path:
    """A 20-digit digits-dvs build (seed 0): 10 train and 10 val files, no test files."""
    return build_digits_dvs(tmp_path_factory.mktemp("hostile") / "digits-dvs", seed=0, n_samples=20)


# ----------------------------------------------------------------------------- folder writers


def _events(n: int, w: int, h: int, t_max: int):
    t = np.sort(RNG.integers(0, t_max, n))
    return RNG.integers(0, w, n), RNG.integers(0, h, n), t, RNG.integers(0, 2, n)


def nmnist_folder(root: Path) -> Path:
    for split, n in (("Train", 10), ("Test", 2)):
        for digit in (3, 7):
            folder = root / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True)
            for k in range(n):
                (folder / f"{k:05d}.bin").write_bytes(encode_nmnist(*_events(40, 34, 34, 300_000)))
    return root


def shd_file(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            times[i] = np.sort(RNG.uniform(0, 0.9, 20)).astype(np.float16)
            units[i] = RNG.integers(0, 700, 20).astype(np.uint16)
        f["labels"] = (np.arange(n) % 2).astype(np.uint16)
        f["extra/keys"] = np.array([b"zero", b"one"])
        f["extra/speaker"] = np.zeros(n, dtype=np.uint16)


def shd_folder(root: Path) -> Path:
    shd_file(root / "SHD" / "shd_train.h5", 20)
    shd_file(root / "SHD" / "shd_test.h5", 4)
    return root


def cifar_folder(root: Path) -> Path:
    for cls in ("airplane", "cat"):
        (root / "CIFAR10DVS" / cls).mkdir(parents=True)
        for k in range(10):
            ev = np.zeros(30, dtype=EVENT_DTYPE)
            ev["t"], ev["x"], ev["y"], ev["on"] = np.arange(30) * 1000, k, 3, np.arange(30) % 2
            write_aedat4(root / "CIFAR10DVS" / cls / f"{cls}_{k}.aedat4", ev, 128, 128)
    return root


def gesture_folder(root: Path) -> Path:
    for split, users in (("ibmGestureTrain", range(1, 11)), ("ibmGestureTest", (24,))):
        for u in users:
            folder = root / "DVSGesture" / split / f"user{u:02d}_led"
            folder.mkdir(parents=True)
            for label in (0, 5):
                x, y, t, p = _events(50, 128, 128, 5000)
                np.save(folder / f"{label}.npy", np.stack([x, y, p, t], 1).astype(np.int64))
    return root


# ----------------------------------------------------------------------------- the table


@dataclass
class Ctx:
    """A case's folders: ``root`` is the dataset folder it damages (under ``tmp``)."""

    tmp: Path
    digits_src: Path
    root: Path | None = None

    def digits(self) -> Path:
        self.root = self.tmp / "digits-dvs"
        shutil.copytree(self.digits_src, self.root, ignore=shutil.ignore_patterns("cache"))
        return self.root

    def val_file(self) -> Path:
        return self.root / next(p for p, _ in _record(self.root)["splits"]["val"])

    def make(self, name: str, writer: Callable[[Path], Path]) -> Path:
        self.root = writer(self.tmp / name)
        return self.root


def _record(root: Path) -> dict:
    return json.loads((root / "splits.json").read_text())


def _digits(root: Path, split: str = "val", **kw):
    return load_dataset("digits-dvs", split, root=root, time_bins=4, build=False, **kw)


@dataclass
class Case:
    """``setup(ctx)`` damages a folder and returns (text the message must hold, the load call,
    an optional check of the loaded dataset or of an undamaged load after the error)."""

    id: str
    setup: Callable[[Ctx], tuple[str, Callable[[], object], Callable | None]]
    error: type[Exception] | None  # None: the load succeeds with a DataWarning


def _bin_cut(keep: Callable[[int], int]):
    """Cut one val file of digits-dvs to ``keep(size)`` bytes; the train split still loads."""

    def setup(ctx: Ctx):
        root = ctx.digits()
        victim = ctx.val_file()
        data = victim.read_bytes()
        victim.write_bytes(data[: keep(len(data))])
        return victim.name, lambda: _digits(root)[0], lambda: _digits(root, "train")[0]

    return setup


def _bin_zeroed(ctx: Ctx):
    root = ctx.digits()
    victim = ctx.val_file()
    victim.write_bytes(bytes(victim.stat().st_size))  # same size: only the checksum can tell
    return victim.name, lambda: _digits(root), lambda: _digits(root, "train")


def _bin_missing(ctx: Ctx):
    root = ctx.digits()
    victim = ctx.val_file()
    victim.unlink()
    return victim.name, lambda: _digits(root), lambda: _digits(root, "train")


def _bin_extra(ctx: Ctx):
    root = ctx.digits()
    stray = root / "NMNIST" / "Train" / "4" / "99999.bin"
    shutil.copy(ctx.val_file(), stray)

    def check(ds):
        assert len(ds) == 10 and "NMNIST/Train/4/99999.bin" not in ds.source.ids
        with pytest.warns(DataWarning, match="99999.bin"):
            assert len(_digits(root, "train")) == 10

    return stray.name, lambda: _digits(root), check


def _record_text(text: bytes | str, needle: str = "splits.json"):
    def setup(ctx: Ctx):
        root = ctx.digits()
        path = root / "splits.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return needle, lambda: _digits(root), None

    return setup


def _record_truncated(ctx: Ctx):
    root = ctx.digits()
    path = root / "splits.json"
    path.write_bytes(path.read_bytes()[:200])
    return "splits.json: damaged split record (not valid JSON", lambda: _digits(root), None


def _record_old(ctx: Ctx):
    """A record written before event counts were kept: loads, with a notice."""
    root = ctx.digits()
    meta = _record(root)
    del meta["events"], meta["record_version"]
    (root / "splits.json").write_text(json.dumps(meta))

    def check(ds):
        assert len(ds) == 10 and ds[0][0].sum() > 0

    return "without per-file event counts", lambda: _digits(root), check


def _cache(damage: Callable[[Path], None]):
    """Build the val frame cache, damage it; the load rebuilds it with a notice."""

    def setup(ctx: Ctx):
        root = ctx.digits()
        _digits(root)
        (cached,) = (root / "cache").glob("*.npy")
        damage(cached)
        fresh = _digits(root, cache=False)

        def check(ds):
            assert all(torch.equal(ds[i][0], fresh[i][0]) for i in range(len(ds)))
            assert fresh[0][0].sum() > 0
            with warnings.catch_warnings():  # the rebuilt cache verifies on the next load
                warnings.simplefilter("error", DataWarning)
                _digits(root)

        return cached.name, lambda: _digits(root), check

    return setup


def _zero_cache(path: Path) -> None:
    arr = np.load(path, mmap_mode="r+")
    arr[:] = 0
    arr.flush()


def _not_a_build(ctx: Ctx):
    root = ctx.tmp / "digits-dvs"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    return str(root), lambda: load_dataset("digits-dvs", root=root), None


def _missing(name: str):
    """No files at all (the layout named in the message is checked in a test below)."""

    def setup(ctx: Ctx):
        root = ctx.tmp / name
        return str(root), lambda: load_dataset(name, root=root), None

    return setup


def _option(name: str, value: object, dataset: str = "digits-dvs"):
    def setup(ctx: Ctx):
        root = ctx.digits() if dataset == "digits-dvs" else ctx.tmp / dataset
        return (
            f"{name}={value!r}",
            lambda: load_dataset(dataset, "val", root=root, time_bins=4, **{name: value}),
            None,
        )

    return setup


def _shd(damage: Callable[[Path], str]):
    def setup(ctx: Ctx):
        root = ctx.make("shd", shd_folder)
        load_dataset("shd", "val", root=root, time_bins=4, cache=False)  # records the split
        needle = damage(root / "SHD" / "shd_train.h5")
        load = lambda: load_dataset("shd", "train", root=root, time_bins=4)[0]  # noqa: E731
        return needle, load, lambda: load_dataset("shd", "test", root=root, time_bins=4)[0]

    return setup


def _shd_garbage(path: Path) -> str:
    path.write_bytes(RNG.integers(0, 256, 4000).astype(np.uint8).tobytes())
    return "shd_train.h5: not a readable HDF5 file"


def _shd_no_labels(path: Path) -> str:
    with h5py.File(path, "a") as f:
        del f["labels"]
    return "shd_train.h5: no labels"


def _shd_short_labels(path: Path) -> str:
    with h5py.File(path, "a") as f:
        del f["labels"]
        f["labels"] = np.zeros(5, dtype=np.uint16)
    return "shd_train.h5: 5 labels but 20 spikes/times"


def _shd_nan_times(path: Path) -> str:
    with h5py.File(path, "a") as f:
        for i in range(20):
            f["spikes/times"][i] = np.full(20, np.nan, dtype=np.float16)
    return "shd_train.h5#"


def _cifar_garbage(ctx: Ctx):
    root = ctx.make("cifar10dvs", cifar_folder)
    load_dataset("cifar10dvs", "test", root=root, cache=False)  # records the split
    for path in root.rglob("*.aedat4"):  # the DV decoder reports "invalid utf-8" for these
        path.write_bytes(b"\xff\xfe" + RNG.integers(0, 256, 500).astype(np.uint8).tobytes())
    return (
        "not an AEDAT 4.0 file",
        lambda: load_dataset("cifar10dvs", "test", root=root, cache=False),
        None,
    )


def _gesture(damage: Callable[[Path], None], needle: str):
    def setup(ctx: Ctx):
        root = ctx.make("dvsgesture", gesture_folder)
        load_dataset("dvsgesture", "val", root=root, time_bins=2, cache=False)  # records the split
        victim = min((root / "DVSGesture" / "ibmGestureTest").rglob("*.npy"))
        damage(victim)
        return (
            f"{victim.name}: {needle}",
            lambda: load_dataset("dvsgesture", "test", root=root, time_bins=2, cache=False),
            lambda: load_dataset("dvsgesture", "train", root=root, time_bins=2, cache=False),
        )

    return setup


def _nmnist_record(text: str, needle: str):
    def setup(ctx: Ctx):
        root = ctx.make("nmnist", nmnist_folder)
        load_dataset("nmnist", "val", root=root, time_bins=2)  # records the split
        (root / "hstlab_split.json").write_text(text)
        return needle, lambda: load_dataset("nmnist", "val", root=root), None

    return setup


def _nmnist_extra(ctx: Ctx):
    root = ctx.make("nmnist", nmnist_folder)
    before = load_dataset("nmnist", "train", root=root, time_bins=2).source.ids
    stray = root / "NMNIST" / "Train" / "3" / "extra.bin"
    stray.write_bytes(encode_nmnist(*_events(30, 34, 34, 300_000)))

    def check(ds):
        assert ds.source.ids == before

    return "NMNIST/Train/3/extra.bin", lambda: load_dataset("nmnist", "train", root=root), check


def _nmnist_empty_bin(ctx: Ctx):
    """Real N-MNIST has no per-file record, but an empty recording is never valid."""
    root = ctx.make("nmnist", nmnist_folder)
    load_dataset("nmnist", "val", root=root, time_bins=2, cache=False)  # records the split
    victim = root / "NMNIST" / "Test" / "7" / "00001.bin"
    victim.write_bytes(b"")
    return (
        "NMNIST/Test/7/00001.bin: empty (0 bytes)",
        lambda: load_dataset("nmnist", "test", root=root, time_bins=2, cache=False),
        lambda: load_dataset("nmnist", "train", root=root, time_bins=2, cache=False),
    )


def _nmnist_bad_folder(ctx: Ctx):
    root = ctx.make("nmnist", nmnist_folder)
    odd = root / "NMNIST" / "Train" / "backup"
    odd.mkdir()
    (odd / "a.bin").write_bytes(encode_nmnist([1], [1], [1], [1]))
    return str(root), lambda: load_dataset("nmnist", root=root), None


CASES = [
    # 5c: event files that would load as thinned or blank samples
    Case("bin-cut-on-event-boundary", _bin_cut(lambda n: n - 5 * 100), EventFileError),
    Case("bin-cut-to-zero-bytes", _bin_cut(lambda n: 0), EventFileError),
    Case("bin-cut-mid-record", _bin_cut(lambda n: n - 3), EventFileError),
    Case("bin-zeroed-same-size", _bin_zeroed, EventFileError),
    Case("bin-listed-but-missing", _bin_missing, SplitRecordError),
    Case("bin-extra-not-in-record", _bin_extra, None),
    # 9: damaged split records
    Case("splits-json-truncated", _record_truncated, SplitRecordError),
    Case("splits-json-not-utf8", _record_text(b"\xff\xfe\x00garbage"), SplitRecordError),
    Case("splits-json-a-list", _record_text("[1, 2]"), SplitRecordError),
    Case("splits-json-no-splits", _record_text('{"seed": 0, "generator_version": 1}',
                                               "field 'splits': missing"), SplitRecordError),
    Case("splits-json-bad-entry", _record_text(
        '{"seed": 0, "generator_version": 1, "splits": {"train": [["a.bin"]], "val": [], '
        '"test": []}}', "splits.train entry"), SplitRecordError),
    Case("splits-json-old-format", _record_old, None),
    Case("hstlab-split-json-damaged", _nmnist_record('{"split": {"NMNIST', "hstlab_split.json"),
         SplitRecordError),
    Case("hstlab-split-json-bad-split", _nmnist_record(
        '{"split": {"NMNIST/Train/3/00000.bin": "dev"}}', "'dev'"), SplitRecordError),
    Case("nmnist-extra-file", _nmnist_extra, None),
    Case("nmnist-odd-folder", _nmnist_bad_folder, DataFileError),
    Case("nmnist-bin-zero-bytes", _nmnist_empty_bin, EventFileError),
    # 9: the frame cache is rebuilt, never fatal, never blank
    Case("cache-zeroed", _cache(_zero_cache), None),
    Case("cache-truncated", _cache(lambda p: p.write_bytes(p.read_bytes()[:5000])), None),
    Case("cache-garbage-header", _cache(lambda p: p.write_bytes(b"x" * p.stat().st_size)), None),
    Case("cache-checksum-lost", _cache(lambda p: p.with_suffix(".json").unlink()), None),
    # 9: other formats
    Case("shd-garbage-h5", _shd(_shd_garbage), EventFileError),
    Case("shd-h5-without-labels", _shd(_shd_no_labels), EventFileError),
    Case("shd-h5-labels-mismatch", _shd(_shd_short_labels), EventFileError),
    Case("shd-h5-nan-times", _shd(_shd_nan_times), EventFileError),
    Case("cifar10dvs-garbage-aedat4", _cifar_garbage, EventFileError),
    Case("dvsgesture-garbage-npy", _gesture(lambda p: p.write_bytes(b"not numpy at all"),
                                            "not a NumPy .npy file"), EventFileError),
    Case("dvsgesture-npy-wrong-shape", _gesture(lambda p: np.save(p, np.zeros((5, 3), np.int64)),
                                                "cannot be read as a DVS Gesture .npy event array"),
         EventFileError),
    # 9: missing datasets and folders
    Case("digits-folder-not-a-build", _not_a_build, DataFileError),
    Case("nmnist-missing", _missing("nmnist"), DatasetUnavailable),
    Case("shd-missing", _missing("shd"), DatasetUnavailable),
    # 5c: options (type, finite, range)
    Case("window-ms-nan", _option("window_ms", float("nan")), DataOptionError),
    Case("window-ms-inf", _option("window_ms", float("inf")), DataOptionError),
    Case("window-ms-negative", _option("window_ms", -5.0), DataOptionError),
    Case("window-ms-text", _option("window_ms", "fast"), DataOptionError),
    Case("window-ms-below-1us-bins", _option("window_ms", 1e-6), DataOptionError),
    Case("limit-zero", _option("limit", 0), DataOptionError),
    Case("limit-fraction", _option("limit", 2.5), DataOptionError),
    Case("cache-not-bool", _option("cache", "yes"), DataOptionError),
    Case("seed-negative", _option("seed", -1), DataOptionError),
    Case("seed-not-the-built-one", _option("seed", 1), DataOptionError),
    Case("lorenz-neurons-zero", _option("neurons", 0, "lorenz-spikes"), DataOptionError),
    Case("lorenz-bin-ms-nan", _option("bin_ms", float("nan"), "lorenz-spikes"), DataOptionError),
    Case("text-one-hot-text", _option("one_hot", "no", "text-chars"), DataOptionError),
    Case("dvsgesture-downsample-zero", _option("downsample", 0, "dvsgesture"), DataOptionError),
    Case("shd-window-nan", _option("window_ms", float("nan"), "shd"), DataOptionError),
]


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except frame caches (the one thing a load may rewrite)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "cache" not in p.relative_to(root).parts
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_data(case: Case, tmp_path: Path, digits_src: Path):
    ctx = Ctx(tmp_path, digits_src)
    needle, load, after = case.setup(ctx)
    before = _files(tmp_path)
    if case.error is not None:
        with pytest.raises(Exception) as info:
            load()
        err = info.value
        assert type(err) is case.error, f"{type(err).__name__}: {err}"
        assert isinstance(err, ValueError)  # the CLI prints ValueErrors as one line, exit 2
        msg = str(err)
        assert needle in msg, msg
        assert "\n" not in msg, msg
        if case.error is DataOptionError:
            assert "allowed:" in msg, msg
        if after is not None:
            after()  # the rest of the dataset still loads
    else:
        with pytest.warns(DataWarning, match=re.escape(needle)):
            ds = load()
        if after is not None:
            after(ds)
    assert _files(tmp_path) == before  # the user's files are untouched


def test_table_is_large_and_covers_every_error_class():
    assert len(CASES) >= 15
    assert {c.error for c in CASES} >= {
        EventFileError, SplitRecordError, DataFileError, DataOptionError, DatasetUnavailable, None
    }


@pytest.mark.parametrize("name,hint", [("nmnist", "NMNIST/Train"), ("shd", "shd_train.h5"),
                                       ("cifar10dvs", "CIFAR10DVS/<class>")])
def test_missing_dataset_is_one_line_naming_folder_and_layout(name, hint, tmp_path):
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset(name, root=tmp_path / name)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / name) in msg and hint in msg
    assert isinstance(info.value, FileNotFoundError)  # callers testing for that still work
    assert "\n" in info.value.layout  # the readable layout is kept on the exception


def test_every_dataset_declares_the_type_of_every_option():
    """No option reaches a loader unchecked: each keyword of each loader has a declared type."""
    import inspect

    from hstlab.data import DATASETS

    for name in DATASETS.names():
        spec = DATASETS.get(name)
        assert spec.options, name
        load = spec.load.make if hasattr(spec.load, "make") else spec.load
        params = inspect.signature(load).parameters.values()
        keywords = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        keywords -= {"split_of", "record"}  # internal to digits-dvs
        assert keywords <= set(spec.options), (name, keywords - set(spec.options))


def test_good_options_and_files_still_load(digits_src):
    ds = _digits(digits_src, window_ms=100, limit=5, cache=False)
    assert len(ds) == 5 and ds.window_us == 100_000.0 and ds[0][0].sum() > 0
