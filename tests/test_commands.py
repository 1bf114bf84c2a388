"""The ``xpnet`` front door: one table of commands, ``python -m xpnet`` the same, the old entry points kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from xpnet import cli as commands

ROOT = Path(__file__).resolve().parents[1]


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), XPNET_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=ROOT)


def test_help_lists_every_command_on_one_line() -> None:
    p = run_module("--help")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for name in ("train", "eval", "predict", "export", "doctor"):
        [line] = [ln for ln in lines if ln.split()[:1] == [name]]
        assert len(line.split()) > 3, line  # the name and a one-line summary
    assert [ln.split()[0] for ln in lines if ln.startswith("  ")] == list(commands.COMMANDS)


def test_every_command_resolves_and_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in commands.COMMANDS:
        assert callable(commands.resolve(name))
        assert commands.main([name, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage:"), (name, out[:200])


def test_unknown_or_missing_command_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.main(["evl"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'evl' is not a command" in err and "did you mean 'eval'" in err
    assert commands.main([]) == 2
    assert "commands:" in capsys.readouterr().out


def test_command_flag_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["predict", "run", "x.png", "--top", "0"], ["export", "run", "--format", "tflite"], ["eval"]):
        assert commands.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"xpnet {argv[0]}: error:"), err


def test_python_m_xpnet_runs_the_same_commands() -> None:
    p = run_module("doctor", "--json")
    assert p.returncode == 0, p.stderr
    assert '"cpu_ok": true' in p.stdout


def test_entry_points() -> None:
    """`xpnet` is the dispatcher; `xpnet-train`, `xpnet-doctor` and scripts/train.py stay as they were."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"xpnet": "xpnet.cli:main", "xpnet-train": "xpnet.cli.train:main",
                                  "xpnet-doctor": "xpnet.cli.doctor:main"}
    assert commands.COMMANDS["train"].target == "xpnet.cli.train:main"
    assert commands.COMMANDS["doctor"].target == "xpnet.cli.doctor:main"
    assert "from xpnet.cli.train import main" in (ROOT / "scripts" / "train.py").read_text()
