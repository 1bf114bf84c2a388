"""Nets built from a list of layers: one small ``Sequential`` core, then the book's nets as short builders.

The core gathers parameters and gradients by the book's names (W1, b1, gamma1, ...),
applies weight decay to EVERY weight matrix, and checks inputs once at the
door so that a layer never sees arrays from the wrong library, device or dtype.
Above the layers and the fused blocks (``fusion``) it composes; ``train`` and the commands build on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from xpnet import fusion, gradcheck, init
from xpnet.accel import flat as flat_buffers
from xpnet.backend import DTYPES, Device, array_namespace, device, host_rng, on_device, to_device, to_host
from xpnet.conv import Convolution, Pooling, out_size
from xpnet.functions import is_index_labels
from xpnet.layers import ACTIVATIONS, Affine, BatchNormalization, Dropout, Flatten, SoftmaxWithLoss

Array = Any


class Sequential:
    """A feed-forward net: ``layers`` in order, then ``last_layer`` (the loss).

    ``params`` maps the book's names to the very arrays the layers use, so
    ``optimizer.update(net.params, grads)`` trains the net in place.

    Two fast paths (:mod:`xpnet.accel.flat`, :mod:`xpnet.fusion`), both on by default and both giving the same numbers:

    - flat buffers (``flat=None``: wherever the device's views share memory): every parameter and
      every gradient is a view into one buffer (``params`` is then a ``FlatParams``), so an optimizer
      updates them all in a few operations. ``gradient`` then returns the same dict of views each
      call, overwritten by the next call. ``flat=False`` keeps one array per parameter, as in the book.
    - fused blocks: ``plan`` is the list of layers actually run, where a first Convolution → Relu →
      max-pool run is one ``ConvReluPool``. ``layers`` stays the book's list; ``net.fuse = False`` runs
      the layers one by one.
    """

    def __init__(self, layers: Sequence[Any], last_layer: Any, *, input_shape: tuple[int, ...],
                 device: Device, dtype: str, weight_decay_lambda: float = 0.0, rng: Any = None,
                 flat: bool | None = None) -> None:
        self.layers = list(layers)
        self.last_layer = last_layer
        self.input_shape = tuple(input_shape)
        self.device, self.dtype = device, dtype
        self.weight_decay_lambda = float(weight_decay_lambda)
        self.rng = rng
        self.last_loss: Array = None
        self.params: dict[str, Array] = {}
        self._slots: list[tuple[str, Any, str, str, bool]] = []  # (name, layer, attr, grad_attr, decayed)
        counts: dict[str, int] = {}
        for layer in self.layers:
            if not getattr(layer, "params", ()):
                continue
            group = "bn" if isinstance(layer, BatchNormalization) else "w"
            counts[group] = counts.get(group, 0) + 1
            for attr, grad_attr in layer.params:
                name = f"{attr}{counts[group]}"
                self.params[name] = getattr(layer, attr)
                self._slots.append((name, layer, attr, grad_attr, attr in getattr(layer, "weights", ())))
        # Nobody reads dL/d(input): the first layer can skip computing it (a large saving for a conv).
        if self.layers and hasattr(self.layers[0], "need_dx"):
            self.layers[0].need_dx = False
        self.fuse = True
        self._flat: flat_buffers.FlatNet | None = None
        if flat is None:
            flat = flat_buffers.views_share_memory(device)
        if flat and self.params and len({p.dtype for p in self.params.values()}) == 1:
            with device.context():  # the buffer and its copies on the net's device, not the current one
                self._flat = flat_buffers.FlatNet(self._slots, device)
            self.params = self._flat.params

    @property
    def fuse(self) -> bool:
        """Whether fused blocks run (``plan`` differs from ``layers``); set False to run the book's layers."""
        return self.plan is not self.layers

    @fuse.setter
    def fuse(self, on: bool) -> None:
        self.plan = fusion.plan(self.layers) if on else self.layers

    # -- the book's API -----------------------------------------------------------------------
    @on_device  # CuPy computes on the current GPU: make it this net's
    def predict(self, x: Array, train_flg: bool = False) -> Array:
        x = self._check_x(x)
        return self._predict(x, train_flg)

    @on_device  # CuPy computes on the current GPU: make it this net's
    def loss(self, x: Array, t: Array, train_flg: bool = False) -> Array:
        """Data loss + weight decay 0.5·λ·Σ‖W‖² over every weight matrix (a 0-d device array)."""
        x, t = self._check_x(x), self._check_t(t, x)
        return self._loss(x, t, train_flg)

    @on_device  # CuPy computes on the current GPU: make it this net's
    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """One forward and one backward pass; the forward's loss is kept in ``self.last_loss``."""
        x, t = self._check_x(x), self._check_t(t, x)
        self.last_loss = self._loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1.0)
        for layer in reversed(self.plan):
            dout = layer.backward(dout)
        lam = self.weight_decay_lambda
        if self._flat is not None:  # the layers wrote into the flat buffer; decay is one slice
            return self._flat.gradients(lam)
        grads = {}
        for name, layer, attr, grad_attr, decayed in self._slots:
            g = getattr(layer, grad_attr)
            grads[name] = g + lam * getattr(layer, attr) if decayed and lam else g
        return grads

    @on_device  # CuPy computes on the current GPU: make it this net's
    def accuracy(self, x: Array, t: Array, batch_size: int = 100) -> float:
        """Fraction of samples whose arg-max prediction matches the label (indices or one-hot)."""
        x = self._check_x(x)
        xp = self.device.xp
        t = self._check_t(t, x)
        labels = t if t.ndim == 1 else xp.argmax(t, axis=1)  # one-hot, of any dtype, as in the book
        correct = xp.zeros((), dtype=xp.int64, device=self.device.native)
        n = x.shape[0]
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)  # out-of-bounds slice stops are not in the Array API
            y = self._predict(x[i:j, ...], False)
            hits = xp.argmax(y, axis=1) == xp.astype(labels[i:j], xp.int64)
            correct = correct + xp.sum(xp.astype(hits, xp.int64))
        return int(correct) / n if n else float("nan")

    @on_device  # CuPy computes on the current GPU: make it this net's
    def numerical_gradient(self, x: Array, t: Array, h: float = 1e-4) -> dict[str, Array]:
        """The slow, obviously-right gradient (ch. 4): central differences on every parameter."""
        x, t = self._check_x(x), self._check_t(t, x)

        def f(_: Array) -> Array:
            return self._loss(x, t, train_flg=True)

        return {k: gradcheck.numerical_gradient(f, p, h) for k, p in self.params.items()}

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this net's behaviour, as host arrays (any device can load it)."""
        state = {k: to_host(v, copy=True) for k, v in self.params.items()}
        for i, layer in enumerate(self._batchnorms(), start=1):
            state[f"running_mean{i}"] = to_host(layer.running_mean, copy=True)
            state[f"running_var{i}"] = to_host(layer.running_var, copy=True)
        if self.rng is not None:
            state.update({k: to_host(v) for k, v in self.rng.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = set(self.state_dict())
        missing, extra = expected - set(state), set(state) - expected
        if missing or extra:
            raise ValueError(f"state does not fit this net: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for key, p in self.params.items():
            value = to_device(state[key], self.device, dtype=p.dtype)
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"state {key!r} has shape {tuple(value.shape)}, the net's is {tuple(p.shape)}")
            p[...] = value  # in place: layers and optimizers hold references to p
        for i, layer in enumerate(self._batchnorms(), start=1):
            layer.running_mean = to_device(state[f"running_mean{i}"], self.device, dtype=layer.gamma.dtype)
            layer.running_var = to_device(state[f"running_var{i}"], self.device, dtype=layer.gamma.dtype)
        if self.rng is not None:
            self.rng.load_state_dict({k: str(to_host(state[k])) for k in self.rng.state_dict()})

    # -- internals -----------------------------------------------------------------------------
    def _batchnorms(self) -> list[BatchNormalization]:
        return [layer for layer in self.layers if isinstance(layer, BatchNormalization)]

    def _predict(self, x: Array, train_flg: bool) -> Array:
        for layer in self.plan:
            x = layer.forward(x, train_flg) if layer.has_train_flag else layer.forward(x)
        return x

    def _loss(self, x: Array, t: Array, train_flg: bool) -> Array:
        loss = self.last_layer.forward(self._predict(x, train_flg), t)
        if self.weight_decay_lambda:
            xp = self.device.xp
            if self._flat is not None:
                decay = self._flat.sum_of_squared_weights(xp)
            else:
                decay = sum(xp.sum(getattr(layer, attr) ** 2)
                            for _, layer, attr, _, decayed in self._slots if decayed)
            loss = loss + 0.5 * self.weight_decay_lambda * decay
        return loss

    def _check_device(self, a: Array, what: str) -> None:
        try:
            xp = array_namespace(a)
        except TypeError:
            raise TypeError(f"{what} must be an array, got {type(a).__name__}") from None
        if xp is not self.device.xp:
            raise TypeError(f"{what} is a {xp.__name__} array but the net lives on {self.device.name}; "
                            f"move it first with xpnet.to_device({what}, net.device)")
        if a.device != self.device.native:
            raise ValueError(f"{what} is on device {a.device} but the net's parameters are on "
                             f"{self.device.name}; move it with xpnet.to_device({what}, net.device)")

    def _check_x(self, x: Array) -> Array:
        self._check_device(x, "x")
        xp = self.device.xp
        if not xp.isdtype(x.dtype, "real floating"):
            raise TypeError(f"x has dtype {x.dtype}; the net needs floating-point input "
                            f"(normalise images, e.g. x / 255, or use DataLoader)")
        want = self.input_shape
        fits = (tuple(x.shape[1:]) == want if len(want) > 1
                else x.ndim >= 2 and math.prod(x.shape[1:]) == want[0])
        if not fits:
            raise ValueError(f"x has shape {tuple(x.shape)}; this net expects (N, {', '.join(map(str, want))})")
        dtype = self.device.dtype(self.dtype)
        return x if x.dtype == dtype else xp.astype(x, dtype)

    def _check_t(self, t: Array, x: Array) -> Array:
        self._check_device(t, "t")
        n = x.shape[0]
        if t.shape[0] != n:
            raise ValueError(f"t has {t.shape[0]} labels for {n} samples (x shape {tuple(x.shape)})")
        if t.ndim == 2 and t.shape[1] == 1 and is_index_labels(t):  # the book's column of indices (ch. 7)
            return self.device.xp.reshape(t, (n,))
        return t


# -- builders: the book's nets ------------------------------------------------------------------

def _setup(dev: Device | str | None, seed: int | None, dtype: str) -> tuple[Device, Any]:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return device("auto" if dev is None else dev), host_rng(seed)


def _affine(rng: Any, n_in: int, n_out: int, std: float | str, dev: Device, dtype: str) -> Affine:
    W = init.normal(rng, (n_in, n_out), init.init_scale(std, n_in), dev, dtype)
    return Affine(W, init.zeros(n_out, dev, dtype))


def _conv(rng: Any, c_in: int, p: dict[str, int], std: float | str, dev: Device, dtype: str) -> Convolution:
    fn, fs = int(p["filter_num"]), int(p["filter_size"])
    W = init.normal(rng, (fn, c_in, fs, fs), init.init_scale(std, c_in * fs * fs), dev, dtype)
    return Convolution(W, init.zeros(fn, dev, dtype), stride=int(p.get("stride", 1)), pad=int(p.get("pad", 0)))


class TwoLayerNet(Sequential):
    """The book's ch. 4–5 net: Affine → ReLU → Affine → SoftmaxWithLoss, params W1, b1, W2, b2."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float | str = 0.01, *, device: Device | str | None = None,
                 seed: int | None = 0, dtype: str = "float32", flat: bool | None = None) -> None:
        dev, rng = _setup(device, seed, dtype)
        layers = [_affine(rng, input_size, hidden_size, weight_init_std, dev, dtype),
                  ACTIVATIONS["relu"](),
                  _affine(rng, hidden_size, output_size, weight_init_std, dev, dtype)]
        super().__init__(layers, SoftmaxWithLoss(), input_shape=(input_size,), device=dev, dtype=dtype, flat=flat)


class MultiLayerNet(Sequential):
    """The book's fully connected net of any depth (ch. 6), with optional batch norm and dropout.

    Each hidden block is Affine → [BatchNorm] → activation → [Dropout]; the last is Affine.
    """

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: float | str = "relu",
                 weight_decay_lambda: float = 0.0, use_dropout: bool = False, dropout_ratio: float = 0.5,
                 use_batchnorm: bool = False, *, device: Device | str | None = None,
                 seed: int | None = 0, dtype: str = "float32", flat: bool | None = None) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
        dev, rng = _setup(device, seed, dtype)
        drop_rng = dev.rng(seed) if use_dropout else None
        sizes = [input_size, *hidden_size_list]
        layers: list[Any] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers.append(_affine(rng, n_in, n_out, weight_init_std, dev, dtype))
            if use_batchnorm:
                layers.append(BatchNormalization(init.ones(n_out, dev, dtype), init.zeros(n_out, dev, dtype)))
            layers.append(ACTIVATIONS[activation]())
            if use_dropout:
                layers.append(Dropout(dropout_ratio, rng=drop_rng))
        layers.append(_affine(rng, sizes[-1], output_size, weight_init_std, dev, dtype))
        self.hidden_size_list = list(hidden_size_list)
        super().__init__(layers, SoftmaxWithLoss(), input_shape=(input_size,), device=dev, dtype=dtype,
                         weight_decay_lambda=weight_decay_lambda, rng=drop_rng, flat=flat)


class SimpleConvNet(Sequential):
    """The book's ch. 7 net: Conv → ReLU → Pool(2×2, stride 2) → Affine → ReLU → Affine."""

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28),
                 conv_param: dict[str, int] | None = None, hidden_size: int = 100, output_size: int = 10,
                 weight_init_std: float | str = 0.01, *, weight_decay_lambda: float = 0.0,
                 device: Device | str | None = None, seed: int | None = 0, dtype: str = "float32",
                 flat: bool | None = None) -> None:
        conv_param = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1, **(conv_param or {})}
        dev, rng = _setup(device, seed, dtype)
        c, h, w = input_dim
        conv = _conv(rng, c, conv_param, weight_init_std, dev, dtype)
        fs, pad, stride = conv_param["filter_size"], conv_param["pad"], conv_param["stride"]
        oh, ow = out_size(h, fs, stride, pad), out_size(w, fs, stride, pad)
        pool_out = conv_param["filter_num"] * (oh // 2) * (ow // 2)
        layers = [conv, ACTIVATIONS["relu"](), Pooling(2, 2, stride=2), Flatten(),
                  _affine(rng, pool_out, hidden_size, weight_init_std, dev, dtype), ACTIVATIONS["relu"](),
                  _affine(rng, hidden_size, output_size, weight_init_std, dev, dtype)]
        super().__init__(layers, SoftmaxWithLoss(), input_shape=tuple(input_dim), device=dev, dtype=dtype,
                         weight_decay_lambda=weight_decay_lambda, flat=flat)


_DEEP_DEFAULTS = (
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
)


class DeepConvNet(Sequential):
    """The book's ch. 8 net (99.38% on MNIST): six 3×3 convs with ReLU, a 2×2 pool after every
    second one, then Affine → ReLU → Dropout → Affine → Dropout; He initialisation throughout.
    """

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28),
                 conv_param_1: dict[str, int] | None = None, conv_param_2: dict[str, int] | None = None,
                 conv_param_3: dict[str, int] | None = None, conv_param_4: dict[str, int] | None = None,
                 conv_param_5: dict[str, int] | None = None, conv_param_6: dict[str, int] | None = None,
                 hidden_size: int = 50, output_size: int = 10, *, dropout_ratio: float = 0.5,
                 weight_decay_lambda: float = 0.0, device: Device | str | None = None,
                 seed: int | None = 0, dtype: str = "float32", flat: bool | None = None) -> None:
        given = (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6)
        convs = [{**d, **(p or {})} for d, p in zip(_DEEP_DEFAULTS, given, strict=True)]
        dev, rng = _setup(device, seed, dtype)
        drop_rng = dev.rng(seed)
        c, h, w = input_dim
        layers: list[Any] = []
        for i, p in enumerate(convs):
            layers += [_conv(rng, c, p, "he", dev, dtype), ACTIVATIONS["relu"]()]
            c = p["filter_num"]
            h = out_size(h, p["filter_size"], p["stride"], p["pad"])
            w = out_size(w, p["filter_size"], p["stride"], p["pad"])
            if i % 2 == 1:
                layers.append(Pooling(2, 2, stride=2))
                h, w = out_size(h, 2, 2, 0), out_size(w, 2, 2, 0)
        layers += [Flatten(), _affine(rng, c * h * w, hidden_size, "he", dev, dtype), ACTIVATIONS["relu"](),
                   Dropout(dropout_ratio, rng=drop_rng),
                   _affine(rng, hidden_size, output_size, "he", dev, dtype), Dropout(dropout_ratio, rng=drop_rng)]
        super().__init__(layers, SoftmaxWithLoss(), input_shape=tuple(input_dim), device=dev, dtype=dtype,
                         weight_decay_lambda=weight_decay_lambda, rng=drop_rng, flat=flat)
