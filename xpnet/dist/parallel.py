"""DataParallel: what the Trainer calls to train one model over the ranks of a communicator.

Each step every rank computes the gradient of its part of the global batch, weights it by the
part's share of the batch, and the ranks sum the gradient buffer in ONE in-place allreduce: the
mean gradient of the global batch, on every rank, so the N copies of the weights stay identical.
The buffer's spare slots (:data:`xpnet.accel.flat.SPARE`) ride along in the same message:

- the rank's loss times its share: their sum is the global batch's mean loss, so every rank logs,
  and checks for divergence, the same numbers;
- a SIGINT and a SIGTERM vote, and a save vote (a time-based checkpoint is due on some rank's clock).

The votes are read when the trainer reads its losses back (every ``log_every`` steps): every rank
reads the same sums after the same step, so all agree on when to stop or save without any extra
collective or device sync per step.

Batch norm keeps per-rank batch statistics while training (each rank normalises its own part); the
running statistics, which only evaluation uses, are averaged over the ranks before every evaluation
(and put back into every rank), and averaged into each checkpoint (see docs/distributed.md).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

import numpy as np

from xpnet.accel.flat import SPARE, FlatParams, is_flat
from xpnet.backend import device_of, to_device, to_host
from xpnet.dist.shard import check_batches, rank_seed

LOSS, SIGINT, SIGTERM, SAVE = range(SPARE)  # the spare slots, in order


class DataParallel:
    """Data-parallel training over ``comm`` (:func:`xpnet.dist.comm.world`); pass it as ``Trainer(dist=...)``."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank, self.size = int(comm.rank), int(comm.size)
        self.agreed_signal: str | None = None  # what every rank read from the last allreduce's votes
        self.agreed_save = False
        self._votes = np.zeros(SPARE)  # this rank's votes (slot LOSS unused)
        self._votes_dev: Any = None  # their device copy, made again only when a vote changes
        self._tail: Any = None  # the spare slots of the latest allreduce
        self._synced_step: int | None = None  # the step at which the running statistics were last averaged

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that prints and writes files."""
        return self.rank == 0

    # --- set-up -------------------------------------------------------------------------------
    def attach(self, trainer: Any) -> None:
        """Cut the trainer's loaders into per-rank parts; start every rank from rank 0's weights."""
        loader = trainer.loader
        check_batches(loader.num_samples, loader.batch_size, loader.drop_last, self.size)
        for each in (loader, *trainer.evals.values()):
            self.shard(each)
        self.after_load(trainer)

    def shard(self, loader: Any) -> Any:
        """Make ``loader`` hand this rank its part of every batch (evaluation loaders too)."""
        loader.shard(self.rank, self.size)
        return loader

    def after_load(self, trainer: Any) -> None:
        """Rank 0's weights everywhere (a guard: every rank built or loaded the same ones), and the
        rank's own dropout seed derived from rank 0's (the one a checkpoint keeps)."""
        params = trainer.net.params
        for buf in ([params.flat] if is_flat(params) else params.values()):
            self.comm.bcast_(buf)
        rng = getattr(trainer.net, "rng", None)
        if rng is not None:
            rng.seed = rank_seed(rng.seed, self.rank)

    # --- the step -----------------------------------------------------------------------------
    def allreduce(self, grads: Any, loss: Any, share: float) -> tuple[Any, Any]:
        """Sum ``share``-weighted gradients over the ranks in place; return them and the global loss."""
        packed = not (isinstance(grads, FlatParams) and grads.buffer.shape[0] >= grads.flat.shape[0] + SPARE)
        if packed:  # a net without one flat buffer (flat=False): one temporary buffer, same collective
            buf, n = _pack(grads)
        else:
            buf, n = grads.buffer, grads.flat.shape[0]
        flat = buf[:n]
        flat *= share
        buf[n] = loss * share
        buf[n + 1:] = self._device_votes(buf)
        self.comm.allreduce_(buf)
        self._tail = buf[n:]
        xp = device_of(buf).xp
        return (_unpack(grads, buf) if packed else grads), xp.asarray(buf[n], copy=True)

    def vote_stop(self, signum: int) -> None:
        """A signal reached this rank: ask every rank to stop (the vote travels with the next steps)."""
        self._vote(SIGINT if signum == signal.SIGINT else SIGTERM)

    def vote_save(self) -> None:
        """A time-based checkpoint is due on this rank's clock: ask every rank to save."""
        self._vote(SAVE)

    def saved(self) -> None:
        """The agreed save happened: withdraw the vote."""
        self.agreed_save = False
        self._votes[SAVE] = 0.0
        self._votes_dev = None

    def read_votes(self) -> str | None:
        """Read the last allreduce's votes (every rank reads the same); the agreed signal, if any."""
        if self._tail is not None:
            tail = to_host(self._tail)
            self.agreed_save = bool(tail[SAVE] > 0)
            if tail[SIGTERM] > 0 or tail[SIGINT] > 0:
                self.agreed_signal = "SIGTERM" if tail[SIGTERM] > 0 else "SIGINT"
        return self.agreed_signal

    def _vote(self, slot: int) -> None:
        self._votes[slot] = 1.0
        self._votes_dev = None

    def _device_votes(self, buf: Any) -> Any:
        if self._votes_dev is None:
            self._votes_dev = to_device(self._votes[1:], device_of(buf), dtype=buf.dtype)
        return self._votes_dev

    # --- evaluation and state -----------------------------------------------------------------
    def sum_counts(self, correct: int, total: int) -> tuple[int, int]:
        """Evaluation counts of every rank's part, summed."""
        c, t = self.comm.sum([correct, total])
        return int(round(c)), int(round(t))

    def sync_batchnorm(self, net: Any, step: int) -> None:
        """Average the running statistics over the ranks and put the average into every rank."""
        layers = [layer for layer in net.layers if hasattr(layer, "running_mean")]
        if not layers:
            return
        xp = net.device.xp
        parts = [a for layer in layers for a in (layer.running_mean, layer.running_var)]
        buf = xp.concat([xp.reshape(a, (-1,)) for a in parts])
        self.comm.allreduce_(buf)
        buf = buf / self.size
        at = 0
        for layer in layers:
            for name in ("running_mean", "running_var"):
                shape = tuple(getattr(layer, name).shape)
                k = int(np.prod(shape, dtype=np.int64))
                setattr(layer, name, xp.reshape(buf[at:at + k], shape))
                at += k
        self._synced_step = step

    def average_running_stats(self, state: dict[str, np.ndarray], step: int) -> None:
        """Put the ranks' average running statistics into ``state`` (a checkpoint being made); the
        ranks keep their own. Nothing to do right after :meth:`sync_batchnorm` (they are equal)."""
        keys = sorted(k for k in state if k.startswith("net/running_"))
        if not keys or step == self._synced_step:
            return
        total = self.comm.sum(np.concatenate([np.ravel(state[k]) for k in keys])) / self.size
        at = 0
        for k in keys:
            v = state[k]
            state[k] = total[at:at + v.size].reshape(v.shape).astype(v.dtype)
            at += v.size


def _pack(grads: Mapping[str, Any]) -> tuple[Any, int]:
    first = next(iter(grads.values()))
    xp = device_of(first).xp
    parts = [xp.reshape(g, (-1,)) for g in grads.values()]
    n = sum(int(p.shape[0]) for p in parts)
    spare = xp.zeros(SPARE, dtype=first.dtype, device=first.device)
    return xp.concat([*parts, spare]), n


def _unpack(grads: Mapping[str, Any], buf: Any) -> dict[str, Any]:
    xp = device_of(buf).xp
    out, at = {}, 0
    for k, g in grads.items():
        k_n = int(np.prod(tuple(g.shape), dtype=np.int64))
        out[k] = xp.reshape(buf[at:at + k_n], tuple(g.shape))
        at += k_n
    return out
