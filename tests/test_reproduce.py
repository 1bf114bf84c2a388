"""scripts/reproduce.py: each row's recipe comes from its search's best.json, re-runs that trial's
validation accuracy, and tests once; the rows' searches never draw what they are judged on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import load_script
from xpnet.runflags import build_parser
from xpnet.search import space as spacemod
from xpnet.train.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "reproduce.py"
ISSUE_ROWS = {"mnist-mlp", "mnist-convnet", "mnist-deep-convnet", "fashion-mlp", "fashion-convnet",
              "fashion-deep-convnet"}


@pytest.fixture(scope="module")
def reproduce() -> ModuleType:
    return load_script(SCRIPT, "xpnet_reproduce")


@pytest.fixture
def results(reproduce: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch docs/results holding the real space files, and a scratch working folder for runs/."""
    dst = tmp_path / "results"
    for row in reproduce.ROWS:
        (dst / row).mkdir(parents=True)
        shutil.copyfile(reproduce.RESULTS / row / "space.toml", dst / row / "space.toml")
    monkeypatch.setattr(reproduce, "RESULTS", dst)
    monkeypatch.chdir(tmp_path)
    return dst


def _config(argv: list[str]) -> RunConfig:
    args = vars(build_parser().parse_args(argv))
    cfg = RunConfig(**{k: v for k, v in args.items() if k in RunConfig.__dataclass_fields__ and v is not None})
    return cfg.validate()


def test_every_row_searches_its_own_split_and_never_draws_what_it_is_judged_on(reproduce: ModuleType) -> None:
    assert set(reproduce.ROWS) >= ISSUE_ROWS
    for row in reproduce.ROWS:
        space = spacemod.load(reproduce.RESULTS / row / "space.toml")
        assert not set(space) & set(spacemod.FIXED), row
        flags = reproduce.search_flags(row)
        assert flags[flags.index("--val-split") + 1] == "0.1" and flags[flags.index("--seed") + 1] == "0", row
        assert "--test-split" not in flags, row


def test_the_recipe_is_the_best_trials_params_on_the_same_split(reproduce: ModuleType, results: Path) -> None:
    for row in reproduce.ROWS:
        space = spacemod.load(results / row / "space.toml")
        params = {k: (p.choices[-1] if p.kind == "choice" else p.high) for k, p in space.items()}
        (results / row / "best.json").write_text(json.dumps({"params": params}))
        flags = reproduce.recipe(row)
        cfg = _config(flags)
        assert cfg.val_split == 0.1 and cfg.seed == 0 and cfg.patience is not None, row  # best epoch, chosen on val
        assert cfg.dataset == row.split("-")[0].replace("fashion", "fashion-mnist"), row
        for name, value in params.items():
            assert flags[flags.index(f"--{name}") + 1] == str(value), (row, name)
        if "epochs" in params:  # the trial's own epochs, never stopped early: the trial's run again
            assert cfg.epochs == params["epochs"] and cfg.patience >= cfg.epochs, row
        else:  # a proxy search: the row says how much longer it trains
            assert cfg.epochs > int(reproduce.search_flags(row)[reproduce.search_flags(row).index("--epochs") + 1])


def test_a_row_without_a_search_says_which_command_to_run(reproduce: ModuleType, results: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["mnist-convnet"], ["mnist-convnet", "--collect"]):
        with pytest.raises(SystemExit) as exc:
            reproduce.main(argv)
        assert exc.value.code == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("reproduce.py: error:") and "reproduce.py mnist-convnet --search" in line


def test_the_results_page_gives_each_rows_commands(reproduce: ModuleType) -> None:
    page = (ROOT / "docs" / "results.md").read_text()
    for row in reproduce.ROWS:
        assert f"scripts/reproduce.py {row}" in page, row
        assert f"scripts/reproduce.py {row} --search" in page, row


def test_bad_row_is_a_one_line_error(reproduce: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        reproduce.main(["mnist-resnet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    [line] = [ln for ln in err.splitlines() if "error:" in ln]
    assert "invalid choice: 'mnist-resnet'" in line


def test_search_then_row_reruns_the_best_trial_and_tests_once(reproduce: ModuleType, results: Path,
                                                              mnist_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_OFFLINE", "1")
    small = ["--data-dir", str(mnist_path), "--limit-train", "300", "--train-eval-size", "100", "--quiet"]
    (results / "mnist-mlp" / "space.toml").write_text(
        '[lr]\nkind = "log-uniform"\nlow = 1e-3\nhigh = 1e-2\n[hidden]\nchoices = ["16", "32"]\n'
        "[epochs]\nchoices = [2, 3]\n")
    assert reproduce.main(["mnist-mlp", "--search", "--", "--trials", "2", *small]) == 0
    assert not (results / "mnist-mlp" / "best.json").exists()  # a shortened search is not the row's
    assert reproduce.main(["mnist-mlp", "--collect"]) == 0
    best = json.loads((results / "mnist-mlp" / "best.json").read_text())
    searched = json.loads((results / "mnist-mlp" / "search.json").read_text())
    assert searched["trials"] == 2 and searched["best_val_acc"] == best["val_acc"]
    assert (results / "mnist-mlp" / "history.png").stat().st_size > 0
    capsys.readouterr()
    assert reproduce.main(["mnist-mlp", "--", *small]) == 0
    run = json.loads((Path("runs") / "reproduce" / "mnist-mlp" / "reproduce.json").read_text())
    assert run["val_acc"] == pytest.approx(best["val_acc"], abs=1e-12)  # the trial, run again
    assert run["epochs"] == best["params"]["epochs"] and 0 < run["test_acc"] <= 1
    assert run["cpu_seconds"] > 0 and run["peak_mib"] > 0
    assert "not the table's row" in capsys.readouterr().out.splitlines()[-1]
    assert "not run" in reproduce.table().splitlines()[2]  # a shortened run is not put in the table
