"""The book's optimizers (ch. 6.1): ``update(params, grads)`` changes ``params`` in place.

In place matters: layers hold references to the same arrays, so rebinding
``params[key]`` to a new array would silently detach the layer from the update.
Per-parameter state (velocities, squared-gradient sums) is created lazily on the
parameters' device and round-trips through ``state_dict`` as host arrays.

Fast paths: when ``params`` and ``grads`` are both flat-backed (a net's
:class:`~xpnet.backend.FlatParams`), the state is flat too and one ``_step`` updates
the whole buffer — the same formula, a few operations instead of a few per
parameter. On CuPy each step is one fused kernel (``backend.fused``).
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

from xpnet.backend import FlatParams, device_of, fused, same_flat_layout, to_device, to_host

Array = Any


class Optimizer:
    """Base: hyper-parameters, per-parameter state slots, and the state_dict round trip."""

    slots: tuple[str, ...] = ()
    default_lr = 0.01
    kernel: str | None = None  # the fused CuPy kernel that computes exactly ``_step`` (backend._CUPY_UPDATES)

    def __init__(self, lr: float | None = None) -> None:
        self.lr = float(self.default_lr if lr is None else lr)
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be > 0, got {lr!r}")
        self.state: dict[str, dict[str, Array]] = {s: {} for s in self.slots}
        self.iter = 0
        self._pending: dict[str, Any] = {}
        self._flat: dict[str, FlatParams] = {}  # slot -> flat state, when params are flat-backed

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"{type(self).__name__}.update: no gradient for parameter(s) {missing}")
        for key, p in params.items():
            g = grads[key]
            if g.shape != p.shape and tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"gradient for {key!r} has shape {tuple(g.shape)}, "
                                 f"parameter has {tuple(p.shape)}")
        self.iter += 1
        if isinstance(params, FlatParams) and isinstance(grads, FlatParams) and same_flat_layout(params, grads):
            # Every parameter at once: the key "*" stands for the whole buffer.
            self._fused_step("*", params.flat, grads.flat, [self._flat_slot(s, params) for s in self.slots])
            return
        for key, p in params.items():
            self._fused_step(key, p, grads[key], [self._slot(s, key, p) for s in self.slots])

    def _fused_step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        """One kernel on CuPy (the formula in backend._CUPY_UPDATES), one scratch array for a few
        optimizers on NumPy (backend._HOST_UPDATES), else the portable ``_step``."""
        # Only the classes below name a kernel; a subclass with its own formula must not inherit one.
        name = type(self).__dict__.get("kernel")
        kernel = fused(name, p) if name else None
        if kernel is None:
            self._step(key, p, g, slots)
        else:
            kernel(g, *self._hyper(), p, *slots)

    def _hyper(self) -> tuple[float, ...]:
        """The scalars the fused kernel takes after g, in its order."""
        return (self.lr,)

    def _flat_slot(self, slot: str, params: FlatParams) -> Array:
        """One flat state buffer laid out like ``params``; ``state[slot][key]`` are views into it."""
        buf = self._flat.get(slot)
        if buf is None or (buf.layout is not params.layout and buf.layout != params.layout):
            buf = FlatParams.like(params)
            for key, view in buf.items():  # carry over state from per-key updates or a loaded state_dict
                old = self.state[slot].get(key)
                if old is None:
                    old = self._pending.pop(f"{slot}/{key}", None)
                if old is not None:
                    view[...] = to_device(old, device_of(view), dtype=view.dtype)
            self.state[slot].update(buf)
            self._flat[slot] = buf
        return buf.flat

    def _slot(self, slot: str, key: str, p: Array) -> Array:
        state = self.state[slot]
        if key not in state:
            saved = self._pending.pop(f"{slot}/{key}", None)
            state[key] = (to_device(saved, device_of(p), dtype=p.dtype) if saved is not None
                          else array_namespace(p).zeros_like(p))
        return state[key]

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": to_host(type(self).__name__), "lr": to_host(self.lr),
                               "iter": to_host(self.iter)}
        for slot, arrays in self.state.items():
            for key, a in arrays.items():
                out[f"{slot}/{key}"] = to_host(a, copy=True)
        out.update(self._pending)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore state saved by :meth:`state_dict` (from any device); it moves on the next update."""
        name = str(state.get("name", type(self).__name__))
        if name != type(self).__name__:
            raise ValueError(f"optimizer state is for {name}, not {type(self).__name__}")
        self.iter = int(state.get("iter", 0))
        self.state = {s: {} for s in self.slots}
        self._flat = {}
        self._pending = {k: v for k, v in state.items() if "/" in k and k.split("/", 1)[0] in self.slots}


class SGD(Optimizer):
    """W ← W − lr·∂L/∂W."""

    kernel = "SGD"

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        p -= self.lr * g


class Momentum(Optimizer):
    """v ← αv − lr·g; W ← W + v."""

    kernel = "Momentum"
    slots = ("v",)

    def __init__(self, lr: float | None = None, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = float(momentum)

    def _hyper(self) -> tuple[float, ...]:
        return (self.lr, self.momentum)

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        (v,) = slots
        v *= self.momentum
        v -= self.lr * g
        p += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the book's form (http://arxiv.org/abs/1212.0901)."""

    kernel = "Nesterov"

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        (v,) = slots
        m = self.momentum
        v *= m
        v -= self.lr * g
        p += (m * m) * v
        p -= ((1.0 + m) * self.lr) * g


class AdaGrad(Optimizer):
    """h ← h + g²; W ← W − lr·g/(√h + 1e-7): a per-weight learning rate that decays."""

    kernel = "AdaGrad"
    slots = ("h",)

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        (h,) = slots
        h += g * g
        p -= self.lr * g / (array_namespace(h).sqrt(h) + 1e-7)


class RMSprop(Optimizer):
    """AdaGrad with an exponential moving average, so old gradients are forgotten."""

    kernel = "RMSprop"
    slots = ("h",)

    def __init__(self, lr: float | None = None, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = float(decay_rate)

    def _hyper(self) -> tuple[float, ...]:
        return (self.lr, self.decay_rate)

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        (h,) = slots
        h *= self.decay_rate
        h += (1.0 - self.decay_rate) * g * g
        p -= self.lr * g / (array_namespace(h).sqrt(h) + 1e-7)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2014) with the bias correction folded into the step size, as in the book."""

    kernel = "Adam"
    slots = ("m", "v")
    default_lr = 0.001

    def __init__(self, lr: float | None = None, beta1: float = 0.9, beta2: float = 0.999) -> None:
        super().__init__(lr)
        self.beta1, self.beta2 = float(beta1), float(beta2)

    def _lr_t(self) -> float:
        t = self.iter
        return self.lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)

    def _hyper(self) -> tuple[float, ...]:
        return (self._lr_t(), self.beta1, self.beta2)

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        m, v = slots
        lr_t = self._lr_t()
        m += (1.0 - self.beta1) * (g - m)
        v += (1.0 - self.beta2) * (g * g - v)
        p -= lr_t * m / (array_namespace(v).sqrt(v) + 1e-7)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "nesterov": Nesterov,
    "adagrad": AdaGrad, "rmsprop": RMSprop, "adam": Adam,
}


def create(name: str, lr: float | None = None, **kwargs: Any) -> Optimizer:
    """An optimizer by its lower-case name; ``lr=None`` takes that optimizer's default."""
    try:
        cls = OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}") from None
    return cls(lr, **kwargs)
