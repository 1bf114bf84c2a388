"""What a person reads after a search: trials.csv, best.json, three figures and one final line.

Everything is drawn from the study alone (params, states and the per-epoch curves
each trial stored), so any machine of a distributed search can write them.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xpnet.runflags import command
from xpnet.search import space as spacemod
from xpnet.train.files import atomic_write, write_json, write_text

SHOWN = 20  # the book's fig. 6-24 shows the best 20 trials


def status_of(t: Any) -> str:
    """How a trial ended, in words: completed, early-stopped, pruned, diverged, interrupted, died, error,
    running or waiting."""
    state = t.state.name.lower()
    status = t.user_attrs.get("status")
    if state == "fail":
        return "died" if status in (None, "running") else str(status)
    if state in ("running", "waiting"):
        return state
    return str(status or ("pruned" if state == "pruned" else "completed"))


def _value(t: Any) -> float | None:
    if t.value is not None:
        return float(t.value)
    vals = [v for v in t.user_attrs.get("curve", {}).get("val", []) if v is not None]
    return max(vals) if vals else None


def rows(trials: Sequence[Any], space: spacemod.Space) -> list[dict[str, Any]]:
    out = []
    for t in trials:
        v = _value(t)
        row: dict[str, Any] = {"number": t.number, "state": status_of(t),
                               "val_acc": "" if v is None else f"{v:.4f}"}
        for name in space:
            p = t.params.get(name, "")
            row[name] = spacemod.format_value(p) if p != "" else ""
        row.update(epochs=t.user_attrs.get("epochs", ""), seconds=t.user_attrs.get("seconds", ""),
                   device=t.user_attrs.get("device", ""), worker=t.user_attrs.get("worker", ""),
                   host=t.user_attrs.get("host", ""),
                   retry_of="" if t.user_attrs.get("retry_of") is None else t.user_attrs["retry_of"])
        out.append(row)
    return out


def write_csv(path: Path, trials: Sequence[Any], space: spacemod.Space) -> None:
    table = rows(trials, space)
    fields = ["number", "state", "val_acc", *space, "epochs", "seconds", "device", "worker", "host", "retry_of"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    write_text(path, buf.getvalue())


def best_trial(trials: Sequence[Any]) -> Any | None:
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def best_record(best: Any, study_name: str, storage: str) -> dict[str, Any]:
    argv = list(best.user_attrs.get("argv", []))
    if best.user_attrs.get("device"):  # the device the trial trained on: the command must not pick another
        argv += ["--device", str(best.user_attrs["device"])]
    return {"study": study_name, "storage": storage, "trial": best.number, "val_acc": best.value,
            "best_epoch": best.user_attrs.get("best_epoch"), "epochs": best.user_attrs.get("epochs"),
            "params": dict(best.params), "seconds": best.user_attrs.get("seconds"),
            "device": best.user_attrs.get("device"), "argv": argv, "command": command(argv),
            "note": "val_acc is the best epoch's validation accuracy; the command trains the same net on the "
                    "same split and reports it per epoch (the test set was never used)"}


def summary_counts(trials: Sequence[Any]) -> dict[str, int]:
    n: dict[str, int] = {}
    for t in trials:
        s = status_of(t)
        n[s] = n.get(s, 0) + 1
    return n


def final_line(study_name: str, trials: Sequence[Any], best: Any | None, seconds: float, out: Path) -> str:
    n = summary_counts(trials)
    parts = ", ".join(f"{v} {k}" for k, v in sorted(n.items(), key=lambda kv: -kv[1]))
    if best is None:
        return f"search {study_name}: no completed trial yet ({len(trials)} trials: {parts or 'none'}) " \
               f"in {seconds:.0f}s  {out}"
    params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
    return (f"search {study_name}: best trial {best.number} val {best.value:.4f}  {params} | {len(trials)} trials: "
            f"{parts} | {seconds:.0f}s | {out / 'best.json'}")


# --- figures ------------------------------------------------------------------------------------------

def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=80))


def plot_history(path: Path, trials: Sequence[Any], title: str) -> None:
    """Each trial's best validation accuracy by trial number, and the best so far."""
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    colors = {"completed": "#0077bb", "early-stopped": "#0077bb", "pruned": "#bbbbbb", "diverged": "#cc3311"}
    for status, color in colors.items():
        pts = [(t.number, _value(t)) for t in trials if status_of(t) == status and _value(t) is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=18, color=color, label=status, zorder=3)
    best, xs, ys = -math.inf, [], []
    for t in sorted(trials, key=lambda t: t.number):
        if t.state.name == "COMPLETE" and t.value is not None:
            best = max(best, t.value)
            xs.append(t.number)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="#009988", lw=1.5, label="best so far")
    ax.set(xlabel="trial", ylabel="best validation accuracy", title=title)
    if ax.get_legend_handles_labels()[0]:  # a study with no finished trial yet (interrupted) has nothing to name
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_params(path: Path, trials: Sequence[Any], space: spacemod.Space) -> None:
    """Validation accuracy against each searched parameter (log axes for log-uniform ones)."""
    names = list(space)
    cols = min(3, max(1, len(names)))
    rows_ = max(1, math.ceil(len(names) / cols))
    fig = _figure(3.6 * cols, 2.9 * rows_)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows_, cols, i + 1)
        p = space[name]
        pts = [(t.params[name], _value(t), status_of(t)) for t in trials
               if name in t.params and _value(t) is not None]
        if p.kind == "choice":
            labels = [str(c) for c in p.choices]
            xs = [labels.index(str(x)) for x, _, _ in pts]
            ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=20)
        else:
            xs = [float(x) for x, _, _ in pts]
            low, high = float(p.low), float(p.high)  # the whole searched range: where the trials fell in it
            if p.kind.startswith("log"):
                ax.set_xscale("log")
                ax.set_xlim(low / 1.2, high * 1.2)
                ax.tick_params(axis="x", which="minor", labelbottom=False)  # crowded 2x10^-3 3x10^-3 ... labels
            else:
                pad = 0.04 * (high - low)
                ax.set_xlim(low - pad, high + pad)
        ys = [y for _, y, _ in pts]
        cs = ["#bbbbbb" if s == "pruned" else "#0077bb" for _, _, s in pts]
        ax.scatter(xs, ys, s=14, c=cs)
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("val accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("Validation accuracy against each parameter (grey: pruned)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_best_curves(path: Path, trials: Sequence[Any], shown: int = SHOWN) -> None:
    """The book's fig. 6-24: the best trials' validation (solid) and train (dashed) accuracy per epoch."""
    done = [t for t in trials if _value(t) is not None and t.user_attrs.get("curve")]
    done.sort(key=lambda t: -(_value(t) or 0.0))
    best = done[:shown]
    cols = 5
    rows_ = max(1, math.ceil(len(best) / cols))
    fig = _figure(11, 2.1 * rows_ + 0.6)
    for i, t in enumerate(best):
        ax = fig.add_subplot(rows_, cols, i + 1)
        curve = t.user_attrs["curve"]
        val = [math.nan if v is None else v for v in curve.get("val", [])]
        train = [math.nan if v is None else v for v in curve.get("train", [])]
        ax.plot(range(1, len(val) + 1), val, color="#0077bb", lw=1.4)
        if any(not math.isnan(v) for v in train):
            ax.plot(range(1, len(train) + 1), train, color="#777777", lw=1, ls="--")
        params = ", ".join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in list(t.params.items())[:2])
        ax.set_title(f"Best-{i + 1} (#{t.number}): val {_value(t):.3f}\n{params}", fontsize=7)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"Best {len(best)} of {len(trials)} trials: validation (solid), train (dashed) by epoch",
                 fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def write_all(out: Path, study: Any, space: spacemod.Space, storage: str, seconds: float) -> str:
    """Write trials.csv, best.json and the figures; return the final line."""
    trials = [t for t in study.get_trials(deepcopy=False)]
    write_csv(out / "trials.csv", trials, space)
    best = best_trial(trials)
    if best is not None:
        write_json(out / "best.json", best_record(best, study.study_name, storage))
    if trials:
        plot_history(out / "history.png", trials, f"study {study.study_name}")
        if space:
            plot_params(out / "params.png", trials, space)
        plot_best_curves(out / "best_curves.png", trials)
    return final_line(study.study_name, trials, best, seconds, out)
