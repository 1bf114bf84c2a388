#!/usr/bin/env python3
"""A Trainer run that must not wait for the device between its loss read-backs (gpu-check's ``sync`` stage).

xpnet's speed on a GPU rests on Python running ahead of the device: one read-back inside a step (``float(loss)``,
a label check, ``if norm > c``, a host-side RNG state) makes every step wait for the GPU. This trains a whole
Trainer epoch of the book's DeepConvNet (dropout on (100, 50) and (100, 10): not multiples of 256) with
``--augment shift:2``, ``--clip-norm``, a cosine schedule and ``--patience``, with every device->host read
forbidden except inside the trainer's own read-back points: the loss read-back every 50 steps, the end-of-epoch
synchronize, the NaN check and the evaluation. On CuPy the ban is ``cupyx.allow_synchronize(False)``; the CPU
tests pass their own ban (host arrays that raise when read back) to the same :func:`run`.

    python scripts/gpu_nosync.py --device cuda --out sync.json   # exit 0 when no step synced
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from xpnet import backend  # noqa: E402
from xpnet.train.config import (  # noqa: E402
    RunConfig,
    build_data,
    build_net,
    build_optimizer,
    build_schedule,
    load_data,
)
from xpnet.train.trainer import EarlyStopping, Trainer  # noqa: E402

Guard = Callable[[], contextlib.AbstractContextManager[Any]]
READBACKS = ("_flush", "_nonfinite_state", "evaluate")  # the Trainer's own read-back points
GPU_TRAIN_IMAGES = 10_000  # 100 steps of 100: two loss read-backs, the steps between them watched


def config(limit_train: int | None, batch_size: int = 100, data_dir: str | None = None) -> RunConfig:
    """The run the stage trains: what the CLI would build from these flags."""
    return RunConfig(model="deep-convnet", epochs=1, batch_size=batch_size, val_split=0.1, limit_train=limit_train,
                     patience=1, schedule="cosine", augment="shift:2", clip_norm=1.0, train_eval_size=1000,
                     data_dir=data_dir).validate()


class _SyncAllowed:
    """The trainer's device, whose ``synchronize`` (the end-of-epoch wait) runs inside ``allow``."""

    def __init__(self, dev: backend.Device, allow: Guard) -> None:
        self._dev, self._allow = dev, allow

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dev, name)

    def synchronize(self) -> None:
        with self._allow():
            self._dev.synchronize()


def _open_readback_points(trainer: Trainer, allow: Guard) -> list[int]:
    """Let the trainer's read-back points read the device; returns the steps at which losses were read back."""
    flushes: list[int] = []
    for name in READBACKS:
        method = getattr(trainer, name)

        def allowed(*args: Any, _method: Any = method, _name: str = name) -> Any:
            if _name == "_flush" and trainer._pending:
                flushes.append(trainer.global_step)
            with allow():
                return _method(*args)

        setattr(trainer, name, allowed)
    trainer.device = _SyncAllowed(trainer.device, allow)  # type: ignore[assignment]
    return flushes


def _where(exc: BaseException) -> str:
    """The innermost xpnet frame of ``exc``'s traceback: the line that read the device back."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f"{os.sep}xpnet{os.sep}" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f" in {Path(f.filename).name}:{f.lineno} {f.name}() `{(f.line or '').strip()}`"


def run(dev: backend.Device, cfg: RunConfig, dataset: Any, *, forbid: Guard, allow: Guard) -> dict[str, Any]:
    """Train ``cfg`` on ``dev`` under ``forbid``, the read-back points under ``allow``; what happened, as a dict."""
    with allow():  # setting up may read back (a probe, a label check): only training is watched
        net, opt = build_net(cfg, dev), build_optimizer(cfg)
        data = build_data(cfg, dev, tuple(net.input_shape), dataset=dataset, with_test=False)
        steps_per_epoch = len(data.train)
        trainer = Trainer(net, opt, data.train, epochs=cfg.epochs, evals=data.evals,
                          callbacks=[EarlyStopping(int(cfg.patience or 1))],
                          schedule=build_schedule(cfg, steps_per_epoch), clip_norm=cfg.clip_norm)
    flushes = _open_readback_points(trainer, allow)
    error, status = None, None
    t0 = time.perf_counter()
    try:
        with forbid():
            status = trainer.fit().status
    except Exception as exc:  # the ban's own error (cupyx.DeviceSynchronized, the CPU double's), or a real one
        error = f"{type(exc).__name__} during step {trainer.global_step + 1}{_where(exc)}: {exc}"
    seconds = time.perf_counter() - t0
    expected = list(range(trainer.log_every, steps_per_epoch + 1, trainer.log_every))
    if steps_per_epoch % trainer.log_every:
        expected.append(steps_per_epoch)
    losses = trainer.step_losses
    finite = bool(losses) and all(math.isfinite(v) for v in losses)
    ok = (error is None and status in ("completed", "early-stopped") and trainer.global_step == steps_per_epoch
          and flushes == expected and finite)
    return {"device": dev.name, "model": cfg.model, "steps": trainer.global_step, "steps_per_epoch": steps_per_epoch,
            "flushes": len(flushes), "flush_steps": flushes, "syncs_between_readbacks": 0 if error is None else 1,
            "error": error, "status": status, "seconds": round(seconds, 2),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "finite": finite, "val_acc": (trainer.history[-1].get("val_acc") if trainer.history else None),
            "ok": ok}


def cupy_guards() -> tuple[Guard, Guard]:
    import cupyx

    return (lambda: cupyx.allow_synchronize(False)), (lambda: cupyx.allow_synchronize(True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_nosync.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="a CUDA device (default cuda)")
    p.add_argument("--out", type=Path, required=True, help="write the result here as JSON (atomically)")
    args = p.parse_args(argv)
    dev = backend.device(args.device)
    if dev.backend != "cupy":
        print(f"gpu_nosync.py: --device {args.device} is not a usable CUDA device", file=sys.stderr)
        return 2
    dataset = load_data(config(None))
    n = len(dataset.x_train) - int(0.1 * len(dataset.x_train))  # left after --val-split 0.1
    cfg = config(min(GPU_TRAIN_IMAGES, n))
    forbid, allow = cupy_guards()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # CuPy marks allow_synchronize deprecated, yet keeps it
        res = run(dev, cfg, dataset, forbid=forbid, allow=allow)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", dir=args.out.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(res, f, indent=2)
    os.replace(tmp, args.out)
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
