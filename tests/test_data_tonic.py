"""Real dataset formats, loaded from tiny fixtures through the same code path as the real data."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tonic
import torch
from aedat4_files import EVENT_DTYPE, write_aedat4

from hstlab.data import DatasetUnavailable, EventFileError, dataset_info, load_dataset
from hstlab.data.events_io import encode_nmnist

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _full_size(monkeypatch):
    """tests/conftest.py sets HSTLAB_SMOKE=1 (which shrinks datasets); these tests need full sizes."""
    monkeypatch.delenv("HSTLAB_SMOKE", raising=False)


def _random_events(n: int, w: int, h: int, t_max: int):
    t = np.sort(RNG.integers(0, t_max, n))
    return RNG.integers(0, w, n), RNG.integers(0, h, n), t, RNG.integers(0, 2, n)


# ----------------------------------------------------------------------------- N-MNIST


@pytest.fixture()
def nmnist_root(tmp_path) -> Path:
    """10 train files for each of digits 3 and 7, and 2 test files, in N-MNIST's layout."""
    root = tmp_path / "nmnist"
    for split, n in (("Train", 10), ("Test", 2)):
        for digit in (3, 7):
            folder = root / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True)
            for k in range(n):
                x, y, t, p = _random_events(50 + k, 34, 34, 300_000)
                (folder / f"{k:05d}.bin").write_bytes(encode_nmnist(x, y, t, p))
    # one timestamp-overflow record (y == 240), as in the real files: tonic adds 2**13 us after it
    one = encode_nmnist([1], [1], [100], [1])
    raw = one + bytes([0, 240, 0, 0, 0]) + encode_nmnist([2], [2], [100], [0])
    (root / "NMNIST" / "Test" / "3" / "overflow.bin").write_bytes(raw)
    return root


def test_nmnist_fixture_loads_through_tonic(nmnist_root):
    parts = {
        s: load_dataset("nmnist", s, root=nmnist_root, time_bins=4)
        for s in ("train", "val", "test")
    }
    assert [len(parts[s]) for s in ("train", "val", "test")] == [18, 2, 5]
    assert sorted(parts["val"].targets.tolist()) == [3, 7]
    x, y = parts["train"][0]
    assert x.shape == (4, 2, 34, 34) and y in (3, 7) and x.sum() > 0
    # the split is recorded in the folder and read back
    assert (nmnist_root / "hstlab_split.json").exists()
    again = load_dataset("nmnist", "val", root=nmnist_root, time_bins=4)
    assert again.source.ids == parts["val"].source.ids
    # tonic's overflow handling is kept: the second real event is at 100 + 2**13 us
    i = parts["test"].source.ids.index("NMNIST/Test/3/overflow.bin")
    assert parts["test"].events(i)["t"].tolist() == [100, 100 + 2**13]


def test_nmnist_frames_count_all_events(nmnist_root):
    ds = load_dataset("nmnist", "train", root=nmnist_root, time_bins=3, cache=False)
    for i in range(3):
        assert ds[i][0].sum().item() == len(ds.events(i))


def test_missing_dataset_errors_fast_and_leaves_nothing(tmp_path):
    for name, hint in (
        ("nmnist", "NMNIST/Train"),
        ("dvsgesture", "ibmGestureTrain"),
        ("cifar10dvs", "CIFAR10DVS/<class>"),
        ("shd", "shd_train.h5"),
    ):
        folder = tmp_path / name
        with pytest.raises(DatasetUnavailable) as err:
            load_dataset(name, root=folder)
        msg = str(err.value)
        assert name in msg and str(folder) in msg and hint in msg
        assert not folder.exists()
        assert dataset_info(name, root=folder)["present"] is False


def test_existing_files_are_not_overwritten(nmnist_root):
    record = nmnist_root / "hstlab_split.json"
    record.write_text('{"split": {}}')
    with pytest.raises(ValueError, match="hstlab_split.json"):
        load_dataset("nmnist", "val", root=nmnist_root)
    assert record.read_text() == '{"split": {}}'


# ----------------------------------------------------------------------------- DVS Gesture


@pytest.fixture()
def gesture_root(tmp_path) -> Path:
    """tonic's preprocessed DVS Gesture layout: user folders holding <label>.npy [N, 4] (x,y,p,t ms)."""
    root = tmp_path / "dvsgesture"
    for split, users in (("ibmGestureTrain", range(1, 11)), ("ibmGestureTest", range(24, 26))):
        for u in users:
            folder = root / "DVSGesture" / split / f"user{u:02d}_fluorescent_led"
            folder.mkdir(parents=True)
            for label in (0, 5):
                x, y, t, p = _random_events(200, 128, 128, 5000)  # t in ms
                t = t + 1000  # recordings do not start at 0: the clock starts at the first event
                np.save(folder / f"{label}.npy", np.stack([x, y, p, t], 1).astype(np.int64))
    return root


def test_dvsgesture_fixture(gesture_root):
    ds = load_dataset("dvsgesture", "train", root=gesture_root, time_bins=5)
    test = load_dataset("dvsgesture", "test", root=gesture_root, time_bins=5)
    val = load_dataset("dvsgesture", "val", root=gesture_root, time_bins=5)
    assert (len(ds), len(val), len(test)) == (18, 2, 4)
    x, y = ds[0]
    assert x.shape == (5, 2, 128, 128) and y in (0, 5)
    assert x.sum().item() == 200  # all events inside the 6 s window from the first event
    ev = ds.events(0)
    assert ev["t"].min() >= 1_000_000  # tonic converted ms to us
    assert ds.classes[5] == tonic.datasets.DVSGesture.classes[5]
    small = load_dataset("dvsgesture", "test", root=gesture_root, time_bins=2, downsample=4)
    assert small[0][0].shape == (2, 2, 32, 32) and small[0][0].sum().item() == 200


def test_dvsgesture_truncated_and_outside_sensor(gesture_root):
    victim = min((gesture_root / "DVSGesture" / "ibmGestureTest").rglob("*.npy"))
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(EventFileError, match=victim.name):
        load_dataset("dvsgesture", "test", root=gesture_root, time_bins=2)
    np.save(victim, np.array([[5, 5, 1, 10], [130, 5, 0, 20]], dtype=np.int64))
    with pytest.raises(EventFileError, match="event 1.*outside the sensor"):
        load_dataset("dvsgesture", "test", root=gesture_root, time_bins=2)


# ----------------------------------------------------------------------------- SHD


@pytest.fixture()
def shd_root(tmp_path) -> Path:
    """SHD's HDF5 files: ragged spikes/times (s) and spikes/units, labels, extra/keys, speaker."""
    root = tmp_path / "shd"
    (root / "SHD").mkdir(parents=True)
    for fname, n in (("shd_train.h5", 20), ("shd_test.h5", 4)):
        with h5py.File(root / "SHD" / fname, "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            for i in range(n):
                k = 30 + i
                times[i] = np.sort(RNG.uniform(0, 0.9, k)).astype(np.float16)
                units[i] = RNG.integers(0, 700, k).astype(np.uint16)
            f["labels"] = (np.arange(n) % 2).astype(np.uint16)
            f["extra/keys"] = np.array([b"zero", b"one"] + [b"x"] * 18)
            f["extra/speaker"] = np.zeros(n, dtype=np.uint16)
    return root


def test_shd_fixture(shd_root):
    train = load_dataset("shd", "train", root=shd_root, time_bins=10)
    val = load_dataset("shd", "val", root=shd_root, time_bins=10)
    test = load_dataset("shd", "test", root=shd_root, time_bins=10)
    assert (len(train), len(val), len(test)) == (18, 2, 4)
    x, y = test[1]
    assert x.shape == (10, 700) and y == 1
    assert x.sum().item() == 31  # every spike of sample 1 (31 spikes, all < 1 s)
    with h5py.File(shd_root / "SHD" / "shd_test.h5") as f:
        units = f["spikes/units"][1]
    assert torch.equal(x.sum(0).nonzero().flatten(), torch.as_tensor(np.unique(units)).long())
    assert test.classes[:2] == ["zero", "one"]


# ----------------------------------------------------------------------------- CIFAR10-DVS


def cifar_events(k: int) -> np.ndarray:
    """40 events of recording ``k``, absolute microsecond timestamps as the DV software records them."""
    ev = np.zeros(40, dtype=EVENT_DTYPE)
    ev["t"] = 1_600_000_000_000_000 + k * 10_000_000 + np.arange(40) * 1000
    ev["x"], ev["y"], ev["on"] = (np.arange(40) + k) % 128, 3 + k, np.arange(40) % 2
    return ev


@pytest.fixture()
def cifar_root(tmp_path) -> Path:
    """CIFAR10-DVS as tonic 1.7 reads it: CIFAR10DVS/<class>/<n>.aedat4 (20 per class), real AEDAT 4.0."""
    root = tmp_path / "cifar10dvs"
    for cls in ("airplane", "cat"):
        folder = root / "CIFAR10DVS" / cls
        folder.mkdir(parents=True)
        for k in range(20):
            write_aedat4(folder / f"cifar10_{cls}_{k}.aedat4", cifar_events(k), width=128, height=128,
                         packet_size=16)
    return root


def test_cifar10dvs_layout_and_recorded_split(cifar_root):
    parts = {
        s: load_dataset("cifar10dvs", s, root=cifar_root, time_bins=4)
        for s in ("train", "val", "test")
    }
    sizes = {s: len(d) for s, d in parts.items()}
    assert sizes == {"train": 32, "val": 4, "test": 4}  # 90/10 per class, val = 10 % of the rest
    assert sorted(parts["test"].targets.tolist()) == [0, 0, 3, 3]  # airplane=0, cat=3
    assert (cifar_root / "hstlab_split.json").exists()
    ids = [set(d.source.ids) for d in parts.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    x, _ = parts["train"][0]
    assert x.shape == (4, 2, 128, 128) and x.sum().item() == 40  # clock from the first event
    k = int(Path(parts["train"].source.ids[0]).stem.rsplit("_", 1)[1])
    ev = cifar_events(k)  # each event lands in its bin, polarity channel and pixel
    bins = np.minimum((ev["t"] - ev["t"][0]) * 4 // 1_300_000, 3)  # 40 ms of a 1.3 s window: bin 0
    expected = torch.zeros(4, 2, 128, 128)
    for b, p, x_, y_ in zip(bins, ev["on"].astype(int), ev["x"], ev["y"]):
        expected[b, p, y_, x_] += 1
    assert torch.equal(x, expected)


def test_cifar10dvs_without_decoder_says_what_to_install(cifar_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "aedat", None)  # `import aedat` now fails as if not installed
    with pytest.raises(ImportError, match=r"\.aedat4: tonic needs the 'aedat' package.*pip install aedat"):
        load_dataset("cifar10dvs", "test", root=cifar_root, time_bins=2)[0]


def test_cifar10dvs_corrupt_file_names_the_file(cifar_root):
    for path in cifar_root.rglob("*.aedat4"):  # every recording cut inside its last packet
        path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(EventFileError, match=r"cifar10_(airplane|cat)_\d+\.aedat4: cannot be read"):
        load_dataset("cifar10dvs", "test", root=cifar_root, time_bins=2)[0]
