"""scripts/reproduce.py: each row is a valid run chosen on validation, listed in the README; bad rows: one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import load_script
from xpnet.runflags import build_parser
from xpnet.train.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "reproduce.py"


@pytest.fixture(scope="module")
def reproduce() -> ModuleType:
    return load_script(SCRIPT, "xpnet_reproduce")


def test_rows_are_the_issues_and_each_is_a_valid_validation_run(reproduce: ModuleType) -> None:
    assert {"mnist-mlp", "mnist-convnet", "mnist-deep-convnet", "fashion-mlp", "fashion-convnet"} <= \
        set(reproduce.ROWS)
    parser = build_parser()
    for row in reproduce.ROWS:
        args = vars(parser.parse_args(reproduce.command(row)))
        cfg = RunConfig(**{k: v for k, v in args.items() if k in RunConfig.__dataclass_fields__ and v is not None})
        cfg.validate()
        assert cfg.val_split > 0 and cfg.patience is not None, row  # chosen on val, best epoch restored
        assert cfg.dataset == ("fashion-mnist" if row.startswith("fashion") else
                               "cifar10" if row.startswith("cifar10") else "mnist"), row


def test_the_readme_gives_each_rows_command(reproduce: ModuleType) -> None:
    readme = (ROOT / "docs" / "results.md").read_text()  # the README's results page
    for row in reproduce.ROWS:
        assert f"scripts/reproduce.py {row}" in readme, row


def test_bad_row_is_a_one_line_error(reproduce: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        reproduce.main(["mnist-resnet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    [line] = [ln for ln in err.splitlines() if "error:" in ln]
    assert "invalid choice: 'mnist-resnet'" in line


def test_a_shortened_row_writes_its_run_folder(reproduce: ModuleType, tmp_path: Path, mnist_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_OFFLINE", "1")
    out = tmp_path / "row"
    rc = reproduce.main(["mnist-mlp", "--out", str(out), "--", "--data-dir", str(mnist_path), "--epochs", "2",
                         "--limit-train", "1000", "--hidden", "32,32", "--train-eval-size", "500", "--quiet",
                         "--device", "cpu"])
    assert rc == 0
    stdout = capsys.readouterr().out
    res = json.loads((out / "summary.json").read_text())["results"]
    assert res["selected_on"] == "val" and (out / "best.npz").exists()
    line = stdout.splitlines()[-1]
    assert line.startswith(f"mnist-mlp: val {res['val_acc']:.4f}  test {res['test_acc']:.4f}")
    assert "not the table's row" in line
