"""The book's ``common.optimizer`` (ch. 6.1): xpnet's optimizers under the book's names.

``SGD(lr=0.01)``, ``Momentum(lr=0.01, momentum=0.9)``, ``Nesterov``, ``AdaGrad``,
``RMSprop(lr=0.01, decay_rate=0.99)``, ``Adam(lr=0.001, beta1=0.9, beta2=0.999)``, each with
``update(params, grads)`` in place on the parameters' device. ``optimizer_class_dict`` holds
them by the lower-case names the book's Trainer takes ('sgd', 'momentum', ..., 'adam').
``from xpnet.book.optimizer import *`` also brings ``np``, as the book's module does (its
ch. 6 optimizer comparison relies on that).
"""

from __future__ import annotations

from typing import Any

from xpnet import optim
from xpnet.book._device import (
    as_array,
    np,  # re-exported: the book's ch. 6 scripts get np from `import *`
)

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "optimizer_class_dict", "np"]


class _BookUpdate:
    """Lets ``params`` hold plain Python numbers, as in the book's ch. 6 path plots (``params['x'] = -7.0``).

    xpnet updates arrays in place; numbers cannot be changed in place, so they go through 0-d
    arrays and come back as floats. The update itself is xpnet's: these classes add no ``step``
    formula, so xpnet's fused versions of the parent's formula still run (``accel.formula``).
    """

    def update(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        numbers = [k for k, v in params.items() if not hasattr(v, "shape")]
        if numbers:
            params_in = {k: as_array(v, dtype="float64") for k, v in params.items()}
            grads_in = {k: as_array(v, dtype="float64") for k, v in grads.items()}
        else:
            params_in, grads_in = params, grads
        super().update(params_in, grads_in)  # type: ignore[misc]
        for k in numbers:
            params[k] = float(params_in[k])


class SGD(_BookUpdate, optim.SGD):
    pass


class Momentum(_BookUpdate, optim.Momentum):
    pass


class Nesterov(_BookUpdate, optim.Nesterov):
    pass


class AdaGrad(_BookUpdate, optim.AdaGrad):
    pass


class RMSprop(_BookUpdate, optim.RMSprop):
    pass


class Adam(_BookUpdate, optim.Adam):
    pass


optimizer_class_dict: dict[str, type[optim.Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad, "rmsprop": RMSprop, "adam": Adam,
}
