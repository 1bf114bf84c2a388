"""``xpnet eval RUN|CHECKPOINT``: where a trained model goes wrong on the test set.

Writes into ``--out`` (default ``RUN/eval/``): ``eval.json`` (accuracy, per-class accuracy, the
confusion matrix, every mistake with its confidence, and whether the accuracy equals the run's
own ``results.test_acc``), ``confusion.png`` and ``mistakes.png``. Exit 0 done, 2 bad input
(nothing written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xpnet.cli._common import (
    EXIT_FAIL,
    EXIT_OK,
    Parser,
    UsageError,
    check_dataset,
    device_arg,
    first_line,
    load_model,
    model_arg,
    positive_int,
    run,
    say,
    writable_folder,
)

PROG = "xpnet eval"
FILES = ("eval.json", "confusion.png", "mistakes.png")


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
               epilog="exit status: 0 done, 2 bad input (nothing written)")
    model_arg(p)
    p.add_argument("--dataset", metavar="NAME|DIR|FILE.npz",
                   help="the test set to use: the model's own (default), or for a model trained on a folder or "
                        ".npz another one with the same classes")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder with the IDX files or CIFAR-10's archive (default: the run's --data-dir, "
                        "$XPNET_DATA_DIR or xpnet's own lookup)")
    p.add_argument("--out", metavar="DIR", help="where to write eval.json, confusion.png, mistakes.png "
                                                "(default RUN/eval)")
    p.add_argument("--mistakes", type=positive_int, default=40, metavar="N",
                   help="how many mistakes mistakes.png shows, most confident first (default 40)")
    device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    return run(PROG, lambda: _eval(args, argv_list))


def _out_dir(arg: str | None, model: Any) -> Path:
    return writable_folder("--out", Path(arg) if arg else model.run_dir / "eval")


def _data_dir(arg: str | None, model: Any) -> str | None:
    if arg is not None:
        if not Path(arg).is_dir():
            raise UsageError(f"--data-dir {arg} is not a folder")
        return arg
    stored = model.config.data_dir  # where the run found its data, if it was told
    return stored if stored and Path(stored).is_dir() else None


def _check_fits(ds: Any, model: Any) -> None:
    """The test set must hold the model's kind of sample and its classes (another folder may differ)."""
    if tuple(ds.x_test.shape[1:]) != model.sample_shape:
        raise UsageError(f"{ds.name}: its samples are {tuple(ds.x_test.shape[1:])} but the model {model.checkpoint} "
                         f"was trained on {model.sample_shape}")
    if ds.classes and list(ds.classes) != model.classes:
        raise UsageError(f"{ds.name}: its classes ({', '.join(ds.classes)}) are not the model's "
                         f"({', '.join(model.classes)})")


def _eval(args: argparse.Namespace, argv: list[str]) -> int:
    from xpnet.data import DataError, open_dataset
    from xpnet.model_io import evaluate as ev_mod
    from xpnet.model_io import figures
    from xpnet.train.files import write_json

    model = load_model(args.model, args.device)
    dataset = check_dataset(model, args.dataset, "be evaluated on")
    out = _out_dir(args.out, model)
    try:
        # The run's own data options, so a folder gives the very test pictures (and cache entry) it had.
        c = model.config
        ds = open_dataset(dataset, data_dir=_data_dir(args.data_dir, model), image_size=c.image_size,
                          channels=c.channels, test_split=c.test_split, strict_images=c.strict_images)
    except (DataError, OSError) as exc:
        raise UsageError(first_line(exc)) from None
    _check_fits(ds, model)

    cfg = model.config
    ev = ev_mod.evaluate(model.net, ds.x_test, ds.t_test, batch_size=cfg.eval_batch_size, dtype=cfg.dtype)
    classes = model.classes
    run_acc = model.run_test_acc
    matches = None if run_acc is None else ev.accuracy == run_acc
    per_class = [{"label": i, "name": classes[i], "n": int(row.sum()), "correct": int(row[i]),
                  "accuracy": acc}
                 for i, (row, acc) in enumerate(zip(ev.confusion(), ev.per_class_accuracy(), strict=True))]
    report: dict[str, Any] = {
        "command": ["xpnet", "eval", *argv],
        "model": str(model.checkpoint),
        "net": {"model": cfg.model, "class": type(model.net).__name__, "hidden": list(cfg.hidden_sizes)},
        "dataset": {"name": ds.name, "source": str(ds.source), "is_sample": bool(ds.is_sample),
                    "n_test": ev.n, "classes": classes},
        "device": model.net.device.name,
        "test_acc": ev.accuracy,
        "correct": ev.correct,
        "run_test_acc": run_acc,
        "matches_run": matches,
        "per_class": per_class,
        "confusion": {"rows": "true class", "columns": "predicted class", "counts": ev.confusion().tolist()},
        "mistakes": [{"index": int(i), "true": int(ev.labels[i]), "predicted": int(ev.predicted[i]),
                      "confidence": ev.confidence(int(i))} for i in ev.mistakes()],
        "files": {"confusion": "confusion.png", "mistakes": "mistakes.png"},
    }
    title = f"{ds.name} · {cfg.model} · test accuracy {ev.accuracy:.4f} ({ev.correct}/{ev.n})"
    try:
        out.mkdir(parents=True, exist_ok=True)
        figures.confusion_png(ev, classes, out / "confusion.png", title=title)
        figures.mistakes_png(ev, ds.x_test, classes, out / "mistakes.png", limit=args.mistakes)
        write_json(out / "eval.json", report)
    except OSError as exc:  # the disk filled up, the folder went away: each file is whole or absent
        say(PROG, f"error: cannot write {exc.filename or out}: {exc.strerror or exc}")
        return EXIT_FAIL

    same = "" if run_acc is None else (" = the run's test_acc" if matches else
                                       f" (the run reported {run_acc:.4f}: data or device differ)")
    worst = min((c for c in per_class if c["accuracy"] is not None), key=lambda c: c["accuracy"])
    print(f"{ds.name} {cfg.model}: test {ev.accuracy:.4f} ({ev.correct}/{ev.n}){same}  "
          f"worst class {worst['name']} {worst['accuracy']:.4f}  {ev.n - ev.correct} mistakes  "
          f"on {model.net.device.name}  → {out}/{{{','.join(FILES)}}}")
    return EXIT_OK
