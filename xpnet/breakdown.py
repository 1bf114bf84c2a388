"""Where one training step's time goes: each layer's forward and backward, the loss, the update.

A step is ``optimizer.update(net.params, net.gradient(x, t))``. To split it, the methods of this
net's layers and of the optimizer are shadowed, on the instances only, by clocks that also wait
for the device after each call, so a GPU's queued work is charged to the part that queued it;
the clocks are removed afterwards. A clock costs well under a microsecond, but on a GPU the waits
stop work from overlapping: the clocked step is slower than the bare one, and both are reported.
What no part claims (input checks, the loop, the gradient buffer) is reported as the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Array = Any
_NONE = object()  # "the instance had no attribute of its own by this name"


@dataclass(frozen=True)
class Breakdown:
    """Seconds per step: the bare step, the clocked step, and each part of the clocked one, in data order."""

    bare_s: float
    clocked_s: float
    parts: list[tuple[str, float]]

    @property
    def rest_s(self) -> float:
        return self.clocked_s - sum(s for _, s in self.parts)

    def rows(self) -> list[tuple[str, float]]:
        """The parts and then the rest: together they add up to the clocked step."""
        return [*self.parts, ("rest of the step (checks, loop, gradient buffer)", self.rest_s)]


def parts_of(net: Any, optimizer: Any) -> list[tuple[Any, str, str]]:
    """(object, method, name) for every clocked part, in the order a step runs them."""
    counts: dict[str, int] = {}
    named = []
    for layer in net.plan:
        kind = type(layer).__name__
        counts[kind] = counts.get(kind, 0) + 1
        named.append((layer, f"{kind} {counts[kind]}"))
    loss = type(net.last_layer).__name__
    return ([(layer, "forward", f"{name} forward") for layer, name in named]
            + [(net.last_layer, "forward", f"{loss} forward"), (net.last_layer, "backward", f"{loss} backward")]
            + [(layer, "backward", f"{name} backward") for layer, name in reversed(named)]
            + [(optimizer, "update", f"{type(optimizer).__name__}.update")])


@contextmanager
def clocked(parts: list[tuple[Any, str, str]], sync: Callable[[], None]) -> Iterator[dict[str, float]]:
    """Total seconds spent in each part while the block runs (keys: the parts' names)."""
    spent = {name: 0.0 for _, _, name in parts}
    shadowed = [(obj, method, obj.__dict__.get(method, _NONE)) for obj, method, _ in parts]
    for obj, method, name in parts:
        obj.__dict__[method] = _clock(getattr(obj, method), name, spent, sync)
    try:
        yield spent
    finally:  # put back exactly what was there: nothing, or an instance's own attribute
        for obj, method, before in reversed(shadowed):
            if before is _NONE:
                obj.__dict__.pop(method, None)
            else:
                obj.__dict__[method] = before


def _clock(fn: Callable[..., Any], name: str, spent: dict[str, float], sync: Callable[[], None]
           ) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync()
        spent[name] += time.perf_counter() - t0
        return out
    return call


def step_breakdown(net: Any, optimizer: Any, batches: Sequence[tuple[Array, Array]], steps: int,
                   sync: Callable[[], None] = lambda: None, warm_up: int = 20) -> Breakdown:
    """Time ``steps`` bare steps, then ``steps`` clocked ones, cycling through device-resident ``batches``."""
    if steps < 1 or not batches:
        raise ValueError(f"step_breakdown needs steps >= 1 and at least one batch, got {steps} and {len(batches)}")

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            x, t = batches[i % len(batches)]
            optimizer.update(net.params, net.gradient(x, t))
        sync()
        return (time.perf_counter() - t0) / max(n, 1)

    run(warm_up)
    bare = run(steps)
    parts = parts_of(net, optimizer)
    with clocked(parts, sync) as spent:
        run(warm_up)
        for name in spent:
            spent[name] = 0.0
        total = run(steps)
    return Breakdown(bare, total, [(name, spent[name] / steps) for _, _, name in parts])
