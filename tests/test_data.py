"""digits-dvs generation, N-MNIST files, frames on a fixed clock, cache, errors and CLI."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tonic
import torch

from hstlab.data import (
    DatasetUnavailable,
    EventFileError,
    dataset_info,
    list_datasets,
    load_dataset,
    time_first_collate,
)
from hstlab.data import cli as data_cli
from hstlab.data.digits_dvs import WINDOW_US, build_digits_dvs
from hstlab.data.events_io import NMNIST_DTYPE, encode_nmnist, read_nmnist_bin
from hstlab.data.frames import events_to_frames

SMALL = 60  # digits in the quick builds (6 per class)


@pytest.fixture(autouse=True)
def _full_size(monkeypatch):
    """tests/conftest.py sets HSTLAB_SMOKE=1 (which shrinks datasets); these tests need full sizes."""
    monkeypatch.delenv("HSTLAB_SMOKE", raising=False)


@pytest.fixture(scope="session")
def small_build(tmp_path_factory) -> Path:
    """A 60-digit digits-dvs build (seed 3), made once per session."""
    return build_digits_dvs(
        tmp_path_factory.mktemp("dd") / "digits-dvs", seed=3, n_samples=SMALL, workers=1
    )


@pytest.fixture(scope="session")
def full_build(tmp_path_factory) -> Path:
    """All 1,797 digits (seed 0), built once per session (slow tests only)."""
    return build_digits_dvs(tmp_path_factory.mktemp("dd-full") / "digits-dvs", seed=0)


def _bins(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.bin"))


# ----------------------------------------------------------------------------- generation


def test_same_seed_gives_identical_bytes(small_build, tmp_path):
    again = build_digits_dvs(tmp_path / "again", seed=3, n_samples=SMALL, workers=1)
    a, b = _bins(small_build), _bins(again)
    assert [p.relative_to(small_build) for p in a] == [p.relative_to(again) for p in b]
    assert len(a) == SMALL
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a, b))
    assert (small_build / "splits.json").read_bytes() == (again / "splits.json").read_bytes()


def test_other_seed_gives_other_events(small_build, tmp_path):
    other = build_digits_dvs(tmp_path / "other", seed=4, n_samples=12, workers=1)
    mine = {p.name: p for p in _bins(small_build)}
    shared = [p for p in _bins(other) if p.name in mine]  # the split depends on the seed too
    assert shared
    assert all(p.read_bytes() != mine[p.name].read_bytes() for p in shared)


def test_files_read_by_tonic_reader_match_layout(small_build):
    ds = tonic.datasets.NMNIST.__new__(tonic.datasets.NMNIST)  # only for the class constants
    assert ds.sensor_size == (34, 34, 2)
    for path in _bins(small_build)[:10]:
        ev = tonic.io.read_mnist_file(str(path), dtype=NMNIST_DTYPE)
        assert len(ev) > 1000
        assert ev["x"].max() < 34 and ev["y"].max() < 34 and ev["x"].min() >= 0
        assert set(np.unique(ev["p"])) == {0, 1}
        assert np.all(np.diff(ev["t"]) >= 0) and 0 <= ev["t"].min() and ev["t"].max() < WINDOW_US
        assert path.parent.parent.name in ("Train", "Test") and path.parent.name.isdigit()


def test_event_statistics_in_nmnist_range(small_build):
    counts, on = [], []
    for path in _bins(small_build):
        ev = read_nmnist_bin(path)
        counts.append(len(ev))
        on.append(ev["p"].sum())
    counts = np.array(counts)
    assert 3000 < counts.mean() < 7000  # real N-MNIST: ~4-5k events per sample
    assert 0.4 < np.sum(on) / counts.sum() < 0.6  # roughly balanced ON/OFF
    # three saccades: activity in each third of the recording
    ev = read_nmnist_bin(_bins(small_build)[0])
    thirds = np.histogram(ev["t"], bins=3, range=(0, 300_000))[0]
    assert (thirds > 0.15 * len(ev)).all()


def test_noise_events_spread_over_sensor(small_build):
    """Background noise (~1 Hz/pixel) puts some events far from the digit's path."""
    ev = read_nmnist_bin(_bins(small_build)[0])
    border = (ev["x"] <= 1) | (ev["y"] <= 1) | (ev["x"] >= 32) | (ev["y"] >= 32)
    assert 10 < border.sum() < 400  # 1 Hz x 260 border pixels x 0.3 s ~ 80


@pytest.mark.slow
def test_full_build_splits_and_stats(full_build):
    meta = json.loads((full_build / "splits.json").read_text())
    sizes = {s: len(v) for s, v in meta["splits"].items()}
    assert sum(sizes.values()) == 1797 and len(_bins(full_build)) == 1797
    for split, items in meta["splits"].items():
        assert {label for _, label in items} == set(range(10)), split
    stats = json.loads((full_build / "stats.json").read_text())
    assert 3000 < stats["events_per_sample_mean"] < 7000
    assert 0.4 < stats["on_fraction"] < 0.6
    info = dataset_info("digits-dvs", root=full_build)
    assert info["sizes"] == sizes and info["event_stats"] == stats
    for split in ("train", "val", "test"):
        ds = load_dataset("digits-dvs", split, root=full_build, time_bins=4, cache=False)
        assert len(ds) == sizes[split] and set(ds.targets.tolist()) == set(range(10))


# ----------------------------------------------------------------------------- loading


def test_load_dataset_shapes_and_cache(small_build):
    ds = load_dataset("digits-dvs", "train", root=small_build, time_bins=8, seed=3)
    x, y = ds[0]
    assert x.shape == (8, 2, 34, 34) and x.dtype == torch.float32 and isinstance(y, int)
    cached = list((small_build / "cache").glob("digits-dvs-train-T8-*.npy"))
    assert len(cached) == 1
    fresh = load_dataset("digits-dvs", "train", root=small_build, time_bins=8, seed=3, cache=False)
    assert torch.equal(fresh[3][0], ds[3][0])
    # frames hold every event of the window, on the shared clock from t = 0
    ev = ds.events(3)
    assert fresh[3][0].sum().item() == np.sum(ev["t"] < WINDOW_US)
    again = load_dataset("digits-dvs", "train", root=small_build, time_bins=8, seed=3)
    assert isinstance(again._frames, np.memmap)  # read back from the cache, not re-binned


def test_splits_are_disjoint_and_limit_is_class_balanced(small_build):
    sets = {
        s: load_dataset("digits-dvs", s, root=small_build, time_bins=2, seed=3, cache=False)
        for s in ("train", "val", "test")
    }
    ids = [set(d.source.ids) for d in sets.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(len(d) for d in sets.values()) == SMALL
    assert all(set(d.targets.tolist()) == set(range(10)) for d in sets.values())
    small = load_dataset(
        "digits-dvs", "train", root=small_build, time_bins=2, seed=3, limit=10, cache=False
    )
    assert len(small) == 10 and sorted(small.targets.tolist()) == list(range(10))


def test_dataloader_time_first(small_build):
    ds = load_dataset("digits-dvs", "val", root=small_build, time_bins=5, seed=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=time_first_collate)
    x, y = next(iter(loader))
    assert x.shape == (5, 3, 2, 34, 34) and y.shape == (3,)
    assert torch.equal(x[:, 1], ds[1][0])


def test_seed_mismatch_is_an_error(small_build):
    with pytest.raises(ValueError, match="seed=0"):
        load_dataset("digits-dvs", root=small_build)


def test_build_on_first_use_via_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HSTLAB_DATA", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="digits-dvs"):
        load_dataset("digits-dvs", build=False)
    assert not (tmp_path / "digits-dvs").exists()
    assert dataset_info("digits-dvs")["folder"] == str(tmp_path / "digits-dvs")


# ----------------------------------------------------------------------------- frames


def _events(t, x=None, y=None, p=None):
    t = np.asarray(t)
    ev = np.zeros(len(t), dtype=NMNIST_DTYPE)
    ev["t"] = t
    ev["x"] = 0 if x is None else x
    ev["y"] = 0 if y is None else y
    ev["p"] = 1 if p is None else p
    return ev


def test_frames_share_a_clock_from_zero():
    # ToFrame(n_time_bins=...) would start at each first event; here bins start at t=0
    late = events_to_frames(_events([200_000, 299_999]), (34, 34, 2), 3, 300_000)
    assert late.sum(axis=(1, 2, 3)).tolist() == [0, 0, 2]
    early = events_to_frames(_events([0, 99_999, 100_000]), (34, 34, 2), 3, 300_000)
    assert early.sum(axis=(1, 2, 3)).tolist() == [2, 1, 0]
    beyond = events_to_frames(_events([10, 300_000, 400_000]), (34, 34, 2), 3, 300_000)
    assert beyond.sum() == 1  # events after the window are dropped


def test_frames_polarity_and_position():
    f = events_to_frames(_events([5, 6], x=[3, 7], y=[2, 9], p=[0, 1]), (34, 34, 2), 1, 1000)
    assert f.shape == (1, 2, 34, 34)
    assert f[0, 0, 2, 3] == 1 and f[0, 1, 9, 7] == 1 and f.sum() == 2  # [T, P, H(y), W(x)]


def test_empty_stream_gives_zero_frames():
    f = events_to_frames(_events([]), (34, 34, 2), 7, 300_000)
    assert f.shape == (7, 2, 34, 34) and not f.any()


@pytest.mark.parametrize("T", [1, 3, 7, 16, 33])
def test_frame_count_is_exact_for_any_T(T):
    ev = _events(np.linspace(0, 314_999, 500).astype(int))
    f = events_to_frames(ev, (34, 34, 2), T, 315_000)
    assert f.shape[0] == T and f.sum() == 500


def test_events_outside_sensor_raise():
    with pytest.raises(EventFileError, match="outside the sensor"):
        events_to_frames(_events([1], x=[34]), (34, 34, 2), 2, 1000)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_time_bins_must_be_positive_int(bad, small_build):
    with pytest.raises(ValueError, match="time_bins"):
        events_to_frames(_events([1]), (34, 34, 2), bad, 1000)
    with pytest.raises(ValueError, match="time_bins"):
        load_dataset("digits-dvs", root=small_build, time_bins=bad, seed=3)


# ----------------------------------------------------------------------------- bad files


def test_truncated_file_names_file_and_offset(small_build, tmp_path):
    bad = tmp_path / "bad.bin"
    data = _bins(small_build)[0].read_bytes()
    bad.write_bytes(data[:-2])
    with pytest.raises(EventFileError, match=rf"bad\.bin.*byte offset {len(data) - 5}"):
        read_nmnist_bin(bad)


def test_corrupt_record_outside_sensor(tmp_path):
    bad = tmp_path / "corrupt.bin"
    bad.write_bytes(encode_nmnist([1, 2, 50], [1, 2, 3], [10, 20, 30], [0, 1, 1]))
    with pytest.raises(EventFileError, match=r"corrupt\.bin: event 2 at byte offset 10"):
        read_nmnist_bin(bad)


def test_corrupt_file_inside_dataset_is_reported(small_build, tmp_path):
    copy = tmp_path / "digits-dvs"
    shutil.copytree(small_build, copy, ignore=shutil.ignore_patterns("cache"))
    victim = _bins(copy / "NMNIST" / "Test")[0]
    victim.write_bytes(victim.read_bytes()[:-3])
    with pytest.raises(EventFileError, match=victim.name):
        load_dataset("digits-dvs", "test", root=copy, time_bins=2, seed=3)


def test_unknown_dataset_lists_known():
    with pytest.raises(ValueError, match="digits-dvs.*nmnist"):
        load_dataset("mnist-dvs")
    assert {
        "digits-dvs",
        "nmnist",
        "dvsgesture",
        "cifar10dvs",
        "shd",
        "lorenz-spikes",
        "text-chars",
    } <= set(list_datasets())


def test_unknown_option_and_split():
    with pytest.raises(ValueError, match="option colour"):
        load_dataset("lorenz-spikes", colour="red")
    with pytest.raises(ValueError, match="split='dev'"):
        load_dataset("lorenz-spikes", "dev")


# ----------------------------------------------------------------------------- CLI


def _run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="hstlab")
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_list_and_info(small_build, capsys):
    assert _run_cli("data", "list") == 0
    out = capsys.readouterr().out
    assert "digits-dvs" in out and "text-chars" in out
    assert _run_cli("data", "info", "digits-dvs", "--root", str(small_build)) == 0
    out = capsys.readouterr().out
    assert "events per sample: mean" in out and "ON fraction" in out and "(34, 34, 2)" in out


def test_cli_build_reports_missing_real_dataset(tmp_path, capsys):
    from hstlab.cli import main

    assert main(["data", "build", "nmnist", "--root", str(tmp_path / "nm")]) == 2
    err = capsys.readouterr().err
    assert "NMNIST/Train" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "nm").exists()


# ----------------------------------------------------------------------------- pixel model


def _run_pixels(model, signal, n_steps, b=1, dt=1000.0):
    rngs = [np.random.default_rng(i) for i in range(b)]
    return model.simulate(signal, n_steps, dt, rngs)


def test_pixel_ramp_gives_contrast_over_threshold_events_at_crossing_times():
    from hstlab.data.dvs_pixel import DVSPixelModel

    model = DVSPixelModel(
        threshold=0.2, mismatch=0.0, refractory_us=0.0, noise_hz=0.0, latency_jitter_us=0.0
    )
    up = _run_pixels(model, lambda k: np.full((1, 2, 3), 0.01 * k), 110)[0]
    assert len(up) == 5 * 6 and up["p"].all()  # floor(1.1 / 0.2) ON events in each pixel
    # crossings at 0.2, 0.4, ... are reached at 20, 40, ... ms (interpolated inside a step)
    assert np.allclose(np.unique(up["t"]), [20_000, 40_000, 60_000, 80_000, 100_000], atol=2)
    down = _run_pixels(model, lambda k: np.full((1, 1, 1), -0.01 * k), 110)[0]
    assert len(down) == 5 and not down["p"].any()


def test_pixel_refractory_period_limits_rate():
    from hstlab.data.dvs_pixel import DVSPixelModel

    def fast(k):
        return np.full((1, 1, 1), 0.5 * k)  # 0.5 log units per 1 ms step
    free = DVSPixelModel(threshold=0.2, mismatch=0.0, refractory_us=0.0, noise_hz=0.0)
    blind = DVSPixelModel(threshold=0.2, mismatch=0.0, refractory_us=5000.0, noise_hz=0.0)
    n_free = len(_run_pixels(free, fast, 100)[0])
    n_blind = len(_run_pixels(blind, fast, 100)[0])
    assert n_free == 100  # one event per step (memory resets to the present level)
    assert 15 <= n_blind <= 20  # at most one event per 5 ms


def test_pixel_noise_rate_and_mismatch():
    from hstlab.data.dvs_pixel import DVSPixelModel

    model = DVSPixelModel(threshold=0.3, mismatch=0.03, noise_hz=1.0)
    ev = _run_pixels(model, lambda k: np.zeros((4, 34, 34)), 500, b=4)  # 0.5 s, static scene
    n = sum(len(e) for e in ev)
    expected = 4 * 34 * 34 * 0.5  # 1 Hz per pixel
    assert abs(n - expected) < 4 * np.sqrt(expected)
    th = model.thresholds(np.random.default_rng(0), (100, 100))
    assert abs(th.mean() - 0.3) < 0.003 and abs(th.std() - 0.03) < 0.003
