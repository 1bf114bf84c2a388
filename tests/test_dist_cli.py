"""``mpiexec -n 2 scripts/train.py``: the same model as one process, one run folder, stopping together, exit 2 once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xpnet.train import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
# float64 and SGD without dropout or batch norm: 2 ranks must end where 1 process does. Batches of 75 split
# 37 + 38 (uneven); the 3,000 training samples are 40 of them (800 more are held out for validation).
SMALL = ["--limit-train", "3000", "--val-split", "0.1", "--hidden", "32", "--device", "cpu", "--seed", "4",
         "--dtype", "float64", "--optimizer", "sgd", "--batch-size", "75", "--weight-decay", "0.001"]

pytestmark = pytest.mark.skipif(not MPIEXEC.exists(), reason=f"no mpiexec beside {sys.executable} (pip install mpich)")


def env() -> dict[str, str]:
    e = dict(os.environ, XPNET_OFFLINE="1", PYTHONPATH=str(ROOT))
    e.pop("COLUMNS", None)
    return e


def command(ranks: int, *args: str) -> list[str]:
    launcher = [str(MPIEXEC), "-n", str(ranks)] if ranks > 1 else []
    return [*launcher, sys.executable, str(SCRIPT), *args]


def run(ranks: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(ranks, *args), capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)


# xpnet-train with an audit hook that records every file this rank creates or opens for writing under OUT,
# into WRITES.<rank>.json (outside OUT).
SPY = """
import json, os, sys
out, writes = os.path.abspath(sys.argv[1]), sys.argv[2]
seen = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, os.PathLike)):
        mode, flags = args[1], args[2]
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
            flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and os.path.abspath(args[0]).startswith(out):
            seen.append(str(args[0]))
    elif event in ("os.mkdir", "os.rename", "os.replace") and os.path.abspath(str(args[0])).startswith(out):
        seen.append(str(args[0]))
sys.addaudithook(hook)
from xpnet.cli.train import main
status = main(sys.argv[3:])
with open(f"{writes}.{os.environ.get('PMI_RANK', '0')}.json", "w") as f:
    json.dump(seen, f)
sys.exit(status)
"""


def run_spied(ranks: int, out: Path, writes: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(MPIEXEC), "-n", str(ranks), sys.executable, "-c", SPY, str(out), str(writes), *args, "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)


def summary(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "summary.json").read_text()))


def state(out: Path) -> dict[str, np.ndarray]:
    return {k: v for k, v in ckpt.load(out / ckpt.FILENAME).items() if k.startswith(("net/", "optim/", "loader/"))}


def test_two_ranks_train_the_one_process_model_into_one_run_folder(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = run(1, *SMALL, "--epochs", "2", "--out", str(one))
    p2 = run_spied(2, two, tmp_path / "writes", *SMALL, "--epochs", "2")
    assert p1.returncode == 0, p1.stderr
    assert p2.returncode == 0, p2.stderr
    assert "data-parallel" not in p1.stderr
    starts = [ln for ln in p2.stderr.splitlines() if "data-parallel over 2 ranks (MPI " in ln]
    assert len(starts) == 1, p2.stderr  # rank 0 alone prints
    assert len(p2.stdout.splitlines()) == 1 and p2.stdout.split(": test")[0] == p1.stdout.split(": test")[0]
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))  # the same files
    writes = [json.loads((tmp_path / f"writes.{r}.json").read_text()) for r in (0, 1)]
    assert writes[0] and writes[1] == []  # rank 0 alone wrote them
    assert summary(one)["distributed"]["ranks"] == 1 and summary(two)["distributed"]["ranks"] == 2
    a, b = state(one), state(two)
    assert a.keys() == b.keys()
    for k, v in a.items():
        if v.dtype.kind == "f":
            assert float(np.max(np.abs(b[k] - v))) <= 1e-9 * max(float(np.max(np.abs(v))), 1e-12), k
        else:
            assert np.array_equal(a[k], b[k]), k
    # Half of it on 2 ranks, the rest on 1 process: the global batch order goes on (float64: the same model).
    half = tmp_path / "half"
    p3 = run(2, *SMALL, "--epochs", "1", "--out", str(half), "--quiet")
    p4 = run(1, "--resume", str(half), "--epochs", "2", "--quiet")
    assert p3.returncode == 0 and p4.returncode == 0, p3.stderr + p4.stderr
    c = state(half)
    assert all(float(np.max(np.abs(c[k] - v))) <= 1e-9 * max(float(np.max(np.abs(v))), 1e-12)
               for k, v in a.items() if v.dtype.kind == "f")
    assert summary(half)["distributed"]["ranks"] == 1  # who trained last
    h1, h2 = summary(one)["history"], summary(two)["history"]
    assert [r["val_acc"] for r in h2] == [r["val_acc"] for r in h1] != [None, None]  # sharded, counts summed
    assert summary(two)["results"]["test_acc"] == summary(one)["results"]["test_acc"] is not None
    assert [r["samples"] for r in h2] == [r["samples"] for r in h1]  # the global batch's samples


def test_sigterm_stops_every_rank_and_the_resume_is_bit_identical(tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    proc = subprocess.Popen(command(2, *SMALL, "--epochs", "1000", "--out", str(cut)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # rank 0's progress: one plain line per epoch off a terminal
        if line.startswith("epoch 1/") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)  # to the launcher, which forwards it to every rank
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.count("interrupted by SIGTERM") == 1 and "Traceback" not in err
    s = summary(cut)
    assert s["status"] == "interrupted" and s["results"]["signal"] == "SIGTERM"
    epochs = str(int(ckpt.from_json_array(ckpt.load(cut / ckpt.FILENAME)["trainer/state"])["epoch"]) + 2)

    resumed = run(2, "--resume", str(cut), "--epochs", epochs, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    p = run(2, *SMALL, "--epochs", epochs, "--out", str(straight), "--quiet")
    assert p.returncode == 0, p.stderr
    a, b = state(straight), state(cut)
    assert a.keys() == b.keys() and [k for k in a if not np.array_equal(a[k], b[k])] == []
    assert summary(cut)["status"] == "completed" and len(summary(cut)["commands"]) == 2


@pytest.mark.parametrize(("args", "words"), [
    (("--lr", "-1"), "error: argument --lr: must be a positive number"),
    (("--data-dir", "/nonexistent/xpnet-data"), "--data-dir /nonexistent/xpnet-data is not a folder"),
    (("--batch-size", "1"), "every rank needs at least one"),  # 1 sample a batch for 2 ranks
])
def test_bad_input_is_said_once_and_every_rank_exits_2(tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    out = tmp_path / "run"
    p = run(2, *SMALL, *args, "--out", str(out))
    assert p.returncode == 2, p.stderr
    assert p.stderr.count(words) == 1 and "Traceback" not in p.stderr, p.stderr
    assert not out.exists()


def test_a_failure_on_one_rank_only_stops_every_rank_and_rank_0_names_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    good = [sys.executable, str(SCRIPT), *SMALL, "--out", str(out)]
    bad = [sys.executable, str(SCRIPT), *SMALL, "--data-dir", "/nonexistent/xpnet-data", "--out", str(out)]
    # MPMD: rank 0 has its data, rank 1 (say, another machine) does not; without agreeing, rank 0 would train
    # alone and wait for rank 1 in the first collective for ever.
    p = subprocess.run([str(MPIEXEC), "-n", "1", *good, ":", "-n", "1", *bad], capture_output=True, text=True,
                       env=env(), cwd=ROOT, timeout=300)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("error: rank 1: --data-dir /nonexistent/xpnet-data is not a folder") == 1, p.stderr
    assert not out.exists()
