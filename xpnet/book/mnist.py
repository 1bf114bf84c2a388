"""The book's ``dataset.mnist``: ``load_mnist(normalize=True, flatten=True, one_hot_label=False)``.

The files come from :mod:`xpnet.data` (``$XPNET_DATA_DIR``, the user cache, a verified download,
or the bundled sample with a warning), never from a pickle. Shapes and dtypes are the book's:
images (N, 784) or (N, 1, 28, 28), float32 in [0, 1] when ``normalize`` else uint8; labels uint8
class indices, or (N, 10) one-hot when ``one_hot_label`` (float32 here, float64 in the book).

The arrays live on the facade's device (``xpnet.book.use`` / ``$XPNET_DEVICE``), and the book's
``x_train[np.random.choice(...)]`` keeps them there (see :func:`xpnet.book._device.to_book`).
"""

from __future__ import annotations

import os
from typing import Any

from xpnet import data
from xpnet.book._device import current_device, to_book

__all__ = ["load_mnist", "img_dim", "img_size"]

img_dim = (1, 28, 28)
img_size = 784


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False, *,
               dataset: str = "mnist", data_dir: str | os.PathLike[str] | None = None
               ) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """``(x_train, t_train), (x_test, t_test)`` on the facade's device. ``dataset="fashion-mnist"``
    loads Fashion-MNIST the same way; ``data_dir`` overrides ``$XPNET_DATA_DIR``."""
    (x_train, t_train), (x_test, t_test) = data.load_mnist(normalize=normalize, flatten=flatten,
                                                           one_hot_label=one_hot_label, dataset=dataset,
                                                           data_dir=data_dir)
    dev = current_device()
    return (to_book(x_train, dev), to_book(t_train, dev)), (to_book(x_test, dev), to_book(t_test, dev))
