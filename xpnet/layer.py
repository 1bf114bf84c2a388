"""The contract every layer follows (the book's ch. 5): ``forward(x)``, ``backward(dout)``, gradients
as attributes. Its own module so that ``layers`` and ``conv`` both build on it without importing
each other."""

from __future__ import annotations

from typing import Any

Array = Any


class Layer:
    """Base of every layer: ``forward(x)``, ``backward(dout)``, and what a net needs to know.

    ``params`` lists (parameter attribute, gradient attribute) pairs and ``weights`` the ones
    weight decay applies to. ``grad_out``: a net may hand a layer arrays to write its gradients
    into, by gradient attribute ("dW", ...) — views into the net's one flat gradient buffer
    (:mod:`xpnet.accel.flat`). Without them a layer allocates its gradients, as in the book.
    """

    params: tuple[tuple[str, str], ...] = ()
    weights: tuple[str, ...] = ()
    has_train_flag = False
    grad_out: dict[str, Array] | None = None

    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def backward(self, dout: Array) -> Array:
        raise NotImplementedError

    def grad_view(self, grad_attr: str) -> Array:
        """The array the net wants gradient ``grad_attr`` written into, or None (allocate it)."""
        return None if self.grad_out is None else self.grad_out.get(grad_attr)
