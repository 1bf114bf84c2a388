"""Hyperparameter search (book fig. 6-24): random learning rates and weight decays, judged on validation data.

The book's recipe: hold out 20% of the training data for validation (never the test
set: choosing by test accuracy would make it one more training signal), draw
lr = 10^U(-6, -2) and weight decay = 10^U(-8, -4), train a 7-layer net for a few
epochs per trial, and keep the ranges that the best trials share.

It runs on the engine of ``xpnet search`` (Optuna, random sampler, no pruning): the
study lives in study.journal under --out, --workers starts worker processes through
the search's supervisor (a killed worker's trial is retried), and --resume continues
the study. A trial's draw depends only on (--seed, its number), so a resumed or
larger search draws exactly the trials a single run would have.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import _common as C
import matplotlib.pyplot as plt
import numpy as np

from xpnet.cli import search as search_cli
from xpnet.search import results as search_results
from xpnet.search import study as search
from xpnet.search.space import Param
from xpnet.train import signals

NAME = "hyperparameter_search"
N_SAMPLES, VAL_RATIO, BATCH = 500, 0.2, 100  # the book: x_train[:500], 20% of it for validation
LR_RANGE, WD_RANGE = (-6.0, -2.0), (-8.0, -4.0)  # log10 ranges
HIDDEN = [100] * 6  # the book's 7-layer net
JOURNAL = "study.journal"
SHOWN = 20  # the grid of best curves, as in the book
SPACE = {"lr": Param("log-uniform", 10 ** LR_RANGE[0], 10 ** LR_RANGE[1]),
         "weight-decay": Param("log-uniform", 10 ** WD_RANGE[0], 10 ** WD_RANGE[1])}


def study_name(quick: bool) -> str:
    return "book-6.5-quick" if quick else "book-6.5"


def engine_argv(args: argparse.Namespace, epochs: int, trials: int, dev: str) -> list[str]:
    """The `xpnet search` command line of this experiment (the space is given in code: SPACE)."""
    argv = ["--model", "mlp", "--hidden", ",".join(map(str, HIDDEN)), "--optimizer", "sgd",
            "--batch-size", str(BATCH), "--epochs", str(epochs), "--val-split", str(VAL_RATIO),
            "--trials", str(trials), "--seed", str(args.seed), "--sampler", "random", "--pruner", "none",
            "--workers", str(args.workers), "--devices", dev, "--out", str(args.out),
            "--study", study_name(args.quick)]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    return argv


def book_dataset(args: argparse.Namespace) -> Any:
    """The book's data: the first 500 training images (the trials split off 20% of them for validation)."""
    ds = C.mnist_dataset(None if args.data_dir is None else str(args.data_dir), bool(args.quick))
    if ds.x_train.shape[0] < N_SAMPLES:
        raise C.ExperimentError(f"{ds.name} ({ds.source}) has {ds.x_train.shape[0]} training images; "
                                f"the book's search needs {N_SAMPLES}")
    return dataclasses.replace(ds, x_train=ds.x_train[:N_SAMPLES], t_train=ds.t_train[:N_SAMPLES],
                               x_test=ds.x_test[:0], t_test=ds.t_test[:0])


def open_search(args: argparse.Namespace, epochs: int, trials: int, dev: str) -> search.Search:
    sargs, rest = search_cli.build_parser().parse_known_args(engine_argv(args, epochs, trials, dev))
    try:
        return search_cli.prepare(sargs, rest, space=SPACE)
    except search.SearchError as exc:
        raise C.ExperimentError(str(exc)) from None


def defaults(args: argparse.Namespace) -> tuple[int, int]:
    return args.epochs or (20 if args.quick else 50), args.trials or (6 if args.quick else 100)


def run_worker(args: argparse.Namespace) -> int:
    """A worker process started by --workers: trials until the study has enough."""
    epochs, trials = defaults(args)
    s = open_search(args, epochs, trials, args.device)
    return search.run_in_process(s, args.worker_index, dataset=book_dataset(args), reap_local=False)


def prepare_study(ctx: C.Context, epochs: int, trials: int) -> search.Search:
    """Apply --resume / --fresh to an existing study; return the opened search."""
    args = ctx.args
    journal = ctx.out / JOURNAL
    if journal.exists() and args.fresh:
        journal.unlink()
        shutil.rmtree(ctx.out / "trials", ignore_errors=True)
        ctx.log(f"--fresh: removed {journal}")
    s = open_search(args, epochs, trials, ctx.device.name)
    have = len(s.study.get_trials(deepcopy=False))
    if have and not args.resume:
        raise C.ExperimentError(f"{journal} already holds {have} trials; pass --resume to continue that "
                                f"search or --fresh to start a new one")
    if have:
        ctx.log(f"--resume: {have} trials already in {journal}")
    return s


def experiment(ctx: C.Context) -> dict[str, Any]:
    args = ctx.args
    epochs, trials = defaults(args)
    ds = book_dataset(args)  # fail here, once, with a clear message if the data is missing
    s = prepare_study(ctx, epochs, trials)
    search.recover(s)
    done = search.workers_counts(s)["done"]
    complete_before = search.workers_counts(s)["complete"]
    ctx.log(f"{max(0, trials - done)} trials to run ({done} done), {epochs} epochs each, {args.workers} worker(s)")
    worker = [sys.executable, str(Path(__file__).resolve()), *sys_argv(args)]
    code = search.run_workers(s, lambda i: [*worker, "--worker-index", str(i)], dataset=ds)
    if code in (130, 143):  # the workers stopped on Ctrl-C or SIGTERM: stop the same way (exit 130 / 143)
        raise signals.Interrupted(code - 128)
    if code != 0:
        raise C.ExperimentError(f"a search worker failed (exit {code})")

    all_trials = s.study.get_trials(deepcopy=False)
    search_results.write_csv(ctx.out / "trials.csv", all_trials, SPACE)
    records = [t for t in all_trials if t.state.name == "COMPLETE"]
    records.sort(key=lambda t: (-t.value, t.number))
    for t in records:
        ctx.log(f"trial {t.number}: lr {t.params['lr']:.2e}, weight decay {t.params['weight-decay']:.2e} "
                f"-> validation accuracy {t.value:.3f}")
    plot_best(ctx, records, len(records))
    plot_scatter(ctx, records)
    best = [{"rank": i + 1, "trial": t.number, "lr": t.params["lr"], "weight_decay": t.params["weight-decay"],
             "val_acc": t.value} for i, t in enumerate(records[:SHOWN])]
    for b in best[:5]:
        ctx.log(f"best-{b['rank']}: val acc {b['val_acc']:.3f}  lr {b['lr']:.2e}  weight decay {b['weight_decay']:.2e}")
    top = best[:max(1, min(5, len(best)))]
    return {"config": {"seed": ctx.seed, "epochs": epochs, "n_samples": N_SAMPLES, "val_ratio": VAL_RATIO,
                       "batch_size": BATCH, "lr_log10": LR_RANGE, "wd_log10": WD_RANGE, "trials": trials,
                       "workers": args.workers, "sizes": [784, *HIDDEN, 10], "optimizer": "SGD",
                       "engine": "xpnet search (Optuna, random sampler, no pruner)", "study": s.study_name},
            "trials_file": JOURNAL, "trials_run_now": len(records) - complete_before,
            "trials_total": len(records), "trial_ids": [t.number for t in records], "best": best,
            "best5_lr_range": [min(b["lr"] for b in top), max(b["lr"] for b in top)],
            "best5_weight_decay_range": [min(b["weight_decay"] for b in top), max(b["weight_decay"] for b in top)]}


def sys_argv(args: argparse.Namespace) -> list[str]:
    """This run's flags for the worker processes (they open the same study; --fresh was already applied)."""
    argv = ["--device", args.device, "--seed", str(args.seed), "--out", str(args.out), "--workers", str(args.workers)]
    for flag in ("trials", "epochs"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    if args.quick:
        argv.append("--quick")
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    return argv


def plot_best(ctx: C.Context, records: list[Any], total: int) -> None:
    shown = records[:SHOWN]
    cols = 5
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.1 * rows + 0.6), sharex=True, sharey=True, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= len(shown):
            ax.axis("off")
            continue
        t = shown[i]
        curve = t.user_attrs["curve"]
        x = np.arange(1, len(curve["val"]) + 1)
        ax.plot(x, curve["val"], color="#0077bb", lw=1.4, label="validation")
        ax.plot(x, curve["train"], color="#777777", lw=1, ls="--", label="train")
        ax.set_title(f"Best-{i + 1}: val {t.value:.2f}\nlr {t.params['lr']:.1e}, wd {t.params['weight-decay']:.1e}",
                     fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.suptitle(f"Best {len(shown)} of {total} random trials (validation accuracy, solid; train, dashed)")
    fig.tight_layout()
    ctx.save_figure(fig, "hyperparameter_best.png")


def plot_scatter(ctx: C.Context, records: list[Any]) -> None:
    lr = np.array([t.params["lr"] for t in records])
    wd = np.array([t.params["weight-decay"] for t in records])
    acc = np.array([t.value for t in records])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    sc = ax.scatter(lr, wd, c=acc, cmap="viridis", vmin=0, vmax=1, s=30, edgecolors="k", linewidths=0.3)
    best = records[:5]
    ax.scatter([t.params["lr"] for t in best], [t.params["weight-decay"] for t in best], s=120, facecolors="none",
               edgecolors="#cc3311", linewidths=1.5, label="best 5")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="weight decay λ",
           xlim=(10 ** LR_RANGE[0], 10 ** LR_RANGE[1]), ylim=(10 ** WD_RANGE[0], 10 ** WD_RANGE[1]),
           title="Validation accuracy of every trial")
    fig.colorbar(sc, ax=ax, label="best validation accuracy")
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
    group.add_argument("--resume", action="store_true", help="continue the study in --out (study.journal)")
    group.add_argument("--fresh", action="store_true", help="delete an existing study.journal and start over")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--worker-index" in args:  # a worker process started by --workers (see run_worker)
        parser = C.make_parser(NAME, __doc__.splitlines()[0])
        add_flags(parser)
        return run_worker(parser.parse_args(args))
    return C.main_for(NAME, __doc__.splitlines()[0], experiment, add_flags=add_flags, argv=args)


if __name__ == "__main__":
    sys.exit(main())
