"""The book's layers (ch. 5–6) with its contract: ``forward(x)``, ``backward(dout=1)``,
parameter gradients at ``.dW``/``.db`` (``.dgamma``/``.dbeta`` for batch norm).

Layers keep references to their parameter arrays, exactly like the book; an
optimizer that updates ``params[key]`` in place therefore updates the layer.
Every layer works on whichever Array API namespace its input belongs to.
A compute module: it builds on ``functions``, ``layer``, ``conv`` and the floor below (``accel``,
``backend``); nets and the fused blocks (``fusion``) build on it.
"""

from __future__ import annotations

from typing import Any

from xpnet import accel
from xpnet import functions as F
from xpnet.backend import array_namespace, device_of
from xpnet.conv import Convolution, Pooling
from xpnet.layer import Layer

Array = Any


class Relu(Layer):
    """max(x, 0). The mask is kept as 0/1 in x's dtype: a multiply is several times cheaper than
    ``where`` on NumPy, and the backward pass is one operation."""

    def forward(self, x: Array) -> Array:
        fused = accel.kernel("relu", x)  # CuPy: the output and the mask in one kernel
        if fused is not None:
            out, self.mask = fused(x)
            return out
        self.mask = array_namespace(x).astype(x > 0, x.dtype)
        return x * self.mask

    def backward(self, dout: Array) -> Array:
        return dout * self.mask


class Sigmoid(Layer):
    def forward(self, x: Array) -> Array:
        self.out = F.sigmoid(x)
        return self.out

    def backward(self, dout: Array) -> Array:
        fused = accel.kernel("sigmoid_backward", dout)
        if fused is not None:
            return fused(self.out, dout)
        return dout * (1.0 - self.out) * self.out


class Tanh(Layer):
    def forward(self, x: Array) -> Array:
        self.out = array_namespace(x).tanh(x)
        return self.out

    def backward(self, dout: Array) -> Array:
        fused = accel.kernel("tanh_backward", dout)
        if fused is not None:
            return fused(self.out, dout)
        return dout * (1.0 - self.out * self.out)


ACTIVATIONS: dict[str, type[Layer]] = {"relu": Relu, "sigmoid": Sigmoid, "tanh": Tanh}


class Affine(Layer):
    """x · W + b. Accepts N-D input (flattened per sample); ``backward`` restores its shape."""

    params = (("W", "dW"), ("b", "db"))
    weights = ("W",)

    def __init__(self, W: Array, b: Array) -> None:
        self.W, self.b = W, b
        self.dW: Array = None
        self.db: Array = None
        self.need_dx = True  # a net turns this off for its first layer: nobody reads dL/d(input)

    def forward(self, x: Array) -> Array:
        xp = array_namespace(x)
        self.x_shape = tuple(x.shape)
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], -1))
        if x.shape[1] != self.W.shape[0]:
            raise ValueError(f"Affine: input has {x.shape[1]} features per sample "
                             f"(shape {self.x_shape}), but W is {tuple(self.W.shape)}")
        self.x = x
        out = x @ self.W
        out += self.b  # in place on the fresh product: one temporary fewer than x @ W + b
        return out

    def backward(self, dout: Array) -> Array:
        self.dW = accel.matmul(self.x.T, dout, out=self.grad_view("dW"))
        self.db = accel.sum(dout, axis=0, out=self.grad_view("db"))
        if not self.need_dx:
            return None
        dx = dout @ self.W.T
        return dx if len(self.x_shape) == 2 else array_namespace(dout).reshape(dx, self.x_shape)


class Flatten(Layer):
    """(N, C, H, W) → (N, C·H·W); the book does this inside Affine, a named layer reads clearer."""

    def forward(self, x: Array) -> Array:
        self.x_shape = tuple(x.shape)
        return array_namespace(x).reshape(x, (x.shape[0], -1))

    def backward(self, dout: Array) -> Array:
        return array_namespace(dout).reshape(dout, self.x_shape)


class Dropout(Layer):
    """Inverted dropout: keep each unit with probability 1 − r and scale kept units by 1/(1 − r).

    The book scales at evaluation instead (``x * (1 - r)``); scaling while training
    makes evaluation the identity, so a net predicts without knowing r. Masks come
    from a per-device generator (``rng``), seeded by the net.
    """

    has_train_flag = True

    def __init__(self, dropout_ratio: float = 0.5, rng: Any = None) -> None:
        if not 0.0 <= dropout_ratio < 1.0:
            raise ValueError(f"dropout_ratio must be in [0, 1), got {dropout_ratio}")
        self.dropout_ratio = float(dropout_ratio)
        self.rng = rng

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        if not train_flg or self.dropout_ratio == 0.0:
            return x
        xp = array_namespace(x)
        if self.rng is None:
            self.rng = device_of(x).rng(0)
        keep = self.rng.random(tuple(x.shape), x.dtype) >= self.dropout_ratio
        self.mask = xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.dropout_ratio))
        return x * self.mask

    def backward(self, dout: Array) -> Array:
        return dout * self.mask if self.dropout_ratio else dout


class BatchNormalization(Layer):
    """Batch norm (Ioffe & Szegedy 2015; the book's ch. 6.3) over every feature after the batch axis.

    Training normalises with the batch statistics and updates the running ones;
    evaluation uses the running ones. Unlike the book, the running mean/var are
    part of the model's state_dict, so a saved model evaluates the same after loading.
    """

    params = (("gamma", "dgamma"), ("beta", "dbeta"))
    has_train_flag = True
    eps = 1e-7

    def __init__(self, gamma: Array, beta: Array, momentum: float = 0.9,
                 running_mean: Array = None, running_var: Array = None) -> None:
        self.gamma, self.beta, self.momentum = gamma, beta, float(momentum)
        xp = array_namespace(gamma)
        self.running_mean = running_mean if running_mean is not None else xp.zeros_like(gamma)
        self.running_var = running_var if running_var is not None else xp.zeros_like(gamma)
        self.dgamma: Array = None
        self.dbeta: Array = None

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        xp = array_namespace(x)
        self.x_shape = tuple(x.shape)
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], -1))
        if train_flg:
            mu = xp.mean(x, axis=0)
            xc = x - mu
            var = xp.mean(xc * xc, axis=0)
            std = xp.sqrt(var + self.eps)
            xn = xc / std
            self.xc, self.xn, self.std = xc, xn, std
            m = self.momentum
            self.running_mean = m * self.running_mean + (1.0 - m) * mu
            self.running_var = m * self.running_var + (1.0 - m) * var
        else:
            xn = (x - self.running_mean) / xp.sqrt(self.running_var + self.eps)
        return xp.reshape(self.gamma * xn + self.beta, self.x_shape)

    def backward(self, dout: Array) -> Array:
        xp = array_namespace(dout)
        if dout.ndim != 2:
            dout = xp.reshape(dout, (dout.shape[0], -1))
        self.dbeta = accel.sum(dout, axis=0, out=self.grad_view("dbeta"))
        self.dgamma = accel.sum(self.xn * dout, axis=0, out=self.grad_view("dgamma"))
        # d/dx of gamma·(x − μ)/σ, with μ and σ themselves functions of the batch.
        dxn = self.gamma * dout
        dx = (dxn - xp.mean(dxn, axis=0) - self.xn * xp.mean(dxn * self.xn, axis=0)) / self.std
        return xp.reshape(dx, self.x_shape)


class SoftmaxWithLoss(Layer):
    """Softmax + cross-entropy in one layer: stable log-softmax forward, (y − t)/N backward.

    Labels may be class indices (N,) or (N, 1), or one-hot (N, C); the loss is the batch mean.
    Fused: one exp per logit, one log per sample (log Σ e^z), and with index labels
    the one-hot rows are a single comparison whose row count doubles as the range check.
    Reading that count back is a device→host sync on a GPU; ``check_labels = False`` skips it
    where the labels were validated once already (a :class:`~xpnet.data.DataLoader` does that).
    """

    check_labels = True

    def forward(self, x: Array, t: Array) -> Array:
        xp = array_namespace(x)
        n, c = x.shape[0], x.shape[-1]
        z = x - xp.max(x, axis=-1, keepdims=True)
        e = xp.exp(z)
        s = xp.sum(e, axis=-1, keepdims=True)
        e /= s
        self.y = e
        if F.is_index_labels(t) and t.shape == (n,) and x.ndim == 2:
            self.t = F.one_hot_unchecked(t, c, x.dtype)
            if self.check_labels and int(xp.sum(self.t)) != n:  # a label outside [0, c): let one_hot name it
                F.one_hot(t, c, x.dtype)
            self.loss = (xp.sum(xp.log(s)) - xp.sum(self.t * z)) / n
        else:
            self.t = F.as_one_hot(t, x)
            self.loss = -xp.sum(self.t * (z - xp.log(s))) / n
        return self.loss

    def backward(self, dout: Array | float = 1) -> Array:
        dx = self.y - self.t
        dx *= dout / self.y.shape[0]
        return dx


class MeanSquaredErrorLoss(Layer):
    """Identity output + the book's sum-squared error averaged over the batch (for regression)."""

    def forward(self, x: Array, t: Array) -> Array:
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(f"targets shape {tuple(t.shape)} does not match output shape {tuple(x.shape)}")
        self.y, self.t = x, t
        self.loss = F.mean_squared_error(x, t)
        return self.loss

    def backward(self, dout: Array | float = 1) -> Array:
        return (self.y - self.t) * (dout / self.y.shape[0])


# Convolution and Pooling live beside im2col in xpnet.conv; here under the book's module name too.
__all__ = ["Layer", "Relu", "Sigmoid", "Tanh", "Affine", "Flatten", "Dropout", "BatchNormalization",
           "SoftmaxWithLoss", "MeanSquaredErrorLoss", "Convolution", "Pooling", "ACTIVATIONS"]
