"""The book's ``common.trainer.Trainer``, driving xpnet's own training loop.

Same constructor, same ``train()``, same printed lines and lists as the book's. Underneath,
:class:`xpnet.train.Trainer` runs the steps (one forward + backward, one update): the book's
sampling feeds it (``np.random.choice`` with replacement, ``train_size / mini_batch_size``
batches per epoch) and a callback prints and records. The accuracies are taken at the end of
each epoch (the book's first one follows the first step).

``network`` is any object with the book's contract: ``params``, ``gradient(x, t)``, ``loss(x, t)``,
``accuracy(x, t)``. xpnet's own nets (``xpnet.book``'s, :mod:`xpnet.nets`) take the fast path: a
step's loss is the one its own forward pass computed, before the update. A net of the learner's
own (the notebooks' inline SimpleConvNet, ch. 8's DeepConvNet) is trained through the contract
alone, the book's way: the step's loss is ``network.loss`` after the update, and its NumPy arrays
and the data move once to the facade's device first (:mod:`xpnet.book._own_net`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from xpnet import train
from xpnet.book._device import current_device, is_host, take_rows, to_book
from xpnet.book._own_net import OwnNet, missing_contract, place
from xpnet.book.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, optimizer_class_dict
from xpnet.nets import Sequential

__all__ = ["Trainer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "np"]


class _RandomBatches:
    """The book's mini-batches: ``steps`` draws of ``np.random.choice(train_size, batch_size)`` per epoch."""

    def __init__(self, x: Any, t: Any, batch_size: int, steps: int) -> None:
        self.x, self.t, self.batch_size, self.steps = x, t, batch_size, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        n = int(self.x.shape[0])
        for _ in range(self.steps):
            batch_mask = np.random.choice(n, self.batch_size)
            yield take_rows(self.x, batch_mask), take_rows(self.t, batch_mask)

    def state_dict(self) -> dict[str, int]:
        return {}


class _BookLog(train.Callback):
    """Fills the book's lists and prints the book's lines."""

    def __init__(self, book: Trainer) -> None:
        self.book = book

    def on_log(self, trainer: train.Trainer, losses: list[float]) -> None:
        b = self.book
        b.train_loss_list.extend(losses)
        b.current_iter += len(losses)
        if b.verbose:
            for loss in losses:
                print("train loss:" + str(loss))

    def on_epoch_end(self, trainer: train.Trainer, record: dict[str, Any]) -> None:
        b = self.book
        b.current_epoch = int(record["epoch"])
        train_acc, test_acc = b._evaluate(b.x_train, b.t_train), b._evaluate(b.x_test, b.t_test)
        b.train_acc_list.append(train_acc)
        b.test_acc_list.append(test_acc)
        if b.verbose:
            print("=== epoch:" + str(b.current_epoch) + ", train acc:" + str(train_acc)
                  + ", test acc:" + str(test_acc) + " ===")


class Trainer:
    """Train ``network`` on ``(x_train, t_train)`` for ``epochs`` epochs, the book's way.

    ``optimizer``: 'SGD', 'Momentum', 'Nesterov', 'AdaGrad', 'RMSprop' or 'Adam' (any case), built
    with ``optimizer_param``. ``evaluate_sample_num_per_epoch``: the per-epoch accuracies use only the
    first that many train and test samples (the final test accuracy uses all of them).
    """

    def __init__(self, network: Any, x_train: Any, t_train: Any, x_test: Any, t_test: Any, epochs: int = 20,
                 mini_batch_size: int = 100, optimizer: str = "SGD", optimizer_param: dict[str, Any] | None = None,
                 evaluate_sample_num_per_epoch: int | None = None, verbose: bool = True) -> None:
        self._learners_net = not isinstance(network, Sequential)
        if self._learners_net:  # a net of the learner's own: the book's contract is all it has
            missing = missing_contract(network)
            if missing:
                raise TypeError(f"Trainer: network must have the book's net contract (params, gradient(x, t), "
                                f"loss(x, t), accuracy(x, t)); {type(network).__name__} lacks {', '.join(missing)}")
            dev = self._device = current_device()
            place(network, dev)
            x_train, t_train, x_test, t_test = (_onto(a, dev) for a in (x_train, t_train, x_test, t_test))
        try:
            cls = optimizer_class_dict[str(optimizer).lower()]
        except KeyError:
            raise ValueError(f"Trainer: unknown optimizer {optimizer!r}; choose from "
                             f"{', '.join(optimizer_class_dict)}") from None
        self.network = network
        self.verbose = verbose
        self.x_train, self.t_train, self.x_test, self.t_test = x_train, t_train, x_test, t_test
        self.epochs = int(epochs)
        self.batch_size = int(mini_batch_size)
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.optimizer = cls(**({"lr": 0.01} if optimizer_param is None else optimizer_param))
        self.train_size = int(x_train.shape[0])
        self.iter_per_epoch = max(self.train_size / self.batch_size, 1)
        self.max_iter = int(self.epochs * max(1, round(self.iter_per_epoch)))
        self.current_iter = 0
        self.current_epoch = 0
        self.train_loss_list: list[float] = []
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []

    def _evaluate(self, x: Any, t: Any) -> float:
        k = self.evaluate_sample_num_per_epoch
        if k is not None:
            x, t = x[:k], t[:k]
        return self._accuracy(x, t)

    def _accuracy(self, x: Any, t: Any) -> float:
        if self._learners_net:
            return float(self.network.accuracy(x, t))  # the book's call: the net's own batching
        # Images one batch of 100 at a time, as the book's conv nets do; flat inputs 1000 at a time.
        batch = 100 if len(getattr(self.network, "input_shape", ())) > 1 else 1000
        return float(self.network.accuracy(x, t, batch_size=batch))

    def train(self) -> None:
        steps = max(1, round(self.iter_per_epoch))
        batches = _RandomBatches(self.x_train, self.t_train, self.batch_size, steps)
        net = OwnNet(self.network, self._device) if self._learners_net else self.network
        loop = train.Trainer(net, self.optimizer, batches, epochs=self.epochs,
                             callbacks=[_BookLog(self)], log_every=1 if self.verbose else 50)
        result = loop.fit()
        if result.status == "interrupted":
            raise KeyboardInterrupt
        if result.status == "diverged":
            warnings.warn(f"Trainer: training stopped: {result.reason}", RuntimeWarning, stacklevel=2)
        test_acc = self._accuracy(self.x_test, self.t_test)
        self.final_test_acc = test_acc
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))
            sys.stdout.flush()


def _onto(a: Any, dev: Any) -> Any:
    """Host data (NumPy arrays) on the device a learner's own net was placed on; device data as it is."""
    return to_book(a, dev) if is_host(a) and not dev.is_host else a
