"""The book's optimizers (ch. 6.1): ``update(params, grads)`` changes ``params`` in place.

In place matters: layers hold references to the same arrays, so rebinding
``params[key]`` to a new array would silently detach the layer from the update.
Per-parameter state (velocities, squared-gradient sums) is created lazily on the
parameters' device and round-trips through ``state_dict`` as host arrays.

Each optimizer is its formula, ``step(p, g, *state, **hyper)``, with the scalars of
the step named by ``hyper()``, and declares that formula's name (``formula = "adam"``).
``accel.step`` runs a fused version of the same formula where there is one (a CuPy kernel,
NumPy scratch arrays), keyed by that name, so :mod:`xpnet.accel` (the floor below) never
imports this module; and when ``params`` and ``grads`` are a net's flat buffers
(:mod:`xpnet.accel.flat`) one step updates them all.
"""

from __future__ import annotations

import math
from typing import Any

from xpnet import accel
from xpnet.accel import flat
from xpnet.backend import array_namespace, device_of, scope_of, to_device, to_host

Array = Any


class Optimizer:
    """Base: hyper-parameters, per-parameter state slots, and the state_dict round trip."""

    slots: tuple[str, ...] = ()
    default_lr = 0.01
    # The name fused versions of ``step`` are keyed by (xpnet.accel.kernels, xpnet.accel.host). Only the
    # class defining ``step`` is asked (accel.formula): a subclass with its own step must declare its own.
    formula: str | None = None

    def __init__(self, lr: float | None = None) -> None:
        self.lr = float(self.default_lr if lr is None else lr)
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be > 0, got {lr!r}")
        self.state: dict[str, dict[str, Array]] = {s: {} for s in self.slots}
        self.iter = 0
        self._pending: dict[str, Any] = {}  # "slot/key" -> loaded state not yet placed on a device

    def hyper(self) -> dict[str, float]:
        """The scalars of this step's formula, by the names ``step`` takes them."""
        return {"lr": self.lr}

    def step(self, p: Array, g: Array, *state: Array, **hyper: float) -> None:
        """The update formula: change ``p`` (and the state arrays) in place."""
        raise NotImplementedError

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        with scope_of(next(iter(params.values()), None)):  # CuPy updates on the current GPU: the params'
            self._update(params, grads)

    def _update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        whole = flat.whole_buffers(params, grads)  # a net's flat buffers: every parameter in one step
        if whole is None:  # (flat buffers of one layout have the same names and shapes by construction)
            self._check_grads(params, grads)
        self.iter += 1
        hyper = self.hyper()
        if whole is not None:
            p, g = whole
            accel.step(self, p, g, [self._flat_state(s, params).flat for s in self.slots], hyper)
            return
        for key, p in params.items():
            accel.step(self, p, grads[key], [self._state(s, key, p) for s in self.slots], hyper)

    def _check_grads(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"{type(self).__name__}.update: no gradient for parameter(s) {missing}")
        for key, p in params.items():
            g = grads[key]
            if g.shape != p.shape and tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"gradient for {key!r} has shape {tuple(g.shape)}, "
                                 f"parameter has {tuple(p.shape)}")

    def _flat_state(self, slot: str, params: flat.FlatParams) -> flat.FlatParams:
        """State laid out like ``params`` (``state[slot]`` becomes a FlatParams of views)."""
        if not flat.same_layout(self.state[slot], params):
            self.state[slot] = flat.state_like(params, self.state[slot], self._pending, slot)
        return self.state[slot]

    def _state(self, slot: str, key: str, p: Array) -> Array:
        state = self.state[slot]
        if key not in state:
            saved = self._pending.pop(f"{slot}/{key}", None)
            state[key] = (to_device(saved, device_of(p), dtype=p.dtype) if saved is not None
                          else array_namespace(p).zeros_like(p))
        return state[key]

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

    formula = "sgd"

    def step(self, p: Array, g: Array, *, lr: float) -> None:
        p -= lr * g


class Momentum(Optimizer):
    """v ← αv − lr·g; W ← W + v."""

    formula = "momentum"

    slots = ("v",)

    def __init__(self, lr: float | None = None, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = float(momentum)

    def hyper(self) -> dict[str, float]:
        return {"lr": self.lr, "momentum": self.momentum}

    def step(self, p: Array, g: Array, v: Array, *, lr: float, momentum: float) -> None:
        v *= momentum
        v -= lr * g
        p += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the book's form (http://arxiv.org/abs/1212.0901)."""

    formula = "nesterov"

    def hyper(self) -> dict[str, float]:
        """The step's scalars, each computed once in double: a float32 kernel then rounds each once, as
        NumPy rounds a Python float, instead of forming ``1 + momentum`` in float32."""
        m = self.momentum
        return {"lr": self.lr, "momentum": m, "momentum_sq": m * m, "lr_ahead": (1.0 + m) * self.lr}

    def step(self, p: Array, g: Array, v: Array, *, lr: float, momentum: float, momentum_sq: float,
             lr_ahead: float) -> None:
        v *= momentum
        v -= lr * g
        p += momentum_sq * v
        p -= lr_ahead * g


class AdaGrad(Optimizer):
    """h ← h + g²; W ← W − lr·g/(√h + 1e-7): a per-weight learning rate that decays."""

    formula = "adagrad"

    slots = ("h",)

    def step(self, p: Array, g: Array, h: Array, *, lr: float) -> None:
        h += g * g
        p -= lr * g / (array_namespace(h).sqrt(h) + 1e-7)


class RMSprop(Optimizer):
    """AdaGrad with an exponential moving average, so old gradients are forgotten."""

    formula = "rmsprop"

    slots = ("h",)

    def __init__(self, lr: float | None = None, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = float(decay_rate)

    def hyper(self) -> dict[str, float]:
        """``1 - decay_rate`` computed here, in double (in float32, 1 - 0.999 is 1.3e-5 off, relatively)."""
        return {"lr": self.lr, "decay_rate": self.decay_rate, "one_minus_decay": 1.0 - self.decay_rate}

    def step(self, p: Array, g: Array, h: Array, *, lr: float, decay_rate: float, one_minus_decay: float) -> None:
        h *= decay_rate
        h += one_minus_decay * g * g
        p -= lr * g / (array_namespace(h).sqrt(h) + 1e-7)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2014) with the bias correction folded into the step size, as in the book."""

    formula = "adam"

    slots = ("m", "v")
    default_lr = 0.001

    def __init__(self, lr: float | None = None, beta1: float = 0.9, beta2: float = 0.999) -> None:
        super().__init__(lr)
        self.beta1, self.beta2 = float(beta1), float(beta2)

    def hyper(self) -> dict[str, float]:
        """The step's scalars, computed in double: ``1 - beta2`` in float32 would be 0.0009999871."""
        t = self.iter
        lr_t = self.lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        return {"lr_t": lr_t, "one_minus_beta1": 1.0 - self.beta1, "one_minus_beta2": 1.0 - self.beta2}

    def step(self, p: Array, g: Array, m: Array, v: Array, *, lr_t: float, one_minus_beta1: float,
             one_minus_beta2: float) -> None:
        m += one_minus_beta1 * (g - m)
        v += one_minus_beta2 * (g * g - v)
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
