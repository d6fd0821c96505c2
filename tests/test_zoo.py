"""The model zoo: shipped entries load, reproduce their recorded metrics, and refuse damage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hstlab
from hstlab.zoo import ZooError, list_pretrained, load_pretrained, pretrained_record
from hstlab.zoo import record as zoo_record

REQUIRED = ("hst-small-digits-dvs", "hst-small-digits-dvs-standard", "hst-small-digits-dvs-hybrid-stem",
            "hst-small-digits-dvs-int8", "hst-small-lorenz-spikes", "hst-small-text-chars",
            "spikegpt-small-text-chars")


@pytest.fixture(scope="module")
def full_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole built-in digits-dvs build (the zoo was scored on all of it)."""
    from hstlab.data.digits_dvs import build_digits_dvs

    root = tmp_path_factory.mktemp("zoo-data")
    build_digits_dvs(root / "digits-dvs", seed=0)
    return root


@pytest.fixture
def zoo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the weights folder that the zoo reads instead of the shipped one."""
    folder = tmp_path / "weights"
    shutil.copytree(zoo_record.WEIGHTS_DIR, folder)
    monkeypatch.setattr(zoo_record, "WEIGHTS_DIR", folder)
    monkeypatch.setattr("hstlab.zoo.WEIGHTS_DIR", folder)
    return folder


def test_required_entries_ship_and_stay_small() -> None:
    assert set(REQUIRED) <= set(list_pretrained())
    total = sum(p.stat().st_size for p in zoo_record.WEIGHTS_DIR.glob("*.safetensors"))
    assert total < 5 * 1024 * 1024, f"shipped weights take {total / 2**20:.2f} MiB (limit 5 MiB)"


def test_spikegpt_entry_is_the_best_text_chars_model_and_generates() -> None:
    best, ssa = pretrained_record("spikegpt-small-text-chars"), pretrained_record("hst-small-text-chars")
    assert best.metrics["test_loss"] < ssa.metrics["test_loss"]  # nats per character
    model = load_pretrained("spikegpt-small-text-chars")
    text = model.generate("The return ", 20, temperature=0.0)
    assert len(text) == 20


def test_digits_entry_is_the_all_spiking_model_at_98_percent() -> None:
    record = pretrained_record("hst-small-digits-dvs")
    assert hstlab.HSTConfig.from_dict(record.config).modes == "SS"
    assert record.config["tokenizer_mode"] in (None, "spiking")
    assert record.metrics["test_accuracy"] >= 0.98
    assert record.command[:2] == ["hstlab", "train"]


@pytest.mark.parametrize("name", REQUIRED)
def test_load_pretrained_gives_an_eval_model_with_its_config(name: str) -> None:
    model = load_pretrained(name)
    assert not model.training
    assert model.cfg == hstlab.HSTConfig.from_dict(model.zoo_record.config)
    assert model.zoo_record.name == name


@pytest.mark.slow
@pytest.mark.parametrize("name", REQUIRED)
def test_shipped_weights_reproduce_the_recorded_metrics_exactly(name: str, full_data: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from hstlab.zoo.build import evaluate_entry

    monkeypatch.setenv("HSTLAB_DATA", str(full_data))
    record = pretrained_record(name)
    metrics, fingerprint = evaluate_entry(record)
    assert fingerprint == record.data_sha256, "the built-in data changed since the entry was made"
    assert {k: metrics[k] for k in record.metrics} == record.metrics


def test_unknown_name_lists_the_entries() -> None:
    with pytest.raises(ZooError, match="allowed: .*hst-small-digits-dvs"):
        load_pretrained("hst-huge")


def test_damaged_weights_file_is_named(zoo_copy: Path) -> None:
    path = zoo_copy / "hst-small-digits-dvs.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match=r"hst-small-digits-dvs\.safetensors is damaged or replaced"):
        load_pretrained("hst-small-digits-dvs")


def test_truncated_weights_file_is_named(zoo_copy: Path) -> None:
    path = zoo_copy / "hst-small-digits-dvs.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ZooError, match="hst-small-digits-dvs.safetensors"):
        load_pretrained("hst-small-digits-dvs")


def test_mismatched_weights_name_the_tensors(zoo_copy: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = zoo_copy / "hst-small-digits-dvs.safetensors"
    state = load_file(str(path))
    state["head.weight"] = torch.zeros(11, state["head.weight"].shape[1])  # another class count
    del state[next(k for k in state if k.startswith("blocks.1."))]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(path))
    record_path = zoo_copy / "hst-small-digits-dvs.json"
    record = json.loads(record_path.read_text())
    record["weights_sha256"] = zoo_record.file_sha256(path)  # a consistent but foreign file
    record_path.write_text(json.dumps(record))
    with pytest.raises(ZooError) as info:
        load_pretrained("hst-small-digits-dvs")
    message = str(info.value)
    assert "missing ['blocks.1." in message and "unexpected ['extra.weight']" in message
    assert "head.weight: file (11, 64) vs model (10, 64)" in message


def test_damaged_record_is_named(zoo_copy: Path) -> None:
    (zoo_copy / "hst-small-digits-dvs.json").write_text("{not json")
    with pytest.raises(ZooError, match=r"hst-small-digits-dvs\.json: cannot be read as JSON"):
        load_pretrained("hst-small-digits-dvs")


@pytest.mark.parametrize("argv, needle", [
    (["zoo", "info", "hst-huge"], "unknown pretrained model 'hst-huge'; allowed:"),
    (["zoo", "rebuild", "hst-small-digits-dvs", "--out", str(zoo_record.WEIGHTS_DIR)], "shipped weights folder"),
])
def test_zoo_cli_refuses_with_one_line(argv: list[str], needle: str) -> None:
    done = subprocess.run([sys.executable, "-m", "hstlab", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_zoo_cli_lists_every_entry() -> None:
    done = subprocess.run([sys.executable, "-m", "hstlab", "zoo", "list"], capture_output=True, text=True,
                          timeout=120, check=True)
    for name in REQUIRED:
        assert name in done.stdout
