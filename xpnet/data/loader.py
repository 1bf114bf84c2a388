"""Mini-batches on the device: a seeded, resumable DataLoader, and the book's host-side helpers.

The loader copies uint8 images and integer labels to the device once, then
builds each batch there: an index array (the only per-epoch host-to-device
copy) picks rows with ``xp.take``, and conversion to floats, scaling by 1/255,
reshaping and one-hot encoding all run on the device, in the Array API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from xpnet import backend
from xpnet.backend import Device
from xpnet.data.augment import Augment
from xpnet.dist.shard import span


def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: depends only on (seed, epoch), so any epoch can be replayed."""
    gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
    return gen.permutation(n).astype(np.int64)


def _length(a: Any, what: str) -> int:
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) == 0:
        raise ValueError(f"{what} must be an array with a leading sample axis, got {type(a).__name__}")
    return int(shape[0])


class DataLoader:
    """Iterate over ``(x_batch, t_batch)`` pairs already on ``device``.

    x: images (N, 28, 28), (N, 784) or (N, 1, 28, 28), uint8 (scaled by 1/255
    when ``normalize``) or float (taken as is). t: class indices (N,) or
    one-hot (N, C). ``flatten`` picks (B, 784) vs NCHW (B, 1, 28, 28);
    ``one_hot`` picks (B, C) ``dtype`` labels vs int64 indices.

    ``augment`` (an :class:`~xpnet.data.augment.Augment`, for training loaders only) moves and
    mirrors each batch on the device, with choices drawn from (seed, epoch), so they resume too.

    Shuffling uses a fresh permutation per epoch from SeedSequence([seed, epoch]).
    ``epoch`` counts finished epochs and ``step`` the batches handed out in the
    current one; :meth:`state_dict` / :meth:`load_state_dict` save and restore
    them, and the next iteration resumes at that batch. One iteration runs at a time.
    Under data-parallel training :meth:`shard` makes it hand out one rank's part of every batch;
    ``batch_sizes`` is (this part's size, the whole batch's) for the batch handed out last.
    Index labels are checked to lie in [0, num_classes) here, once, so the training step need
    not check them again (``SoftmaxWithLoss.check_labels``): no device→host sync per step.
    """

    def __init__(self, x: Any, t: Any, batch_size: int, shuffle: bool = True, seed: int | None = 0,
                 device: Device | str | None = None, drop_last: bool = False, flatten: bool = True,
                 one_hot: bool = False, normalize: bool = True, dtype: str | Any = "float32",
                 num_classes: int = 10, augment: Augment | None = None) -> None:
        n, m = _length(x, "x"), _length(t, "t")
        if n != m:
            raise ValueError(f"x and t must have the same length: x has {n} samples, t has {m}")
        if n == 0:
            raise ValueError("x and t are empty: nothing to load")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise ValueError(f"batch_size must be an int, got {batch_size!r}")
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be between 1 and the number of samples ({n}), got {batch_size}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(t.shape) == 2 and t.shape[1] == 1 and backend.array_namespace(t).isdtype(t.dtype, "integral"):
            t = backend.array_namespace(t).reshape(t, (m,))  # the book's column of class indices: checked as such
        x_shape, t_shape = tuple(x.shape), tuple(t.shape)
        if len(t_shape) not in (1, 2):
            raise ValueError(f"t must be class indices (N,) or one-hot (N, C), got shape {t_shape}")
        if isinstance(t, np.ndarray) and t.ndim == 1 and t.size:
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(f"labels must be in 0..{num_classes - 1}, found {lo}..{hi}")

        self.device = backend.device(device) if device is not None else backend.cpu()
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.flatten = bool(flatten)
        self.one_hot = bool(one_hot)
        self.num_classes = int(num_classes)
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self.epoch = 0
        self.step = 0
        self.rank, self.ranks = 0, 1
        self.batch_sizes = (0, 0)
        self._n = n
        self._sample_shape = self._out_shape(x_shape[1:])
        self.augment = augment
        if augment is not None:
            self._image_shape = self._image_shape_of(x_shape[1:])
            augment.check(self._image_shape)

        dev, xp = self.device, self.device.xp
        self.dtype = dev.dtype(dtype) if isinstance(dtype, str) else dtype
        with dev.context():  # CuPy casts and compares on the current GPU: make it the loader's
            # The single host-to-device copy of the data, in its stored dtype (uint8 images stay uint8).
            self.x = dev.asarray(x)
            self._scale = bool(normalize) and xp.isdtype(self.x.dtype, "integral")
            t_dev = dev.asarray(t)
            self.t = xp.astype(t_dev, xp.int64) if len(t_shape) == 1 else t_dev
            if not isinstance(t, np.ndarray) and len(t_shape) == 1:  # device labels: checked here, once
                lo, hi = int(xp.min(self.t)), int(xp.max(self.t))
                if lo < 0 or hi >= num_classes:
                    raise ValueError(f"labels must be in 0..{num_classes - 1}, found {lo}..{hi}")
            self._classes = xp.arange(self.num_classes, dtype=xp.int64, device=dev.native)

    def _out_shape(self, rest: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape: (D,) when flattening, else (C, H, W)."""
        if self.flatten:
            return (int(np.prod(rest, dtype=np.int64)),)
        return self._image_shape_of(rest)

    @staticmethod
    def _image_shape_of(rest: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample image shape (C, H, W): square flat samples are taken as one-channel images."""
        if len(rest) == 3:
            return rest
        if len(rest) == 2:
            return (1, *rest)
        if len(rest) == 1:
            side = int(round(rest[0] ** 0.5))
            if side * side == rest[0]:
                return (1, side, side)
        raise ValueError(f"cannot make NCHW batches from samples of shape {rest}; pass flatten=True")

    def shard(self, rank: int, size: int) -> None:
        """From now on hand out part ``rank`` of ``size`` of every batch (:func:`xpnet.dist.shard.span`):
        the epoch's order, batches and state stay the global ones, as in one process."""
        if not 0 <= rank < size:
            raise ValueError(f"rank must be in 0..{size - 1}, got {rank}")
        self.rank, self.ranks = int(rank), int(size)

    @property
    def num_samples(self) -> int:
        return self._n

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self._n, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """The rest of the current epoch, from batch ``step``; ``epoch`` advances when it is used up."""
        xp, dev = self.device.xp, self.device
        nb = len(self)
        order = choices = None
        if self.shuffle:
            # The one host-to-device copy per epoch: N int64 indices, sliced on the device per batch.
            order = dev.asarray(_epoch_permutation(self.seed, self.epoch, self._n))
        if self.augment is not None:  # the epoch's augmentation choices, (N, 3) ints, the same way
            choices = dev.asarray(self.augment.plan(self.seed, self.epoch, self._n))
        while self.step < nb:
            lo = self.step * self.batch_size
            hi = min(lo + self.batch_size, self._n)
            whole = hi - lo
            if self.ranks > 1:
                lo, hi = span(lo, hi, self.rank, self.ranks)
            self.batch_sizes = (hi - lo, whole)
            with dev.context():  # the batch is made on the loader's GPU; the caller's stays current at yield
                if order is None:
                    xb, tb = self.x[lo:hi, ...], self.t[lo:hi, ...]
                else:
                    idx = order[lo:hi]
                    xb, tb = xp.take(self.x, idx, axis=0), xp.take(self.t, idx, axis=0)
                if choices is not None:
                    xb = self._augment(xb, choices[lo:hi, ...])
                batch = self._convert(xb, tb)
            self.step += 1
            yield batch
        self.epoch += 1
        self.step = 0

    def _augment(self, xb: Any, choices: Any) -> Any:
        """The batch as images, augmented on the device (still in its stored dtype)."""
        xp = self.device.xp
        assert self.augment is not None
        images = xp.reshape(xb, (xb.shape[0], *self._image_shape))
        return self.augment.apply(images, choices, self.device)

    def _convert(self, xb: Any, tb: Any) -> tuple[Any, Any]:
        xp = self.device.xp
        xb = xp.astype(xb, self.dtype)
        if self._scale:
            xb = xb / 255.0
        xb = xp.reshape(xb, (xb.shape[0], *self._sample_shape))
        if tb.ndim == 1:
            if self.one_hot:
                tb = xp.astype(tb[:, None] == self._classes[None, :], self.dtype)
        elif self.one_hot:
            tb = xp.astype(tb, self.dtype)
        else:
            tb = xp.argmax(tb, axis=1)
        return xb, tb

    def state_dict(self) -> dict[str, int | str]:
        """Where the loader is, as plain ints (for checkpoints); with augmentation, its spec too."""
        state: dict[str, int | str] = {
            "epoch": self.epoch, "step": self.step, "seed": self.seed, "num_samples": self._n,
            "batch_size": self.batch_size, "shuffle": int(self.shuffle), "drop_last": int(self.drop_last)}
        if self.augment is not None:
            state["augment"] = str(self.augment)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next iteration starts at the saved batch of the saved epoch."""
        for key, mine in (("num_samples", self._n), ("batch_size", self.batch_size),
                          ("shuffle", int(self.shuffle)), ("drop_last", int(self.drop_last))):
            if key in state and int(state[key]) != mine:
                raise ValueError(f"loader state does not fit this loader: {key} is {int(state[key])} in the "
                                 f"state but {mine} here")
        theirs, mine_aug = str(state.get("augment", "")), str(self.augment or "")
        if theirs != mine_aug:
            raise ValueError(f"loader state does not fit this loader: augment is {theirs!r} in the state but "
                             f"{mine_aug!r} here")
        epoch, step = int(state["epoch"]), int(state["step"])
        if epoch < 0 or not 0 <= step <= len(self):
            raise ValueError(f"loader state out of range: epoch {epoch}, step {step} (0..{len(self)})")
        self.epoch, self.step = epoch, step
        if "seed" in state:
            self.seed = int(state["seed"])

    def __repr__(self) -> str:
        aug = f", augment={str(self.augment)!r}" if self.augment is not None else ""
        return (f"DataLoader(n={self._n}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"seed={self.seed}, device={self.device.name}, epoch={self.epoch}, step={self.step}{aug})")


def _host_pair(x: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
    x, t = np.asarray(x), np.asarray(t)
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"x and t must have the same length: x has {x.shape[0]} samples, t has {t.shape[0]}")
    return x, t


def shuffle_dataset(x: Any, t: Any, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The book's helper: ``x`` and ``t`` in one random order (host arrays; seeded if ``seed`` given)."""
    x, t = _host_pair(x, t)
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    return x[perm], t[perm]


def validation_split(x: Any, t: Any, ratio: float = 0.2, seed: int = 0
                     ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out ``int(N * ratio)`` shuffled samples for validation: ``(x_train, t_train), (x_val, t_val)``."""
    x, t = _host_pair(x, t)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be between 0 and 1 (exclusive), got {ratio}")
    n_val = int(x.shape[0] * ratio)
    if not 1 <= n_val < x.shape[0]:
        raise ValueError(f"ratio {ratio} of {x.shape[0]} samples leaves {n_val} for validation and "
                         f"{x.shape[0] - n_val} for training; both need at least one")
    x, t = shuffle_dataset(x, t, seed)
    return (x[n_val:], t[n_val:]), (x[:n_val], t[:n_val])
