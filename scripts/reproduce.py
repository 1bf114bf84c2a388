#!/usr/bin/env python3
"""Run one row of the README's results table: ``python scripts/reproduce.py mnist-mlp [--out DIR]``.

Every row trains with a validation split: epochs report train and val accuracy, the
weights are chosen on val (the best-val epoch, kept in best.npz), and the test set is
evaluated once, at the end, on those weights. The settings were fixed before the runs
(never picked by test accuracy). ``--list`` prints each row's xpnet-train command, and for
a row in :data:`NOT_MEASURED` what running it would cost.
Flags after the row's own (``-- --epochs 1 --limit-train 500``) are passed on and win,
which is handy for a smoke test but is then no longer the row.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

# Run from a checkout without installing: make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpnet.cli.train import main as train_main  # noqa: E402

#: Flags every row shares: choose on a 10% validation split, keep the best epoch, seed 0.
COMMON = ["--val-split", "0.1", "--seed", "0", "--train-eval-size", "10000"]

#: row -> (what it is, its xpnet-train flags besides COMMON and --out)
ROWS: dict[str, tuple[str, list[str]]] = {
    "mnist-mlp": (
        "MNIST, MLP 784-800-800-10, dropout 0.2, shifts of up to 2 px, Adam with warm-up + cosine",
        ["--dataset", "mnist", "--model", "mlp", "--hidden", "800,800", "--dropout", "0.2",
         "--augment", "shift:2", "--optimizer", "adam", "--lr", "0.001", "--schedule", "cosine",
         "--warmup-epochs", "1", "--epochs", "30", "--patience", "10"]),
    "mnist-convnet": (
        "MNIST, the book's SimpleConvNet, He init, shifts of up to 2 px, momentum + weight decay, cosine",
        ["--dataset", "mnist", "--model", "convnet", "--init", "he", "--augment", "shift:2",
         "--optimizer", "momentum", "--lr", "0.02", "--weight-decay", "5e-4", "--schedule", "cosine",
         "--warmup-epochs", "1", "--epochs", "25", "--patience", "10"]),
    "mnist-deep-convnet": (
        "MNIST, the book's DeepConvNet, shifts of up to 2 px, Adam with warm-up + cosine",
        ["--dataset", "mnist", "--model", "deep-convnet", "--augment", "shift:2", "--optimizer", "adam",
         "--lr", "0.001", "--schedule", "cosine", "--warmup-epochs", "1", "--epochs", "15", "--patience", "5"]),
    "fashion-mlp": (
        "Fashion-MNIST, MLP 784-800-800-10, dropout 0.3, flips + shifts of 1 px, Adam with warm-up + cosine",
        ["--dataset", "fashion-mnist", "--model", "mlp", "--hidden", "800,800", "--dropout", "0.3",
         "--augment", "shift:1,flip", "--optimizer", "adam", "--lr", "0.001", "--schedule", "cosine",
         "--warmup-epochs", "1", "--epochs", "40", "--patience", "10"]),
    "fashion-convnet": (
        "Fashion-MNIST, the book's SimpleConvNet, He init, flips + shifts of 2 px, momentum + weight decay, "
        "cosine",
        ["--dataset", "fashion-mnist", "--model", "convnet", "--init", "he", "--augment", "shift:2,flip",
         "--optimizer", "momentum", "--lr", "0.02", "--weight-decay", "5e-4", "--schedule", "cosine",
         "--warmup-epochs", "1", "--epochs", "30", "--patience", "10"]),
    "fashion-deep-convnet": (
        "Fashion-MNIST, the book's DeepConvNet, flips + shifts of 2 px, Adam with warm-up + cosine",
        ["--dataset", "fashion-mnist", "--model", "deep-convnet", "--augment", "shift:2,flip",
         "--optimizer", "adam", "--lr", "0.001", "--schedule", "cosine", "--warmup-epochs", "1",
         "--epochs", "20", "--patience", "6"]),
    "cifar10-convnet": (
        "CIFAR-10, DeepConvNet-style (the book's ch. 8 net on 3x32x32 colour images), pad-4 random crops + flips, "
        "Adam with warm-up + cosine",
        ["--dataset", "cifar10", "--model", "deep-convnet", "--augment", "crop:4,flip", "--optimizer", "adam",
         "--lr", "0.001", "--schedule", "cosine", "--warmup-epochs", "1", "--epochs", "30", "--patience", "8"]),
}

#: Rows not run yet, and what a run would cost (so nobody mistakes a missing number for a result).
NOT_MEASURED: dict[str, str] = {
    "cifar10-convnet": "not measured (no CIFAR-10 on the build machine); estimated ~45 min of CPU time, ~25 min "
                       "wall on two free cores (docs/data.md), peak memory ~3 GiB",
}


def command(row: str) -> list[str]:
    """The row's full xpnet-train flags (without --out)."""
    return [*ROWS[row][1], *COMMON]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reproduce.py",
        description="Train one row of the README's results table, chosen on validation data; "
                    "prints val and test accuracy, epochs and wall time.",
        epilog="rows: " + "; ".join(f"{k}: {v[0]}" for k, v in ROWS.items()))
    p.add_argument("row", nargs="?", choices=list(ROWS), metavar="ROW", help=f"one of {', '.join(ROWS)}")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/reproduce/ROW)")
    p.add_argument("--list", action="store_true", help="print every row's xpnet-train command and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if args.list:
        for row in ROWS:
            note = f"  # {NOT_MEASURED[row]}" if row in NOT_MEASURED else ""
            print(f"{row}: xpnet-train {shlex.join(command(row))}{note}")
        return 0
    if args.row is None:
        parser.error("give a ROW (or --list)")
    out = Path(args.out) if args.out else Path("runs") / "reproduce" / args.row
    flags = [*command(args.row), *extra, "--out", str(out)]
    print(f"reproduce.py {args.row}: xpnet-train {shlex.join(flags)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    rc = train_main(flags)
    wall = time.perf_counter() - t0
    summary_path = out / "summary.json"
    if rc == 0 and summary_path.exists():
        res = json.loads(summary_path.read_text())["results"]
        note = "  (extra flags: not the table's row)" if extra else ""
        print(f"{args.row}: val {res['val_acc']:.4f}  test {res['test_acc']:.4f}  selected epoch "
              f"{res['selected_epoch']} of {res['epochs']} ({res['status']})  wall {wall:.0f} s  {out}{note}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
