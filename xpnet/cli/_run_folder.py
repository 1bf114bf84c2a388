"""The run folder of ``xpnet train``: which one, that it holds no other run, that it can be written.

Chosen and checked before anything is written (every rank of a data-parallel run checks it), made once
the whole run has been checked (by rank 0 alone).
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from pathlib import Path

from xpnet.train import checkpoint as ckpt

#: The files a run writes: a folder holding any of them holds a run.
OUTPUTS = ("summary.json", "metrics.csv", "curves.png", ckpt.FILENAME, "best.npz")


class UsageError(Exception):
    """Bad input found after parsing (a file, a combination of flags): exit 2, one line."""


def choose(out_arg: str | None, resume: Path | None) -> Path:
    """Where the run writes; refuse a folder holding another run's files or one we cannot write."""
    out = Path(out_arg) if out_arg else resume.parent if resume is not None else default()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        taken = [f for f in OUTPUTS if (out / f).exists()]
        ours = resume is not None and same_dir(resume.parent, out)
        if taken and not ours:
            raise UsageError(f"--out {out} already holds a run ({', '.join(taken)}); choose another --out "
                             f"or continue it with --resume {out / ckpt.FILENAME}")
    # The nearest existing ancestor must be a folder we may create things in.
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} cannot be created or written ({probe} is not a writable folder)")
    return out


def default() -> Path:
    """runs/<date-time>, with -2, -3, ... if that is taken."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out, n = Path("runs") / stamp, 2
    while out.exists():
        out, n = Path("runs") / f"{stamp}-{n}", n + 1
    return out


def same_dir(a: Path, b: Path) -> bool:
    """Whether two paths name one folder (False where either cannot be resolved)."""
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def make(out: Path) -> None:
    """Create ``out`` and prove it writable with a probe file."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".probe.", dir=out)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UsageError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
