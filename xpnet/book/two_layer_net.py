"""The book's ``two_layer_net`` (ch. 4–5): ``TwoLayerNet(input_size, hidden_size, output_size)``.

xpnet's :class:`xpnet.nets.TwoLayerNet` (Affine → ReLU → Affine → SoftmaxWithLoss, the ch. 5
version) with the book's doors; ch. 4's scripts use the same contract (params, loss,
accuracy, gradient, numerical_gradient).
"""

from __future__ import annotations

from typing import Any

from xpnet import nets
from xpnet.book._device import np  # re-exported: the book's `import *` of this module brings np
from xpnet.book._net import BookNet, build_kwargs

__all__ = ["TwoLayerNet", "np"]


class TwoLayerNet(BookNet, nets.TwoLayerNet):
    """``layers['Affine1']``, ``layers['Relu1']``, ``layers['Affine2']``; ``lastLayer`` as in ch. 5."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, weight_init_std: float = 0.01,
                 *, seed: int | None = None, device: Any = None, dtype: str | None = None) -> None:
        super().__init__(input_size, hidden_size, output_size, weight_init_std,
                         **build_kwargs(seed, device, dtype))
        self._book_setup()

    @property
    def lastLayer(self) -> Any:  # noqa: N802 - the book's spelling
        return self.last_layer
