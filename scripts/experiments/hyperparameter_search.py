"""Hyperparameter search (book fig. 6-24): random learning rates and weight decays, judged on validation data.

The book's recipe: hold out 20% of the training data for validation (never the test
set: choosing by test accuracy would make it one more training signal), draw
lr = 10^U(-6, -2) and weight decay = 10^U(-8, -4), train a 7-layer net for a few
epochs per trial, and keep the ranges that the best trials share.

Trials are independent, so they run in worker processes (--workers). Each finished
trial is appended to trials.jsonl at once (flushed and fsynced); --resume skips the
trials already there. A trial's hyperparameters depend only on (--seed, its index),
so a resumed or larger search draws exactly the trials a single run would have.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import _common as C
import matplotlib.pyplot as plt
import numpy as np

from xpnet import optim
from xpnet.backend import device
from xpnet.data import validation_split
from xpnet.nets import MultiLayerNet

NAME = "hyperparameter_search"
N_SAMPLES, VAL_RATIO, BATCH = 500, 0.2, 100  # the book: x_train[:500], 20% of it for validation
LR_RANGE, WD_RANGE = (-6.0, -2.0), (-8.0, -4.0)  # log10 ranges
JSONL = "trials.jsonl"
SHOWN = 20  # the grid of best curves, as in the book


def search_key(seed: int, epochs: int, quick: bool) -> dict[str, Any]:
    """What makes two trial records comparable: a resumed search must match it exactly."""
    key = {"seed": seed, "epochs": epochs, "n_samples": N_SAMPLES, "val_ratio": VAL_RATIO, "batch_size": BATCH,
           "quick": quick, "lr_log10": LR_RANGE, "wd_log10": WD_RANGE}
    return json.loads(json.dumps(key))  # as it reads back from the JSONL (tuples become lists)


def trial_config(index: int, seed: int, epochs: int, quick: bool, data_dir: str | None, dev: str) -> dict[str, Any]:
    """Trial ``index`` of the search seeded ``seed``: its hyperparameters come from (seed, index) alone."""
    ss = np.random.SeedSequence([seed, index])
    rng = np.random.Generator(np.random.PCG64(ss))
    lr = 10.0 ** rng.uniform(*LR_RANGE)
    wd = 10.0 ** rng.uniform(*WD_RANGE)
    return {"id": f"s{seed}-t{index:04d}", "index": index, "lr": lr, "weight_decay": wd,
            "net_seed": int(ss.generate_state(1)[0] & 0x7FFFFFFF), "search": search_key(seed, epochs, quick),
            "data_dir": data_dir, "device": dev}


def run_trial(config: dict[str, Any]) -> dict[str, Any]:
    """Train one net with ``config``'s hyperparameters; return its per-epoch train/validation accuracy.

    Pure: the same config gives the same record (data split, initial weights and batches are all seeded).
    """
    key = config["search"]
    dev = device(config["device"])
    (x, t), _, source = C.mnist_arrays(config["data_dir"], key["quick"], key["n_samples"], 0)
    (x_tr, t_tr), (x_val, t_val) = validation_split(x, t, ratio=key["val_ratio"], seed=key["seed"])
    x_tr, t_tr, x_val, t_val = (dev.asarray(a) for a in (x_tr, t_tr, x_val, t_val))
    net = MultiLayerNet(784, [100] * 6, 10, weight_decay_lambda=config["weight_decay"], device=dev,
                        seed=config["net_seed"])
    train_acc: list[float] = []
    val_acc: list[float] = []

    def evaluate(_: int) -> None:
        train_acc.append(C.accuracy(net, x_tr, t_tr))
        val_acc.append(C.accuracy(net, x_val, t_val))

    per_epoch = max(1, x_tr.shape[0] // key["batch_size"])
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging trial is a result, not an error
        C.fit(net, optim.SGD(config["lr"]), x_tr, t_tr, steps=key["epochs"] * per_epoch,
              batch_size=key["batch_size"], seed=config["net_seed"], every=per_epoch, on_eval=evaluate)
    return {"id": config["id"], "index": config["index"], "lr": config["lr"], "weight_decay": config["weight_decay"],
            "val_acc": val_acc, "train_acc": train_acc, "final_val_acc": val_acc[-1], "search": key,
            "data": {"source": source["source"], "is_sample": source["is_sample"], "train": int(x_tr.shape[0]),
                     "validation": int(x_val.shape[0])}}


def read_trials(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete records in a JSONL file and how many lines were not (a run killed mid-write)."""
    records, bad = [], 0
    if not path.exists():
        return records, bad
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(rec, dict) and "id" in rec and "val_acc" in rec:
            records.append(rec)
        else:
            bad += 1
    return records, bad


def prepare_log(ctx: C.Context, path: Path, key: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply --resume / --fresh to an existing trials file; return the trials to keep."""
    records, bad = read_trials(path)
    if not records and not bad:
        return []
    if ctx.args.fresh:
        path.unlink()
        ctx.log(f"--fresh: removed {path} ({len(records)} trials)")
        return []
    if not ctx.args.resume:
        raise C.ExperimentError(f"{path} already holds {len(records)} trials; pass --resume to continue that "
                                f"search or --fresh to start a new one")
    other = [r["id"] for r in records if r.get("search") != key]
    if other:
        raise C.ExperimentError(f"{path} holds trials of another search (e.g. {other[0]}: different seed, epochs "
                                f"or --quick); use another --out or --fresh")
    if bad:
        # Drop the torn line(s) so that new records start on a line of their own.
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        C.atomic_write(path, lambda f: f.write(text))
        ctx.notes.append(f"resume: dropped {bad} incomplete line(s) from {path.name}")
    ctx.log(f"--resume: {len(records)} trials already in {path}")
    return records


def run_all(ctx: C.Context, pending: list[dict[str, Any]], path: Path, workers: int, total: int,
            done: int) -> None:
    """Run ``pending`` trials (in-process, or in a pool) and append each record as soon as it exists."""
    def report(rec: dict[str, Any], k: int) -> None:
        C.append_jsonl(path, rec)
        ctx.log(f"trial {rec['id']} ({k}/{total}): lr {rec['lr']:.2e}, weight decay {rec['weight_decay']:.2e} "
                f"-> validation accuracy {rec['final_val_acc']:.3f}")

    if workers == 1:
        for cfg in pending:
            done += 1
            report(run_trial(cfg), done)
        return
    # One BLAS thread per worker (set before the children start), and "spawn": safe with CUDA and threads.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        running: set[Future[dict[str, Any]]] = {pool.submit(run_trial, cfg) for cfg in pending}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                done += 1
                report(fut.result(), done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def experiment(ctx: C.Context) -> dict[str, Any]:
    args = ctx.args
    epochs = args.epochs or (20 if ctx.quick else 50)
    trials = args.trials or (6 if ctx.quick else 100)
    data_dir = None if args.data_dir is None else str(args.data_dir)
    key = search_key(ctx.seed, epochs, ctx.quick)
    C.mnist_dataset(data_dir, ctx.quick)  # fail here, once, with a clear message if the data is missing
    path = ctx.out / JSONL
    kept = prepare_log(ctx, path, key)
    have = {r["id"] for r in kept}
    configs = [trial_config(i, ctx.seed, epochs, ctx.quick, data_dir, ctx.device.name) for i in range(trials)]
    pending = [c for c in configs if c["id"] not in have]
    ctx.log(f"{len(pending)} trials to run ({len(have)} done), {epochs} epochs each, {args.workers} worker(s)")
    run_all(ctx, pending, path, args.workers, len(have) + len(pending), len(have))

    records, _ = read_trials(path)
    records.sort(key=lambda r: -1.0 if r["final_val_acc"] is None else r["final_val_acc"], reverse=True)
    plot_best(ctx, records, epochs)
    plot_scatter(ctx, records)
    best = [{"rank": i + 1, "id": r["id"], "lr": r["lr"], "weight_decay": r["weight_decay"],
             "val_acc": r["final_val_acc"]} for i, r in enumerate(records[:SHOWN])]
    for b in best[:5]:
        ctx.log(f"best-{b['rank']}: val acc {b['val_acc']:.3f}  lr {b['lr']:.2e}  weight decay {b['weight_decay']:.2e}")
    top = records[:max(1, min(5, len(records)))]
    return {"config": {**key, "trials": trials, "workers": args.workers, "sizes": [784, *([100] * 6), 10],
                       "optimizer": "SGD"},
            "trials_file": JSONL, "trials_run_now": len(pending), "trials_total": len(records),
            "trial_ids": [r["id"] for r in records], "best": best,
            "best5_lr_range": [min(r["lr"] for r in top), max(r["lr"] for r in top)],
            "best5_weight_decay_range": [min(r["weight_decay"] for r in top), max(r["weight_decay"] for r in top)]}


def plot_best(ctx: C.Context, records: list[dict[str, Any]], epochs: int) -> None:
    shown = records[:SHOWN]
    cols = 5
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.1 * rows + 0.6), sharex=True, sharey=True, squeeze=False)
    x = np.arange(epochs + 1)
    for i, ax in enumerate(axes.ravel()):
        if i >= len(shown):
            ax.axis("off")
            continue
        r = shown[i]
        ax.plot(x, r["val_acc"], color="#0077bb", lw=1.4, label="validation")
        ax.plot(x, r["train_acc"], color="#777777", lw=1, ls="--", label="train")
        ax.set_title(f"Best-{i + 1}: val {r['final_val_acc']:.2f}\nlr {r['lr']:.1e}, wd {r['weight_decay']:.1e}",
                     fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.suptitle(f"Best {len(shown)} of {len(records)} random trials (validation accuracy, solid; train, dashed)")
    fig.tight_layout()
    ctx.save_figure(fig, "hyperparameter_best.png")


def plot_scatter(ctx: C.Context, records: list[dict[str, Any]]) -> None:
    lr = np.array([r["lr"] for r in records])
    wd = np.array([r["weight_decay"] for r in records])
    acc = np.array([np.nan if r["final_val_acc"] is None else r["final_val_acc"] for r in records])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    sc = ax.scatter(lr, wd, c=acc, cmap="viridis", vmin=0, vmax=1, s=30, edgecolors="k", linewidths=0.3)
    best = records[:5]
    ax.scatter([r["lr"] for r in best], [r["weight_decay"] for r in best], s=120, facecolors="none",
               edgecolors="#cc3311", linewidths=1.5, label="best 5")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="weight decay λ",
           xlim=(10 ** LR_RANGE[0], 10 ** LR_RANGE[1]), ylim=(10 ** WD_RANGE[0], 10 ** WD_RANGE[1]),
           title="Validation accuracy of every trial")
    fig.colorbar(sc, ax=ax, label="final validation accuracy")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    ctx.save_figure(fig, "hyperparameter_scatter.png")


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=C.positive_int, default=None,
                   help="how many trials the search has in all (default: 100; 6 with --quick)")
    p.add_argument("--epochs", type=C.positive_int, default=None,
                   help="epochs per trial (default: 50; 20 with --quick)")
    p.add_argument("--workers", type=C.positive_int, default=1,
                   help="worker processes running trials in parallel (1: in this process)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="keep the trials already in trials.jsonl, run the rest")
    group.add_argument("--fresh", action="store_true", help="delete an existing trials.jsonl and start over")


def main(argv: list[str] | None = None) -> int:
    return C.main_for(NAME, __doc__.splitlines()[0], experiment, add_flags=add_flags, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
