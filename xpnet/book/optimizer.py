"""The book's ``common.optimizer`` (ch. 6.1): xpnet's optimizers under the book's names.

``SGD(lr=0.01)``, ``Momentum(lr=0.01, momentum=0.9)``, ``Nesterov``, ``AdaGrad``,
``RMSprop(lr=0.01, decay_rate=0.99)``, ``Adam(lr=0.001, beta1=0.9, beta2=0.999)``, each with
``update(params, grads)`` in place on the parameters' device. ``optimizer_class_dict`` holds
them by the lower-case names the book's Trainer takes ('sgd', 'momentum', ..., 'adam').
``from xpnet.book.optimizer import *`` also brings ``np``, as the book's module does (its
ch. 6 optimizer comparison relies on that).
"""

from __future__ import annotations

import numpy as np

from xpnet.optim import OPTIMIZERS, SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "optimizer_class_dict", "np"]

optimizer_class_dict = dict(OPTIMIZERS)
