"""scripts/gpu_nosync.py (gpu-check's sync stage) on the CPU double: a whole Trainer epoch of DeepConvNet with
dropout, shift:2 augmentation, clip-norm, a cosine schedule and patience reads nothing back between the
every-50-steps loss read-backs; the same code runs on the GPU under cupyx.allow_synchronize(False)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType

import pytest

from tests import sync_double
from tests.helpers import load_script
from xpnet.train import clipping

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_nosync.py"
TRAIN, BATCH = 120, 2  # 108 training images after --val-split 0.1: 54 steps, read back at steps 50 and 54


@pytest.fixture(scope="module")
def nosync() -> ModuleType:
    return load_script(SCRIPT, "xpnet_gpu_nosync")


def _run(nosync: ModuleType, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setenv("XPNET_OFFLINE", "1")
    cfg = nosync.config(None, batch_size=BATCH)
    ds = nosync.load_data(cfg)
    small = dataclasses.replace(ds, x_train=ds.x_train[:TRAIN], t_train=ds.t_train[:TRAIN],
                                x_test=ds.x_test[:10], t_test=ds.t_test[:10])
    return nosync.run(sync_double.sync_detector_device(), cfg, small,
                      forbid=sync_double.forbid, allow=sync_double.allow)


def test_a_trainer_epoch_reads_back_only_at_its_read_back_points(nosync: ModuleType,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = nosync.config(None, batch_size=BATCH)
    assert (cfg.model, cfg.augment, cfg.schedule) == ("deep-convnet", "shift:2", "cosine")
    assert cfg.clip_norm and cfg.patience and cfg.val_split > 0
    res = _run(nosync, monkeypatch)
    assert res["error"] is None, res["error"]
    assert res["steps"] == res["steps_per_epoch"] == 54
    assert res["flush_steps"] == [50, 54] and res["syncs_between_readbacks"] == 0
    assert res["finite"] and res["status"] == "completed" and res["ok"]


def test_a_read_back_inside_a_step_is_caught_and_located(nosync: ModuleType,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector is live: clipping that asks ``if norm > max_norm`` on the host fails the run, naming the line."""
    real = clipping.clip_grad_norm

    def host_side_clip(grads: dict[str, object], max_norm: float, eps: float = 1e-6) -> object:
        norm = clipping.global_norm(grads)
        if float(norm) > max_norm:  # the sync
            return real(grads, max_norm, eps)
        return norm

    monkeypatch.setattr("xpnet.train.trainer.clip_grad_norm", host_side_clip)
    res = _run(nosync, monkeypatch)
    assert not res["ok"] and res["syncs_between_readbacks"] == 1
    assert "SyncError during step 1" in str(res["error"]) and "__float__" in str(res["error"])
