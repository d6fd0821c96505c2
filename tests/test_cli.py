"""The top-level ``hstlab`` command: model sub-commands, mounted areas, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

from hstlab.cli import build_parser, main


def test_every_area_is_mounted():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("presets", "config", "demo", "data", "train", "energy", "card", "ablate", "energy-model", "explore"):
        assert name in commands


def test_commands_other_than_explore_do_not_import_panel():
    code = "import sys, hstlab.cli; hstlab.cli.build_parser(); print(sorted({'panel', 'holoviews'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # Panel costs seconds of start-up and is not needed there


def test_presets_and_config(capsys):
    assert main(["presets"]) == 0
    assert "hst-small" in capsys.readouterr().out.split()
    assert main(["config", "tiny", "--modes", "ST"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["name"] == "tiny" and cfg["layers"][1]["attn_mode"] == "standard"


def test_demo_reports_firing_rates(capsys):
    assert main(["demo", "--preset", "tiny", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "43,306 parameters" in out and "firing rate" in out


def test_bad_input_is_a_message_not_a_traceback(capsys):
    assert main(["demo", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'nope'" in err and "tiny" in err
    assert main(["config", "tiny", "--modes", "SXS"]) == 2
    assert "one per layer" in capsys.readouterr().err


def test_parser_and_presets_start_without_torch():
    """`hstlab --help`, `--version` and `presets` answer at once: building the parser imports no torch."""
    code = ("import sys, hstlab.cli as c; c.build_parser(); "
            "from hstlab.presets import list_presets; list_presets(); print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'tonic', 'pandas', 'panel', 'holoviews')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_version_flag(capsys):
    import pytest

    import hstlab

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"hstlab {hstlab.__version__}"
