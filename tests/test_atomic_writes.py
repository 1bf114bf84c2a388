"""Every file a run rewrites survives a failed rewrite: the disk fills up half-way, the old file stays.

The full disk is real to the writer: RLIMIT_FSIZE makes the kernel refuse (EFBIG) any write that grows a
file past a few bytes, wherever and however the file was opened, so a writer that rewrote a file in
place would leave it truncated, and one that forgot its temp file would leave that behind.
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xpnet import backend
from xpnet.train import BestCheckpoint, Checkpoint, MetricsCSV
from xpnet.train import checkpoint as ckpt
from xpnet.train.metrics import write_summary

from .test_train import make

resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE (the simulated full disk) is POSIX only")

LIMIT = 16  # bytes a file may grow to while the disk is "full": less than any file written here


@contextmanager
def disk_full() -> Iterator[None]:
    """Within the block a write that grows any file past LIMIT bytes fails with EFBIG, as a full disk would."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the signal's default (a core dump)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_the_full_disk_is_full(tmp_path: Path) -> None:
    """The stand-in can fail: a plain in-place rewrite under it loses the old content."""
    f = tmp_path / "plain.txt"
    f.write_text("old content, longer than the limit\n")
    with disk_full(), pytest.raises(OSError) as info, open(f, "w") as out:
        out.write("new content, also longer than the limit\n")
    assert info.value.errno == errno.EFBIG
    assert f.read_text() != "old content, longer than the limit\n"


def rewrite_fails(path: Path, rewrite: Any) -> None:
    """``rewrite()`` on a full disk raises an OSError naming ``path``; ``path`` keeps its bytes; no temp file."""
    before = path.read_bytes()
    assert len(before) > LIMIT
    with disk_full(), pytest.raises(OSError) as info:
        rewrite()
    assert info.value.errno == errno.EFBIG and info.value.filename == str(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left behind


def test_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / ckpt.FILENAME
    tr = make(backend.cpu(), epochs=1, callbacks=(Checkpoint(path),))
    tr.fit()
    tr.epochs = 2

    rewrite_fails(path, tr.fit)  # epoch 2's checkpoint does not fit
    assert ckpt.from_json_array(ckpt.load(path)["trainer/state"])["epoch"] == 1


def test_best_npz(tmp_path: Path) -> None:
    path = tmp_path / "best.npz"
    tr = make(backend.cpu(), epochs=1)
    tr.fit()
    best = BestCheckpoint(path)
    best.on_epoch_end(tr, {"epoch": 1, "val_acc": 0.5})
    tr.epochs = 2
    tr.fit()

    rewrite_fails(path, lambda: best.on_epoch_end(tr, {"epoch": 2, "val_acc": 0.9}))
    assert (best.best_epoch, best.best) == (1, 0.5)  # the epoch on disk is still the best one it knows
    assert ckpt.from_json_array(ckpt.load(path)["trainer/state"])["epoch"] == 1


def test_metrics_csv(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    csv = MetricsCSV(path)
    tr = make(backend.cpu(), epochs=1, callbacks=(csv,))
    tr.fit()
    tr.epochs = 2
    tr.callbacks = []
    tr.fit()

    rewrite_fails(path, lambda: csv.on_epoch_end(tr, tr.history[-1]))
    assert len(path.read_text().splitlines()) == 2  # the header and epoch 1


def test_summary_json(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_summary(path, {"status": "running", "epochs": 1})

    rewrite_fails(path, lambda: write_summary(path, {"status": "completed", "epochs": 2, "history": [1.0] * 50}))


def test_book_save_params(tmp_path: Path) -> None:
    from xpnet.book.two_layer_net import TwoLayerNet

    path = tmp_path / "params.pkl"
    net = TwoLayerNet(input_size=10, hidden_size=8, output_size=3)
    net.save_params(path)
    net.params["W1"][...] = 0.0

    rewrite_fails(path, lambda: net.save_params(path))
    with np.load(path, allow_pickle=False) as f:
        assert np.any(f["W1"] != 0)
