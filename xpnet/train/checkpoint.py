"""Checkpoints: one .npz of host arrays that restores a run exactly, on any device.

Layout (flat keys, every value a NumPy array, so ``np.load(allow_pickle=False)``
reads it and no code runs on load):

- ``format``            0-d string, :data:`FORMAT`
- ``net/<name>``        net.state_dict(): params, BatchNorm running stats, dropout RNG
- ``optim/<name>``      optimizer.state_dict(): momenta, Adam moments and step
- ``loader/<name>``     the training loader's position (epoch, step) as 0-d ints
- ``trainer/state``     JSON (0-d string): counters and timings of the trainer
- ``trainer/history``   JSON: the per-epoch records so far
- ``trainer/config``    JSON: the run's config (what to rebuild on --resume)
- ``trainer/step_losses`` float64 (steps,): the loss of every step so far

Arrays are host arrays; the net's load_state_dict moves them onto its device, so a
checkpoint written by NumPy loads into a CuPy (or array_api_strict) net.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.train.files import atomic_write

FORMAT = "xpnet-checkpoint/1"
FILENAME = "checkpoint.npz"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, from another program, or would hold NaN weights."""


def json_array(obj: Any) -> np.ndarray:
    """A JSON document as a 0-d unicode array: storable without pickle."""
    return np.asarray(json.dumps(obj, sort_keys=True))


def from_json_array(a: np.ndarray) -> Any:
    return json.loads(str(a[()]))


def section(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries under ``prefix/`` with the prefix stripped (e.g. the net's state dict)."""
    p = prefix.rstrip("/") + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


def scalars(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """0-d arrays back to Python ints/floats/strings (for state dicts that hold plain values)."""
    return {k: (v.item() if v.ndim == 0 else v) for k, v in arrays.items()}


def check_finite(arrays: Mapping[str, np.ndarray], prefix: str = "net/") -> None:
    """Raise CheckpointError if any floating array under ``prefix`` holds NaN or inf."""
    for k, v in arrays.items():
        if k.startswith(prefix) and v.dtype.kind in "fc" and not np.isfinite(v).all():
            raise CheckpointError(f"refusing to save a checkpoint: {k} holds NaN or inf values")


def save(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` atomically as an uncompressed .npz; never with non-finite weights."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    arrays.setdefault("format", np.asarray(FORMAT))
    check_finite(arrays)
    bad = [k for k, v in arrays.items() if v.dtype.hasobject]
    if bad:
        raise CheckpointError(f"checkpoint entries must be plain arrays, not Python objects: {bad}")
    # A file object (not a name) stops np.savez from appending ".npz" to the temp name.
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a checkpoint into memory; any problem is one CheckpointError with a one-line message."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint: {path}")
    if path.is_dir():
        if (path / FILENAME).is_file():
            path = path / FILENAME
        else:
            raise CheckpointError(f"{path} is a folder without a {FILENAME}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # BadZipFile, pickled content, truncation, permissions, ...
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({msg})") from None
    fmt = arrays.get("format")
    if fmt is None or fmt.ndim != 0 or str(fmt[()]) != FORMAT:
        raise CheckpointError(f"{path} is not an xpnet checkpoint (format {fmt!r}, expected {FORMAT!r})")
    for key in ("trainer/state", "trainer/config", "trainer/history"):
        if key not in arrays:
            raise CheckpointError(f"{path} is incomplete: {key} is missing")
    try:
        for key in ("trainer/state", "trainer/config", "trainer/history"):
            from_json_array(arrays[key])
    except (ValueError, IndexError) as exc:
        raise CheckpointError(f"{path} is damaged: {exc}") from None
    return arrays


def read_config(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return from_json_array(arrays["trainer/config"])


def load_net(path: str | os.PathLike[str], net: Any) -> dict[str, np.ndarray]:
    """Load only the weights (and BatchNorm/dropout state) of a checkpoint into ``net``, on its device."""
    arrays = load(path)
    net.load_state_dict(section(arrays, "net"))
    return arrays


class Checkpoint:
    """Callback: save the trainer's full state at every epoch end, when a run stops, and every ``every`` seconds.

    ``every`` (seconds, None for epoch ends only) bounds what a crash or ``kill -9`` loses inside a long
    epoch: after a step, once that much time has passed since the last save, it saves mid-epoch (the
    loader's position included, so a resumed run continues with the next batch). A diverged run saves
    nothing, so the last good checkpoint stays on disk. ``clock`` is for tests.

    In a data-parallel run every rank runs this callback (making the state is a collective: batch
    norm's running statistics are averaged), rank 0 alone writes, and a time-based save happens when
    the ranks agree on it (a vote that goes round with the gradients), after the same step on all.
    """

    def __init__(self, path: str | os.PathLike[str], every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if every is not None and not every > 0:
            raise ValueError(f"every must be a positive number of seconds or None, got {every!r}")
        self.path = Path(path)
        self.every = every
        self.clock = clock
        self.saved_step: int | None = None
        self.saved_epoch: int | None = None
        self._last_save = clock()

    def save(self, trainer: Any) -> None:
        state = trainer.state_dict()  # reads pending losses first: may find the run diverged
        if trainer.stop_status == "diverged":
            return
        try:
            if trainer.writes:
                save(self.path, state)
            else:  # another rank writes it; the same state gets the same verdict here
                check_finite(state)
        except CheckpointError as exc:
            trainer.request_stop("diverged", str(exc))
            return
        self.saved_step, self.saved_epoch = trainer.global_step, trainer.epoch
        self._last_save = self.clock()

    def on_fit_start(self, trainer: Any) -> None:
        self._last_save = self.clock()

    def on_step_end(self, trainer: Any) -> None:
        if self.every is None:
            return
        mid_epoch = trainer.step_in_epoch < trainer.steps_per_epoch  # the epoch's end saves anyway
        due = self.clock() - self._last_save >= self.every
        dist = trainer.dist
        if dist is None:
            if due and mid_epoch:
                self.save(trainer)
        elif dist.agreed_save:
            dist.saved()
            if mid_epoch:
                self.save(trainer)
        elif due:
            dist.vote_save()

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        self.save(trainer)

    def on_fit_end(self, trainer: Any, result: Any) -> None:
        if result.status != "diverged" and self.saved_step != trainer.global_step:
            self.save(trainer)
