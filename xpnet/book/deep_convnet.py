"""The book's ``deep_convnet`` (ch. 8): six 3×3 convolutions, dropout, He initialisation.

xpnet's :class:`xpnet.nets.DeepConvNet` with the book's doors. ``load_params`` reads what
``save_params`` wrote (npz); the book's pretrained ``deep_convnet_params.pkl`` is a pickle,
which xpnet refuses to load.
"""

from __future__ import annotations

from typing import Any

from xpnet import nets
from xpnet.book._device import np  # re-exported: the book's `import *` of this module brings np
from xpnet.book._net import BookNet, build_kwargs

__all__ = ["DeepConvNet", "np"]

Param = dict[str, int] | None


class DeepConvNet(BookNet, nets.DeepConvNet):
    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28), conv_param_1: Param = None,
                 conv_param_2: Param = None, conv_param_3: Param = None, conv_param_4: Param = None,
                 conv_param_5: Param = None, conv_param_6: Param = None, hidden_size: int = 50,
                 output_size: int = 10, *, seed: int | None = None, device: Any = None,
                 dtype: str | None = None) -> None:
        super().__init__(tuple(input_dim), conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5,
                         conv_param_6, hidden_size, output_size, **build_kwargs(seed, device, dtype))
        self._book_setup()
