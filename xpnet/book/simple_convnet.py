"""The book's ``simple_convnet`` (ch. 7): Conv → ReLU → Pool → Affine → ReLU → Affine.

xpnet's :class:`xpnet.nets.SimpleConvNet` with the book's doors (its layer list has a
``Flatten1`` between the pooling and the first Affine, which the book's Affine does inside).
"""

from __future__ import annotations

from typing import Any

from xpnet import nets
from xpnet.book._device import np  # re-exported: the book's `import *` of this module brings np
from xpnet.book._net import BookNet, build_kwargs

__all__ = ["SimpleConvNet", "np"]


class SimpleConvNet(BookNet, nets.SimpleConvNet):
    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28), conv_param: dict[str, int] | None = None,
                 hidden_size: int = 100, output_size: int = 10, weight_init_std: float | str = 0.01,
                 *, seed: int | None = None, device: Any = None, dtype: str | None = None) -> None:
        super().__init__(tuple(input_dim), conv_param, hidden_size, output_size, weight_init_std,
                         **build_kwargs(seed, device, dtype))
        self._book_setup()
