"""Learning-rate schedules: the learning rate as a pure function of the global step.

A schedule holds no counters: ``schedule(step)`` depends only on the step number
and its settings, so a resumed run (which restores the step) gets the same
learning rates with nothing extra to save, and a checkpoint only records the
settings (:meth:`Schedule.state_dict`) so a mismatch can be refused. The trainer
sets ``optimizer.lr = schedule(step)`` before every step (per step, not per epoch).

- ``constant``: ``lr`` throughout;
- ``step``: ``lr · gamma^k`` after the k-th epoch milestone (e.g. ``--lr-steps 10,15``);
- ``cosine``: half a cosine from ``lr`` down to 0 over the steps after the warm-up.

All three take a linear warm-up over the first ``warmup_epochs`` epochs:
``lr · (step + 1) / warmup_steps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

NAMES = ("constant", "step", "cosine")


class Schedule:
    """Base: the warm-up; subclasses give ``factor(step)``, the multiplier after it."""

    name = "constant"

    def __init__(self, lr: float, *, steps_per_epoch: int, epochs: int, warmup_epochs: int = 0) -> None:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if steps_per_epoch < 1 or epochs < 1:
            raise ValueError(f"steps_per_epoch and epochs must be >= 1, got {steps_per_epoch} and {epochs}")
        if not 0 <= warmup_epochs < epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}), got {warmup_epochs}")
        self.lr = float(lr)
        self.steps_per_epoch, self.epochs, self.warmup_epochs = int(steps_per_epoch), int(epochs), \
            int(warmup_epochs)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def warmup_steps(self) -> int:
        return self.steps_per_epoch * self.warmup_epochs

    def __call__(self, step: int) -> float:
        """The learning rate for step ``step`` (0-based: the first step of a run is step 0)."""
        w = self.warmup_steps
        warm = (step + 1) / w if step < w else 1.0
        return self.lr * warm * self.factor(step)

    def factor(self, step: int) -> float:
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        """The settings, as plain JSON values (what a checkpoint records)."""
        return {"name": self.name, "lr": self.lr, "steps_per_epoch": self.steps_per_epoch,
                "epochs": self.epochs, "warmup_epochs": self.warmup_epochs}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.state_dict().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """``lr`` at every step (after the warm-up, if any)."""


class StepDecay(Schedule):
    """Multiply by ``gamma`` after each milestone epoch in ``steps`` (strictly increasing, below ``epochs``)."""

    name = "step"

    def __init__(self, lr: float, *, steps_per_epoch: int, epochs: int, steps: Sequence[int],
                 gamma: float = 0.1, warmup_epochs: int = 0) -> None:
        super().__init__(lr, steps_per_epoch=steps_per_epoch, epochs=epochs, warmup_epochs=warmup_epochs)
        steps = tuple(int(s) for s in steps)
        if not steps:
            raise ValueError("a step schedule needs at least one milestone epoch")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)) or steps[0] < 1:
            raise ValueError(f"milestones must be positive and increasing, got {list(steps)}")
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma must be a positive number, got {gamma!r}")
        self.steps, self.gamma = steps, float(gamma)

    def factor(self, step: int) -> float:
        epoch = step // self.steps_per_epoch  # 0-based epoch this step belongs to
        return self.gamma ** sum(1 for m in self.steps if epoch >= m)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps": list(self.steps), "gamma": self.gamma}


class Cosine(Schedule):
    """Half a cosine from ``lr`` to 0 over the steps after the warm-up (Loshchilov & Hutter, SGDR, no restarts)."""

    name = "cosine"

    def factor(self, step: int) -> float:
        span = self.total_steps - self.warmup_steps
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def create(name: str, lr: float, *, steps_per_epoch: int, epochs: int, warmup_epochs: int = 0,
           steps: Sequence[int] | None = None, gamma: float = 0.1) -> Schedule:
    """A schedule by its CLI name (``constant``, ``step``, ``cosine``)."""
    common: dict[str, Any] = {"steps_per_epoch": steps_per_epoch, "epochs": epochs,
                              "warmup_epochs": warmup_epochs}
    if name == "constant":
        return Constant(lr, **common)
    if name == "step":
        return StepDecay(lr, steps=steps or (), gamma=gamma, **common)
    if name == "cosine":
        return Cosine(lr, **common)
    raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(NAMES)}")
