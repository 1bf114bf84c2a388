"""The book's ``common.multi_layer_net_extend`` (ch. 6): MultiLayerNet with dropout and batch norm.

xpnet's :class:`xpnet.nets.MultiLayerNet` again (one implementation); the book's argument
names, ``dropout_ration`` included, are mapped onto it. Dropout is inverted (kept units
scaled by 1/(1 − r) while training) and batch norm's running statistics are saved by
``save_params``; see docs/book.md ("What differs from the book").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xpnet import nets
from xpnet.book._device import np  # re-exported: the book's `import *` of this module brings np
from xpnet.book._net import BookNet, build_kwargs
from xpnet.book.multi_layer_net import _book_attributes

__all__ = ["MultiLayerNetExtend", "np"]


class MultiLayerNetExtend(BookNet, nets.MultiLayerNet):
    """Affine → [BatchNorm] → activation → [Dropout] per hidden layer, then Affine → SoftmaxWithLoss."""

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: float | str = "relu", weight_decay_lambda: float = 0,
                 use_dropout: bool = False, dropout_ration: float = 0.5, use_batchnorm: bool = False,
                 *, seed: int | None = None, device: Any = None, dtype: str | None = None) -> None:
        super().__init__(input_size, list(hidden_size_list), output_size, activation, weight_init_std,
                         weight_decay_lambda, use_dropout=use_dropout, dropout_ratio=dropout_ration,
                         use_batchnorm=use_batchnorm, **build_kwargs(seed, device, dtype))
        _book_attributes(self, input_size, output_size)
        self.use_dropout, self.use_batchnorm = bool(use_dropout), bool(use_batchnorm)
        self._book_setup("Activation_function")
