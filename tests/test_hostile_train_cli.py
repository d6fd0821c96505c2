"""Hostile and careless input to training, checkpoints and the CLI (issue #21), one table per kind.

Every refusal is exact: the CLI exits 2 with one stderr line (no traceback) naming the flag,
field or file; the library raises the named error type; and no file of the run directory (or
anything else under the test folder) is written, created or removed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from test_train_support import build_standin, one_thread, small_cfg, splits  # noqa: F401

import hstlab
from hstlab.cli import main
from hstlab.train import Trainer, TrainingDiverged, read_checkpoint
from hstlab.train import checkpoint as ckpt_io
from hstlab.train.run import train_run

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(hstlab.__file__).resolve().parents[1]
NEW = ["--preset", "tiny", "--limit", "8", "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def base_run(digits_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run on 8 digits-dvs samples (2 steps, a checkpoint every step)."""
    folder = tmp_path_factory.mktemp("hostile") / "base"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HSTLAB_DATA", str(digits_root))
        mp.setenv("HSTLAB_SMOKE", "1")
        train_run("tiny", "digits-dvs", run_dir=folder, epochs=1, limit=8, batch_size=4, checkpoint_every=1)
    return folder


@pytest.fixture
def run(base_run: Path, data_env: Path, tmp_path: Path) -> Path:
    """A private copy of the base run (mtimes kept) under this test's folder."""
    target = tmp_path / "run"
    shutil.copytree(base_run, target)
    return target


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under ``root``: content hash and mtime (folders: "dir")."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = ("dir", 0) if path.is_dir() else (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                     path.stat().st_mtime_ns)
    return out


def edit_checkpoint(path: Path, edit: Callable[[dict], None]) -> None:
    """Edit the weights and meta of a safetensors checkpoint in place (bypassing read_checkpoint's checks)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    ckpt = {"model": {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")},
            "meta": json.loads(metadata["meta"])}
    edit(ckpt)
    tensors.update({f"model/{k}": v for k, v in ckpt["model"].items()})
    save_file(tensors, str(path), metadata={**metadata, "meta": json.dumps(ckpt["meta"])})


def poison_running_var(ckpt: dict) -> None:
    key = next(k for k in ckpt["model"] if k.endswith("running_var"))
    ckpt["model"][key][0] = math.inf


def set_json(name: str, **changes) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        data = json.loads((run / name).read_text())
        data.update(changes)
        (run / name).write_text(json.dumps(data))
    return edit


def write_bytes(name: str, data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        old = (run / name).read_bytes()
        (run / name).write_bytes(data(old) if callable(data) else data)
    return edit


class Evil:
    """Pickles as a call to ``print``: a checkpoint must never be allowed to hold one."""

    def __reduce__(self):
        return (print, ("evil",))


def plant_object(kind: str) -> Callable[[Path], None]:
    """Replace the run's ``kind`` checkpoint by a legacy pickled ``KIND.pt`` that holds an object."""
    def edit(run: Path) -> None:
        new = ckpt_io.run_checkpoint(run, kind)
        ckpt = read_checkpoint(new)
        ckpt["meta"]["extra"] = Evil()
        torch.save(ckpt, run / f"{kind}.pt")
        new.unlink()
    return edit


# --------------------------------------------------------------------------------- CLI refusals
@dataclass
class Cli:
    id: str
    argv: Callable[[Path, Path], list[str]]  # (run dir, test folder) -> argv
    says: tuple[str, ...]
    prepare: Callable[[Path], None] | None = None


CLI_CASES = [
    Cli("existing-run-dir", lambda r, t: ["train", *NEW, "--run-dir", str(r)],
        ("already holds a run", "run.json", "last.safetensors", "--force")),
    Cli("force-then-bad-lr", lambda r, t: ["train", *NEW, "--run-dir", str(r), "--force", "--lr", "nan"],
        ("--lr nan must be a finite number > 0",)),
    Cli("lr-inf", lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"), "--lr", "inf"], ("--lr inf",)),
    Cli("lr-negative", lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"), "--lr", "-0.1"], ("--lr -0.1",)),
    Cli("epochs-0", lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"), "--epochs", "0"],
        ("--epochs 0 must be an integer >= 1",)),
    Cli("batch-size-negative", lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"), "--batch-size", "-1"],
        ("--batch-size -1",)),
    Cli("checkpoint-every-negative",
        lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"), "--checkpoint-every", "-1"],
        ("--checkpoint-every -1",)),
    Cli("max-seconds-nan", lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"), "--max-seconds", "nan"],
        ("--max-seconds nan",)),
    Cli("augment-shift-negative",
        lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"), "--augment-shift", "-2"], ("--augment-shift -2",)),
    Cli("missing-dataset", lambda r, t: ["train", *NEW, "--dataset", "nmnist", "--run-dir", str(t / "new")],
        ("dataset 'nmnist' is not available", "NMNIST/Train")),
    Cli("resume-epochs", lambda r, t: ["train", "--resume", str(r), "--epochs", "5"],
        ("epochs=5 differs from the run's epochs=1", "run.json", "start a new run")),
    Cli("resume-lr", lambda r, t: ["train", "--resume", str(r), "--lr", "0.5"], ("lr=0.5", "lr=0.001")),
    Cli("resume-dataset", lambda r, t: ["train", "--resume", str(r), "--dataset", "lorenz-spikes"],
        ("dataset_name='lorenz-spikes'", "digits-dvs")),
    Cli("resume-schedule", lambda r, t: ["train", "--resume", str(r), "--schedule", "0:TT"], ("mode_schedule",)),
    Cli("resume-other-run-dir", lambda r, t: ["train", "--resume", str(r), "--run-dir", str(t / "other")],
        ("run_dir",)),
    Cli("resume-force", lambda r, t: ["train", "--resume", str(r), "--force"], ("--force cannot change",)),
    Cli("resume-edited-config", lambda r, t: ["train", "--resume", str(r)],
        ("config.json", "does not match", "last.safetensors", "n_embd is 16 in config.json but 32"),
        prepare=set_json("config.json", n_embd=16)),
    Cli("resume-edited-run-json", lambda r, t: ["train", "--resume", str(r)],
        ("run.json' says lr=0.5 but", "last.safetensors' was trained with lr=0.001"), prepare=set_json("run.json", lr=0.5)),
    Cli("resume-run-json-bad-value", lambda r, t: ["train", "--resume", str(r)],
        ("run.json", "checkpoint_every=-3"), prepare=set_json("run.json", checkpoint_every=-3)),
    Cli("resume-missing-config", lambda r, t: ["train", "--resume", str(r)], ("missing: config.json",),
        prepare=lambda r: (r / "config.json").unlink()),
    Cli("resume-empty-last", lambda r, t: ["train", "--resume", str(r)], ("last.safetensors' cannot be read", "empty"),
        prepare=write_bytes("last.safetensors", b"")),
    Cli("resume-truncated-last", lambda r, t: ["train", "--resume", str(r)], ("last.safetensors", "truncated"),
        prepare=write_bytes("last.safetensors", lambda b: b[: len(b) // 2])),
    Cli("resume-random-last", lambda r, t: ["train", "--resume", str(r)], ("last.safetensors", "corrupt or not a safetensors file"),
        prepare=write_bytes("last.safetensors", bytes(range(256)) * 8)),
    Cli("resume-object-in-last", lambda r, t: ["train", "--resume", str(r)],
        ("last.pt", "asks to load", "print", "nothing was run"), prepare=plant_object("last")),
    Cli("resume-nonfinite-last", lambda r, t: ["train", "--resume", str(r)], ("last.safetensors", "NaN/inf", "running_var"),
        prepare=lambda r: edit_checkpoint(r / "last.safetensors", poison_running_var)),
    Cli("resume-truncated-best", lambda r, t: ["train", "--resume", str(r)], ("best.safetensors", "truncated"),
        prepare=write_bytes("best.safetensors", lambda b: b[:1000])),
    Cli("energy-missing-dir", lambda r, t: ["energy", str(t / "nope")], ("nope", "does not exist")),
    Cli("energy-empty-best", lambda r, t: ["energy", str(r)], ("best.safetensors' cannot be read: it is empty",),
        prepare=write_bytes("best.safetensors", b"")),
    Cli("energy-random-best", lambda r, t: ["energy", str(r)], ("best.safetensors", "corrupt"),
        prepare=write_bytes("best.safetensors", os.urandom(3000))),
    Cli("energy-nonfinite-best", lambda r, t: ["energy", str(r)], ("best.safetensors", "NaN/inf"),
        prepare=lambda r: edit_checkpoint(r / "best.safetensors", poison_running_var)),
    Cli("energy-bad-run-json", lambda r, t: ["energy", str(r)], ("run.json' is not valid JSON",),
        prepare=write_bytes("run.json", b"{\"dataset\": ")),
    Cli("energy-batch-size-0", lambda r, t: ["energy", str(r), "--batch-size", "0"], ("--batch-size 0",)),
    Cli("card-truncated-best", lambda r, t: ["card", str(r)], ("best.safetensors", "truncated"),
        prepare=write_bytes("best.safetensors", lambda b: b[:2000])),
    Cli("card-energy-batch-0", lambda r, t: ["card", str(r), "--energy-batch", "0"], ("--energy-batch 0",)),
    Cli("energy-model-batch-size-negative", lambda r, t: ["energy-model", "--batch-size", "-1"],
        ("--batch-size -1",)),
    Cli("run-dir-is-a-file", lambda r, t: ["train", *NEW, "--run-dir", str(r / "history.csv")],
        ("history.csv", "is not a directory")),
    Cli("tet-lam-negative", lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"), "--loss", "tet",
                                          "--loss-option", "lam=-1"], ("lam=-1 must be",)),
    Cli("regulariser-weight-negative", lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"),
                                                     "--regulariser", "hoyer", "--regulariser-weight", "-1"],
        ("--regulariser-weight -1.0",)),
    Cli("set-spike-max-0", lambda r, t: ["train", *NEW, "--run-dir", str(t / "new"), "--set", "neuron=ilif",
                                         "--set", "spike_max=0"], ("spike_max=0",)),
    Cli("ablate-lr-nan", lambda r, t: ["ablate", "--base", "tiny", "--lr", "nan", "--out", str(t / "abl")],
        ("--lr nan",)),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_cli_refuses_in_one_line_and_writes_nothing(case: Cli, run: Path, tmp_path: Path, capsys) -> None:
    if case.prepare is not None:
        case.prepare(run)
    before = snapshot(tmp_path)
    assert main(case.argv(run, tmp_path)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("hstlab "), lines[0]
    for text in case.says:
        assert text in lines[0], (text, lines[0])
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------------- library refusals
@dataclass
class Lib:
    id: str
    call: Callable[[Path, Path], object]  # (run dir, test folder)
    error: type[BaseException]
    says: tuple[str, ...]


def _load_crafted(run: Path, builder: str) -> object:
    edit_checkpoint(run / "best.safetensors", lambda c: c["meta"].update(builder=builder))
    return ckpt_io.load_checkpoint(run / "best.safetensors")


def _trainer(**kw) -> Trainer:
    cfg = small_cfg()
    return Trainer(build_standin(cfg), cfg, *splits(16, 8, 8), build_fn=build_standin, **kw)


LIB_CASES = [
    Lib("builder-builtins-input", lambda r, t: _load_crafted(r, "builtins:input"), ckpt_io.CheckpointError,
        ("best.safetensors", "meta.builder='builtins:input' is not a registered model builder", "registered: hst-net")),
    Lib("builder-os-system", lambda r, t: _load_crafted(r, "os:system"), ValueError, ("os:system",)),
    Lib("builder-not-a-string", lambda r, t: _load_crafted(r, ["hst-net"]), ValueError, ("['hst-net']",)),
    Lib("existing-run-dir", lambda r, t: train_run("tiny", "digits-dvs", run_dir=r, limit=8), ckpt_io.RunDirExists,
        ("already holds a run", "force=True")),
    Lib("force-with-bad-lr", lambda r, t: train_run("tiny", "digits-dvs", run_dir=r, force=True, lr=math.nan),
        ValueError, ("lr=nan must be a finite number > 0",)),
    Lib("force-with-bad-option", lambda r, t: train_run("tiny", "digits-dvs", run_dir=r, force=True,
                                                          dataset_options={"bogus": 1}), ValueError, ("bogus",)),
    Lib("resume-epochs", lambda r, t: train_run(resume=r, epochs=5), ValueError, ("epochs=5", "epochs=1")),
    Lib("resume-other-preset", lambda r, t: train_run("hst-small", resume=r), ValueError, ("'hst-small'", "tiny")),
    Lib("trainer-lr-nan", lambda r, t: _trainer(lr=math.nan), ValueError, ("lr=nan",)),
    Lib("trainer-grad-clip-inf", lambda r, t: _trainer(grad_clip=math.inf), ValueError, ("grad_clip=inf",)),
    Lib("trainer-tet-lam-negative", lambda r, t: _trainer(loss="tet", loss_options={"lam": -0.5}), ValueError,
        ("lam=-0.5 must be",)),
    Lib("trainer-unknown-regulariser", lambda r, t: _trainer(regulariser="l1"), ValueError,
        ("regulariser='l1'", "firing_rate", "hoyer")),
    Lib("trainer-regulariser-weight-nan", lambda r, t: _trainer(regulariser="firing_rate",
                                                                regulariser_options={"weight": math.nan}),
        ValueError, ("regulariser_weight=nan",)),
    Lib("run-unknown-regulariser", lambda r, t: train_run("tiny", "digits-dvs", run_dir=t / "x", regulariser="l1",
                                                           limit=8), ValueError, ("regulariser='l1'",)),
    Lib("read-nonfinite", lambda r, t: (edit_checkpoint(r / "last.safetensors", poison_running_var),
                                        read_checkpoint(r / "last.safetensors")), ckpt_io.CheckpointError, ("NaN/inf",)),
    Lib("read-missing", lambda r, t: read_checkpoint(t / "none.pt"), FileNotFoundError, ("none.pt",)),
]


@pytest.mark.parametrize("case", LIB_CASES, ids=lambda c: c.id)
def test_library_refuses_with_the_named_error(case: Lib, run: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(case.error) as info:
        case.call(run, tmp_path)
    for text in case.says:
        assert text in str(info.value), (text, str(info.value))
    if not case.id.startswith(("builder-", "read-nonfinite")):  # those edit best.safetensors/last.safetensors themselves
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize("builder", ["hstlab:build_model", "hstlab.model:build_model", None, "hst-net"])
def test_old_and_registered_builder_names_still_load(run: Path, builder: str | None) -> None:
    edit_checkpoint(run / "best.safetensors", lambda c: c["meta"].update(builder=builder) if builder else
                    c["meta"].pop("builder"))
    model, cfg, _ = ckpt_io.load_checkpoint(run / "best.safetensors")
    assert cfg.name == "tiny" and not model.training


# ------------------------------------------------- crafted checkpoints, in a subprocess (no hangs)
@pytest.mark.parametrize(("command", "builder"), [("energy", "builtins:input"), ("energy", "sys:exit"),
                                                  ("energy", "planted_builder:build"), ("card", "builtins:input")])
def test_crafted_builder_runs_nothing(run: Path, tmp_path: Path, data_env: Path, command: str, builder: str) -> None:
    marker = tmp_path / "MARKER"
    (run / "planted_builder.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n\ndef build(cfg):\n    raise SystemExit(7)\n")
    edit_checkpoint(run / "best.safetensors", lambda c: c["meta"].update(builder=builder))
    before = snapshot(run)
    env = {**os.environ, "HSTLAB_DATA": str(data_env), "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "hstlab", command, "."], cwd=run, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.PIPE)  # input() would wait forever on a tty
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"meta.builder={builder!r} is not a registered model builder; registered: hst-net" in lines[0]
    assert not marker.exists() and snapshot(run) == before


# --------------------------------------------------------------------------------- NaN guard
def _with_bn(cfg):
    net = build_standin(cfg)
    net.bn = torch.nn.BatchNorm1d(4)  # buffers only (not in forward): poisoned below
    return net


def test_divergence_keeps_only_a_finite_last_pt(tmp_path: Path) -> None:
    def poison(ev):
        if ev.kind == "step" and ev.step == 2:
            trainer.model.bn.running_var.fill_(math.inf)  # as lr=1e9 does to BatchNorm

    cfg = small_cfg()
    trainer = Trainer(_with_bn(cfg), cfg, *splits(), epochs=1, batch_size=8, run_dir=tmp_path, checkpoint_every=1,
                      build_fn=_with_bn, callbacks=poison)
    with pytest.raises(TrainingDiverged, match="bn.running_var") as info:
        trainer.fit()
    assert "last.safetensors was not written" in str(info.value) and "keeps step 2, the last finite state" in str(info.value)
    assert read_checkpoint(tmp_path / "last.safetensors")["train_state"]["step"] == 2  # finite, else this raises


def test_divergence_before_any_checkpoint_says_none_was_kept(tmp_path: Path) -> None:
    def poison(ev):
        if ev.kind == "step" and ev.step == 1:
            with torch.no_grad():
                trainer.model.head.weight.fill_(math.nan)

    trainer = _trainer(epochs=1, batch_size=8, run_dir=tmp_path, checkpoint_every=0, callbacks=poison)
    with pytest.raises(TrainingDiverged, match="no last.safetensors of this run was written"):
        trainer.fit()
    assert not (tmp_path / "last.safetensors").exists() and not (tmp_path / "best.safetensors").exists()


def test_cli_huge_lr_stops_truthfully(data_env: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "hot"
    argv = ["train", "--preset", "tiny", "--limit", "8", "--batch-size", "2", "--lr", "1e9",
            "--checkpoint-every", "1", "--no-progress", "--run-dir", str(run)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "training stopped" in err
    if (run / "last.safetensors").exists():
        step = read_checkpoint(run / "last.safetensors")["train_state"]["step"]  # finite: read_checkpoint checks
        assert f"keeps step {step}, the last finite state" in err
    else:
        assert "no last.safetensors of this run was written" in err


# --------------------------------------------------------------------------------- what is allowed
def test_force_replaces_the_run_and_clears_stale_files(run: Path, capsys) -> None:
    (run / "model_card.md").write_text("stale card of the old run")
    (run / ".last.safetensors.ab12cd34.tmp").write_bytes(b"half a checkpoint")
    (run / "my-notes.txt").write_text("not a run file")
    old_last = (run / "last.safetensors").read_bytes()
    assert main(["train", *NEW, "--run-dir", str(run), "--force", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert f"force: replaced the earlier run in {run}" in out and "model_card.md" in out
    assert not (run / "model_card.md").exists() and not (run / ".last.safetensors.ab12cd34.tmp").exists()
    assert (run / "my-notes.txt").exists() and (run / "last.safetensors").read_bytes() != old_last
    assert json.loads((run / "run.json").read_text())["seed"] == 3


def test_resume_clears_write_debris_and_accepts_matching_flags(run: Path, capsys) -> None:
    debris = [".last.safetensors.x1y2z3w4.tmp", ".config.json.q9_r8s7t.tmp"]
    keep = [".notes.tmp", "last.safetensors.tmp", ".other.txt.abcdefgh.tmp"]  # not the atomic writer's run files
    for name in debris + keep:
        (run / name).write_bytes(b"x")
    config = (run / "config.json").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 0
    assert "removed temp files of an interrupted write" in capsys.readouterr().out
    assert not any((run / n).exists() for n in debris) and all((run / n).exists() for n in keep)
    assert (run / "config.json").read_bytes() == config


# --------------------------------------------------------------------------------- error classes
def test_disk_full_is_one_line_but_a_bug_keeps_its_traceback(data_env: Path, tmp_path: Path, monkeypatch,
                                                              capsys) -> None:
    def full(path, writer):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ckpt_io, "atomic_write_bytes", full)
    assert main(["train", *NEW, "--run-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "No space left on device" in err and "run.json" in err

    def bug(path, writer):
        raise KeyError("internal")

    monkeypatch.setattr(ckpt_io, "atomic_write_bytes", bug)
    with pytest.raises(KeyError):
        main(["train", *NEW, "--run-dir", str(tmp_path / "b")])


def test_resume_checks_keys_run_json_lacks_against_their_defaults(run: Path):
    """A run.json without ``augment_shift`` (as the explorer once wrote) ran with 0: asking for 2 is refused."""
    from hstlab.train.resume import load_resume

    stored = json.loads((run / "run.json").read_text())
    stored.pop("augment_shift", None)
    (run / "run.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"augment_shift=2 differs from the run's augment_shift=0"):
        load_resume(run, {"augment_shift": 2})
    load_resume(run, {"augment_shift": 0})  # the default it ran with is accepted


def test_resume_accepts_the_data_options_the_run_was_started_with(run: Path):
    """A new run stores the recipe's options merged with the given ones; repeating the flag is fine."""
    from hstlab.train.resume import load_resume

    stored = json.loads((run / "run.json").read_text())
    stored["dataset_options"] = {"seed": 0, "window_ms": 315.0}
    (run / "run.json").write_text(json.dumps(stored))
    load_resume(run, {"dataset_options": {"seed": 0}})
    with pytest.raises(ValueError, match="dataset_options="):
        load_resume(run, {"dataset_options": {"seed": 1}})
