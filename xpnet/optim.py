"""The book's optimizers (ch. 6.1): ``update(params, grads)`` changes ``params`` in place.

In place matters: layers hold references to the same arrays, so rebinding
``params[key]`` to a new array would silently detach the layer from the update.
Per-parameter state (velocities, squared-gradient sums) is created lazily on the
parameters' device and round-trips through ``state_dict`` as host arrays.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

from xpnet.backend import device_of, to_device, to_host

Array = Any


class Optimizer:
    """Base: hyper-parameters, per-parameter state slots, and the state_dict round trip."""

    slots: tuple[str, ...] = ()
    default_lr = 0.01

    def __init__(self, lr: float | None = None) -> None:
        self.lr = float(self.default_lr if lr is None else lr)
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be > 0, got {lr!r}")
        self.state: dict[str, dict[str, Array]] = {s: {} for s in self.slots}
        self.iter = 0
        self._pending: dict[str, Any] = {}

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"{type(self).__name__}.update: no gradient for parameter(s) {missing}")
        self.iter += 1
        for key, p in params.items():
            g = grads[key]
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"gradient for {key!r} has shape {tuple(g.shape)}, "
                                 f"parameter has {tuple(p.shape)}")
            self._step(key, p, g, [self._slot(s, key, p) for s in self.slots])

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
        self._pending = {k: v for k, v in state.items() if "/" in k and k.split("/", 1)[0] in self.slots}


class SGD(Optimizer):
    """W ← W − lr·∂L/∂W."""

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        p -= self.lr * g


class Momentum(Optimizer):
    """v ← αv − lr·g; W ← W + v."""

    slots = ("v",)

    def __init__(self, lr: float | None = None, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = float(momentum)

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        (v,) = slots
        v *= self.momentum
        v -= self.lr * g
        p += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the book's form (http://arxiv.org/abs/1212.0901)."""

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        (v,) = slots
        m = self.momentum
        v *= m
        v -= self.lr * g
        p += (m * m) * v
        p -= ((1.0 + m) * self.lr) * g


class AdaGrad(Optimizer):
    """h ← h + g²; W ← W − lr·g/(√h + 1e-7): a per-weight learning rate that decays."""

    slots = ("h",)

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        (h,) = slots
        h += g * g
        p -= self.lr * g / (array_namespace(h).sqrt(h) + 1e-7)


class RMSprop(Optimizer):
    """AdaGrad with an exponential moving average, so old gradients are forgotten."""

    slots = ("h",)

    def __init__(self, lr: float | None = None, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = float(decay_rate)

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        (h,) = slots
        h *= self.decay_rate
        h += (1.0 - self.decay_rate) * g * g
        p -= self.lr * g / (array_namespace(h).sqrt(h) + 1e-7)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2014) with the bias correction folded into the step size, as in the book."""

    slots = ("m", "v")
    default_lr = 0.001

    def __init__(self, lr: float | None = None, beta1: float = 0.9, beta2: float = 0.999) -> None:
        super().__init__(lr)
        self.beta1, self.beta2 = float(beta1), float(beta2)

    def _step(self, key: str, p: Array, g: Array, slots: list[Array]) -> None:
        m, v = slots
        t = self.iter
        lr_t = self.lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
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
