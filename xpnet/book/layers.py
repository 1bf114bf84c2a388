"""The book's ``common.layers`` (ch. 5–7): xpnet's layers, with the book's constructors and
``forward``/``backward``; ``from xpnet.book.layers import *`` also brings the book's functions,
``im2col``/``col2im`` and ``np``, as the book's module does.

One difference on purpose: ``Dropout`` is inverted (kept units are scaled by 1/(1 − r) while
training, evaluation is the identity); the book scales by 1 − r at evaluation instead.
"""

from __future__ import annotations

from xpnet.book.functions import (  # np too: the book's `from common.layers import *` brings it
    cross_entropy_error,
    identity_function,
    np,
    relu,
    sigmoid,
    sigmoid_grad,
    softmax,
    step_function,
    sum_squared_error,
)
from xpnet.book.util import col2im, im2col
from xpnet.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Flatten,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
    Tanh,
)

__all__ = ["Relu", "Sigmoid", "Tanh", "Affine", "Flatten", "SoftmaxWithLoss", "Dropout", "BatchNormalization",
           "Convolution", "Pooling", "identity_function", "step_function", "sigmoid", "sigmoid_grad", "relu",
           "softmax", "sum_squared_error", "cross_entropy_error", "im2col", "col2im", "np"]
