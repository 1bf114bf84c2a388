"""The book's ``common.multi_layer_net`` (ch. 6): a fully connected net of any depth.

xpnet's :class:`xpnet.nets.MultiLayerNet` with the book's doors and attribute names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xpnet import nets
from xpnet.book._device import np  # re-exported: the book's `import *` of this module brings np
from xpnet.book._net import BookNet, build_kwargs

__all__ = ["MultiLayerNet", "np"]


class MultiLayerNet(BookNet, nets.MultiLayerNet):
    """Affine → activation per hidden layer, then Affine → SoftmaxWithLoss; weight decay on every W.

    ``weight_init_std``: a number, 'relu'/'he' or 'sigmoid'/'xavier', as in the book.
    """

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: float | str = "relu", weight_decay_lambda: float = 0,
                 *, seed: int | None = None, device: Any = None, dtype: str | None = None) -> None:
        super().__init__(input_size, list(hidden_size_list), output_size, activation, weight_init_std,
                         weight_decay_lambda, **build_kwargs(seed, device, dtype))
        _book_attributes(self, input_size, output_size)
        self._book_setup("Activation_function")


def _book_attributes(net: Any, input_size: int, output_size: int) -> None:
    net.input_size, net.output_size = input_size, output_size
    net.hidden_layer_num = len(net.hidden_size_list)
