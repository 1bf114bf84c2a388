"""The book's module names over xpnet: run *Deep Learning from Scratch*'s scripts on xpnet, and on a GPU.

One find-and-replace in a script's imports is all it takes:

- ``from common.``   → ``from xpnet.book.``   (functions, layers, gradient, util, optimizer,
  multi_layer_net, multi_layer_net_extend, trainer)
- ``from dataset.mnist`` → ``from xpnet.book.mnist``
- ``from two_layer_net`` / ``from simple_convnet`` / ``from deep_convnet`` → ``from xpnet.book.<same>``

Every class and function here delegates to xpnet's core (layers, nets, optimizers, the
training loop, the data loader); nothing is implemented twice. Where arrays live is one
switch: ``XPNET_DEVICE=cuda python script.py`` or ``xpnet.book.use("cuda")`` before the
script loads data or builds nets (default: the CPU, float64 nets as in the book).
"""

from xpnet.book._device import current_device, current_dtype, reset, use

__all__ = ["use", "reset", "current_device", "current_dtype"]
