"""Data augmentation on the device: random translations, crops and horizontal flips of a training batch.

The random choices of an epoch (a shift and a flip bit per sample, in the order the
samples are drawn) come from ``SeedSequence([seed, epoch, AUGMENT_STREAM])`` on the
host and go to the device once per epoch, next to the shuffling permutation; each
batch slices its rows there. So an augmented run is seeded, resumes mid-epoch exactly
(the batch's choices depend only on seed, epoch and position) and makes the same
images on every device. The images themselves never leave the device: a shift is one
gather (``xp.take``) from a zero-padded copy of the batch, with the flip folded into
the column indices.

``crop:P`` is the CIFAR standard (pad P zero pixels on every side, cut a random window of the
original size back out): a window at offset (i, j) of the padded image is the image moved by
(P − i, P − j), so it is the same gather as ``shift:P``, under the name users know it by. Every
channel of a sample moves alike, so colour images work as grey ones do.

Only a training loader gets an :class:`Augment`; evaluation loaders never do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xpnet.backend import Device

AUGMENT_STREAM = 0xA06  # keeps augmentation draws apart from the shuffling stream of the same seed
DEFAULT_SHIFT = 2


@dataclass(frozen=True)
class Augment:
    """Random translations by up to ``shift`` pixels in x and y (0: none), or random crops of the
    image padded by ``crop`` pixels (the same thing, by its CIFAR name), and, with ``flip``, mirror images."""

    shift: int = 0
    flip: bool = False
    crop: int = 0

    def __post_init__(self) -> None:
        for name, value in (("shift", self.shift), ("crop", self.crop)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.shift and self.crop:
            raise ValueError("give shift:K or crop:P, not both (a crop from a padded image is a shift)")
        if self.shift == 0 and self.crop == 0 and not self.flip:
            raise ValueError("an Augment needs shift > 0, crop > 0 or flip")

    @property
    def pad(self) -> int:
        """The largest move in pixels: ``shift`` or ``crop``, whichever is on."""
        return self.shift or self.crop

    @classmethod
    def parse(cls, spec: str) -> Augment:
        """``shift``, ``shift:3``, ``crop:4``, ``flip``, ``shift:3,flip`` or ``crop:4,flip`` (--augment's syntax)."""
        moves, flip = {"shift": 0, "crop": 0}, False
        parts = [p.strip() for p in spec.split(",")]
        for part in parts:
            name, _, arg = part.partition(":")
            if name in moves and not moves[name]:
                if name == "crop" and not arg:
                    raise ValueError(f"crop:P needs the padding P (e.g. crop:4), got {part!r}")
                try:
                    k = int(arg) if arg else DEFAULT_SHIFT
                except ValueError:
                    k = 0
                if k < 1 or (arg and str(k) != arg.lstrip("+")):
                    raise ValueError(f"{name}:K needs a positive integer K, got {part!r}")
                moves[name] = k
            elif part == "flip" and not flip:
                flip = True
            else:
                raise ValueError(f"expected shift[:K][,flip] or crop:P[,flip] (e.g. shift:2,flip or crop:4,flip), "
                                 f"got {spec!r}")
        return cls(moves["shift"], flip, moves["crop"])

    def __str__(self) -> str:
        parts = [f"shift:{self.shift}"] if self.shift else [f"crop:{self.crop}"] if self.crop else []
        return ",".join([*parts, "flip"] if self.flip else parts)

    def check(self, image_shape: tuple[int, ...]) -> None:
        """Raise ValueError unless images of ``image_shape`` (C, H, W) can take this augmentation."""
        if len(image_shape) != 3:
            raise ValueError(f"augmentation needs images (C, H, W), got samples of shape {image_shape}")
        if self.pad >= min(image_shape[1:]):
            name = "shift" if self.shift else "crop"
            raise ValueError(f"{name} {self.pad} must be smaller than the image ({image_shape[1]}x"
                             f"{image_shape[2]})")

    # --- the random choices: one host array per epoch ---------------------------------------------
    def plan(self, seed: int, epoch: int, n: int) -> np.ndarray:
        """int64 (n, 3): per sample (dy, dx, flip), for the samples of one epoch in the order drawn."""
        gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, AUGMENT_STREAM])))
        out = np.zeros((n, 3), dtype=np.int64)
        if self.pad:
            out[:, :2] = gen.integers(-self.pad, self.pad + 1, size=(n, 2))
        if self.flip:
            out[:, 2] = gen.integers(0, 2, size=n)
        return out

    # --- the work: on the batch's device ------------------------------------------------------------
    def apply(self, x: Any, choices: Any, device: Device) -> Any:
        """``x`` (B, C, H, W) moved by ``choices`` (B, 3) device ints: out[.., i, j] = x[.., i - dy, j' - dx]
        where j' = W - 1 - j for flipped samples; pixels shifted in from outside are 0."""
        xp = device.xp
        b, c, h, w = (int(s) for s in x.shape)
        k = self.pad
        hp, wp = h + 2 * k, w + 2 * k
        if k:
            padded = xp.zeros((b, c, hp, wp), dtype=x.dtype, device=device.native)
            padded[:, :, k:k + h, k:k + w] = x
        else:
            padded = x
        dy, dx, flip = choices[:, 0], choices[:, 1], choices[:, 2]
        i64 = xp.int64
        rows = xp.arange(h, dtype=i64, device=device.native)
        cols = xp.arange(w, dtype=i64, device=device.native)
        src_rows = k - dy[:, None] + rows[None, :]  # (B, H) rows of the padded image
        mirrored = xp.where(flip[:, None] == 1, (w - 1) - cols[None, :], cols[None, :])  # (B, W)
        src_cols = k - dx[:, None] + mirrored
        base = xp.arange(b * c, dtype=i64, device=device.native) * (hp * wp)  # (B·C,) start of each plane
        base = xp.reshape(base, (b, c, 1, 1))
        index = base + (src_rows * wp)[:, None, :, None] + src_cols[:, None, None, :]  # (B, C, H, W)
        flat = xp.take(xp.reshape(padded, (-1,)), xp.reshape(index, (-1,)))
        return xp.reshape(flat, (b, c, h, w))
