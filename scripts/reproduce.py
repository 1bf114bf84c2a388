#!/usr/bin/env python3
"""One row of docs/results.md in one command: its recipe is chosen by ``xpnet search``, on validation.

    python scripts/reproduce.py ROW --search   # search the row's space (docs/results/ROW/space.toml)
    python scripts/reproduce.py ROW            # train the chosen recipe, select on val, test once
    python scripts/reproduce.py --table        # the results table, from docs/results/*/

``--search`` runs the row's search on the row's validation split (the test set is never loaded)
and keeps ``best.json``, ``trials.csv``, ``history.png`` and ``params.png`` in
``docs/results/ROW/``, with ``search.json`` (its command and cost). A plain run then trains the
recipe in that ``best.json`` on the same split, keeps the best-val epoch (``best.npz``) and tests
it once; ``reproduce.json`` (in the run folder, and in ``docs/results/ROW/`` for the table) records val,
test, epochs, wall and CPU time and peak memory. Flags after ``--`` are passed on and win (a smoke test,
no longer the row, and not put in the table).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

# Run from a checkout without installing: make the repository importable.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xpnet.cli.search import main as search_main  # noqa: E402
from xpnet.cli.train import main as train_main  # noqa: E402
from xpnet.train.files import write_json  # noqa: E402

RESULTS = ROOT / "docs" / "results"
#: The split every row and its search share: 54,000 train / 6,000 val images, seed 0.
SPLIT = ["--val-split", "0.1", "--seed", "0"]
#: What a search keeps in docs/results/ROW (the journal and the trials' folders stay in runs/search/ROW).
KEPT = ("best.json", "trials.csv", "history.png", "params.png")


@dataclass(frozen=True)
class Row:
    """A results row: what it is, its target, the flags the search does not draw, and the search's budget."""

    what: str
    target: float | None  # None: no target set (nothing measured to set it against)
    anchor: str
    fixed: list[str]
    budget: list[str]
    #: Flags the row adds to the searched recipe: a row whose search trained on a part of the
    #: train split for fewer epochs (a proxy, to fit the budget) trains the winner longer on all of it.
    longer: list[str] = field(default_factory=list)


def _searched(trials: int, timeout: str, *extra: str) -> list[str]:
    """A search's budget: at most ``trials`` trials, none started after ``timeout``, one worker, one thread."""
    return ["--trials", str(trials), "--timeout", timeout, "--sampler", "tpe", "--pruner", "median",
            "--workers", "1", "--devices", "cpu", *extra]


def _whole(dataset: str, model: str, trials: int, timeout: str) -> tuple[list[str], list[str]]:
    """A row whose trials are whole runs (all 54,000 images, the epochs the space draws): fixed flags, budget."""
    return ["--dataset", dataset, "--model", model, "--train-eval-size", "5000"], _searched(trials, timeout)


def _proxy(dataset: str, images: int, timeout: str, epochs: int, patience: int
           ) -> tuple[list[str], list[str], list[str]]:
    """A DeepConvNet row searched on a proxy (``images`` of the train split, 5 epochs, to fit the budget),
    whose winner then trains ``epochs`` on all of it: fixed flags, budget, and the longer run's flags."""
    return (["--dataset", dataset, "--model", "deep-convnet", "--optimizer", "adam"],
            _searched(14, timeout, "--limit-train", str(images), "--epochs", "5", "--train-eval-size", "500"),
            ["--epochs", str(epochs), "--patience", str(patience), "--train-eval-size", "5000"])


ROWS: dict[str, Row] = {
    "mnist-mlp": Row("MNIST, MLP", 0.988, "Simard 2003, 784-800-10 with distortions: 98.9%",
                     *_whole("mnist", "mlp", 16, "12m")),
    "mnist-convnet": Row("MNIST, the book's SimpleConvNet", 0.993, "the book: about 98.9%",
                         *_whole("mnist", "convnet", 20, "22m")),
    "mnist-deep-convnet": Row("MNIST, the book's DeepConvNet", 0.996,
                              "the book: 99.38%; single small CNNs with augmentation 99.6-99.7%",
                              *_proxy("mnist", 12000, "20m", 15, 15)),
    "fashion-mlp": Row("Fashion-MNIST, MLP", 0.905, "benchmark MLP 256-128-64: 90.0%",
                       *_whole("fashion-mnist", "mlp", 16, "12m")),
    "fashion-convnet": Row("Fashion-MNIST, the book's SimpleConvNet", 0.925,
                           "2 conv layers, < 100K parameters: 92.5%", *_whole("fashion-mnist", "convnet", 20, "22m")),
    "fashion-deep-convnet": Row("Fashion-MNIST, the book's DeepConvNet", 0.950,
                                "MobileNet with flips 95.0%; DenseNet-BC 768K with crops + flips 95.4%",
                                *_proxy("fashion-mnist", 12000, "20m", 15, 15)),
    "cifar10-convnet": Row("CIFAR-10, the book's DeepConvNet on 3x32x32 colour images", None, "",
                           *_proxy("cifar10", 10000, "60m", 30, 8)),
}

#: Rows nobody could run here yet, and what a run would cost (a missing number is not a result).
NOT_MEASURED: dict[str, str] = {
    "cifar10-convnet": "not measured: there is no CIFAR-10 on the build machine; one 30-epoch run is estimated at "
                       "~45 min of CPU time (peak memory ~3 GiB, measured on generated data of its shape, "
                       "docs/data.md), and its search at ~14 x 5 epochs on 10,000 images, ~1.5 CPU-hours",
}


def _fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit status 2."""
    print(f"reproduce.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def search_flags(row: str) -> list[str]:
    """The row's `xpnet search` flags."""
    r = ROWS[row]
    return [*r.fixed, *SPLIT, *r.budget, "--space", os.path.relpath(RESULTS / row / "space.toml"),
            "--out", str(Path("runs") / "search" / row)]


def recipe(row: str) -> list[str]:
    """The row's `xpnet train` flags: fixed ones, the search's winner, and the row's own (without --out)."""
    best_path = RESULTS / row / "best.json"
    if not best_path.exists():
        _fail(f"{best_path} does not exist: run `reproduce.py {row} --search` first")
    params: dict[str, Any] = json.loads(best_path.read_text())["params"]
    flags = [*ROWS[row].fixed, *SPLIT]
    for name, value in params.items():
        flags += [f"--{name}", str(value)]
    longer = ROWS[row].longer
    if not longer:  # the trial's own epochs; keep the best-val epoch and never stop early (as the trial did)
        longer = ["--patience", str(params.get("epochs", 1000))]
    return [*flags, *longer]


def _usage() -> dict[str, float]:
    """CPU seconds (this process and its finished children) and peak memory (MiB) so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_seconds": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
            "peak_mib": max(own.ru_maxrss, kids.ru_maxrss) / 1024}


def collect(row: str, wall: float | None = None, cpu: float | None = None) -> dict[str, Any]:
    """Copy the search's results into docs/results/ROW and write search.json (its command and cost)."""
    src, dst = Path("runs") / "search" / row, RESULTS / row
    for name in KEPT:
        if not (src / name).exists():
            _fail(f"{src / name} does not exist: has `reproduce.py {row} --search` run?")
        shutil.copyfile(src / name, dst / name)
    with open(dst / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    states = dict(Counter(t["state"] for t in trials))
    best = json.loads((dst / "best.json").read_text())
    record = {"command": f"python scripts/reproduce.py {row} --search",
              "search": f"xpnet search {shlex.join(search_flags(row))}",
              "trials": len(trials), "states": states,
              "trial_seconds": round(sum(float(t["seconds"] or 0) for t in trials), 1),
              "best_trial": best["trial"], "best_val_acc": best["val_acc"], "params": best["params"]}
    if wall is not None:
        record.update(wall_seconds=round(wall, 1), cpu_seconds=round(cpu or 0.0, 1))
    write_json(dst / "search.json", record)
    return record


def run_search(row: str, extra: list[str]) -> int:
    flags = [*search_flags(row), *extra]
    print(f"reproduce.py {row} --search: xpnet search {shlex.join(flags)}", file=sys.stderr, flush=True)
    t0, u0 = time.perf_counter(), _usage()
    rc = search_main(flags)
    if rc == 0 and not extra:
        rec = collect(row, time.perf_counter() - t0, _usage()["cpu_seconds"] - u0["cpu_seconds"])
        print(f"{row}: searched {rec['trials']} trials, best val {rec['best_val_acc']:.4f}; "
              f"{RESULTS / row / 'search.json'}")
    return rc


def run_row(row: str, out: Path, extra: list[str]) -> int:
    flags = [*recipe(row), *extra, "--out", str(out)]
    print(f"reproduce.py {row}: xpnet train {shlex.join(flags)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    rc = train_main(flags)
    wall, usage = time.perf_counter() - t0, _usage()
    summary_path = out / "summary.json"
    if rc != 0 or not summary_path.exists():
        return rc
    res = json.loads(summary_path.read_text())["results"]
    record = {"row": row, "command": f"python scripts/reproduce.py {row}", "train": f"xpnet train {shlex.join(flags)}",
              "val_acc": res["val_acc"], "test_acc": res["test_acc"], "epochs": res["epochs"],
              "selected_epoch": res["selected_epoch"], "status": res["status"], "wall_seconds": round(wall, 1),
              "cpu_seconds": round(usage["cpu_seconds"], 1), "peak_mib": round(usage["peak_mib"]),
              "target": ROWS[row].target, "extra_flags": extra}
    write_json(out / "reproduce.json", record)
    if not extra:  # the table's row: kept beside its search, where --table reads it
        write_json(RESULTS / row / "reproduce.json", record)
    note = "  (extra flags: not the table's row)" if extra else ""
    print(f"{row}: val {res['val_acc']:.4f}  test {res['test_acc']:.4f}  selected epoch {res['selected_epoch']} "
          f"of {res['epochs']} ({res['status']})  wall {wall:.0f} s  CPU {usage['cpu_seconds']:.0f} s  "
          f"peak {usage['peak_mib']:.0f} MiB  {_target(ROWS[row])}  {out}{note}")
    return rc


def table() -> str:
    """docs/results.md's table, from each row's search.json and reproduce.json in docs/results/ROW."""
    lines = ["| row | target (anchor) | searched | search cost | epochs (selected) | val acc | **test acc** "
             "| wall | CPU | peak memory |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row, r in ROWS.items():
        s_path, run_path = RESULTS / row / "search.json", RESULTS / row / "reproduce.json"
        s = json.loads(s_path.read_text()) if s_path.exists() else None
        run = json.loads(run_path.read_text()) if run_path.exists() else None
        proxy = " on the proxy" if r.longer else ""
        searched = f"{s['trials']} trials, best val {s['best_val_acc']:.2%}{proxy}" if s else "not yet"
        cost = "" if not s else (f"{s['wall_seconds'] / 60:.0f} min wall, {s['cpu_seconds'] / 60:.0f} CPU-min"
                                 if "wall_seconds" in s else f"{s['trial_seconds'] / 60:.0f} min in trials")
        cells = ["not run", "", "", "", "", ""]
        if row in NOT_MEASURED and not run:
            cells = [NOT_MEASURED[row], "", "", "", "", ""]
        if run and not run["extra_flags"]:
            hit = "no target" if r.target is None else "meets" if run["test_acc"] >= r.target else "misses"
            cells = [f"{run['epochs']} ({run['selected_epoch']})", f"{run['val_acc']:.2%}",
                     f"**{run['test_acc']:.2%}** ({hit})", f"{run['wall_seconds'] / 60:.1f} min",
                     f"{run['cpu_seconds'] / 60:.1f} min", f"{run['peak_mib']:.0f} MiB"]
        lines.append(f"| `{row}` | {_target(r)} | {searched} | {cost} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _target(r: Row) -> str:
    return "no target" if r.target is None else f"≥ {r.target:.1%} ({r.anchor})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reproduce.py",
        description="Search one row of docs/results.md (--search), or train its chosen recipe and test it once.",
        epilog="rows: " + "; ".join(f"{k}: {v.what}" for k, v in ROWS.items()))
    p.add_argument("row", nargs="?", choices=list(ROWS), metavar="ROW", help=f"one of {', '.join(ROWS)}")
    p.add_argument("--search", action="store_true", help="run the row's search (resumes a study that exists)")
    p.add_argument("--collect", action="store_true",
                   help="only copy a finished search's results from runs/search/ROW into docs/results/ROW")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/reproduce/ROW)")
    p.add_argument("--list", action="store_true", help="print every row's search and train commands and exit")
    p.add_argument("--table", action="store_true", help="print the results table in Markdown and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if args.list:
        for row in ROWS:
            has = (RESULTS / row / "best.json").exists()
            print(f"{row} search: xpnet search {shlex.join(search_flags(row))}")
            print(f"{row} train:  " + (f"xpnet train {shlex.join(recipe(row))}" if has else "(not searched yet)"))
        for row, note in NOT_MEASURED.items():
            print(f"{row}: {note}")
        return 0
    if args.table:
        print(table())
        return 0
    if args.row is None:
        parser.error("give a ROW (or --list, --table)")
    if args.collect:
        rec = collect(args.row)
        print(f"{args.row}: {rec['trials']} trials, best val {rec['best_val_acc']:.4f}; kept in {RESULTS / args.row}")
        return 0
    if args.search:
        return run_search(args.row, extra)
    return run_row(args.row, Path(args.out) if args.out else Path("runs") / "reproduce" / args.row, extra)


if __name__ == "__main__":
    sys.exit(main())
