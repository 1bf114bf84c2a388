"""``--final``: train the best trial's config on train+val, then evaluate the test set once.

This is the only place the search touches the test set, after the choice is made.
The run uses the best trial's flags with --val-split 0 (the validation images go
back into training), --limit-train grown by the images that were held out, and
--epochs set to the epoch at which the best trial peaked (an epoch count chosen on
validation data, like every other setting). Its result is recorded on its own, in
``final/final.json``, never mixed into the search's results.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xpnet import backend
from xpnet.runflags import TrainFlags, command
from xpnet.train import checkpoint as ckpt
from xpnet.train.config import build_net_and_data, build_trainer
from xpnet.train.files import write_json

#: Flags the final run sets itself.
_REPLACED = ("--val-split", "--epochs", "--limit-train", "--patience")


def final_argv(argv: Sequence[str], epochs: int, limit_train: int | None) -> list[str]:
    """The best trial's train flags, rewritten for the final run on train+val."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in _REPLACED:
            skip = "=" not in a
            continue
        out.append(a)
    out += ["--val-split", "0", "--epochs", str(epochs)]
    if limit_train is not None:
        out += ["--limit-train", str(limit_train)]
    return out


def run_final(best: Any, out: Path, device: str) -> dict[str, Any]:
    """Train and test once; write ``out/final.json`` (plus metrics.csv and the checkpoint) and return it."""
    flags = TrainFlags()
    argv = list(best.user_attrs["argv"])
    cfg = flags.config(argv)
    epochs = int(best.user_attrs.get("best_epoch") or cfg.epochs)
    dev = backend.device(device)
    # How many images validation held out: the trial's own split of the same dataset.
    _, trial_data = build_net_and_data(cfg, dev, with_test=False)
    n_val = trial_data.info["n_val"]
    limit = None if cfg.limit_train is None else cfg.limit_train + n_val
    argv_final = final_argv(argv, epochs, limit)
    cfg_final = dataclasses.replace(flags.config(argv_final))
    net, data = build_net_and_data(cfg_final, dev)
    test_loader = data.evals.pop("test")  # evaluated once, after training
    from xpnet.train.checkpoint import Checkpoint
    from xpnet.train.metrics import MetricsCSV

    out.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg_final, net, data,
                            callbacks=[Checkpoint(out / ckpt.FILENAME), MetricsCSV(out / "metrics.csv")])
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    record: dict[str, Any] = {"trial": best.number, "val_acc_in_search": best.value, "params": dict(best.params),
                              "status": result.status, "epochs": trainer.epoch, "n_train": data.info["n_train"],
                              "train_acc": result.last.get("train_acc") if result.last else None,
                              "test_acc": None, "n_test": data.info["n_test"], "seconds": round(seconds, 3),
                              "device": dev.name, "argv": argv_final, "command": command(argv_final)}
    if result.status in ("completed", "early-stopped"):
        record["test_acc"] = trainer.evaluate(test_loader)
    write_json(out / "final.json", record)
    return record
