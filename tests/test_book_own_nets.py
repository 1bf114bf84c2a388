"""Nets a learner writes: the book's notebooks build them cell by cell from ``common.layers`` and hand them
to ``common.trainer.Trainer``; ours are written the same way from ``xpnet.book.layers``, on every backend.

Also the label forms the book's losses take ((N,), (N, 1), one-hot (N, K)) at every level: the functions,
the loss layer, the nets and the DataLoader.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

import xpnet.book
from xpnet import functions as F
from xpnet import nets, to_device, to_host
from xpnet.backend import Device, array_namespace
from xpnet.book._device import to_book
from xpnet.book._own_net import place
from xpnet.book.gradient import numerical_gradient
from xpnet.book.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss
from xpnet.data import DataLoader, SampleDataWarning
from xpnet.layers import SoftmaxWithLoss as CoreSoftmaxWithLoss


class SimpleConvNet:
    """ch07.ipynb's own SimpleConvNet, as the notebook writes it (its pickle files left out)."""

    def __init__(self, input_dim=(1, 28, 28), conv_param=None, hidden_size=100, output_size=10,
                 weight_init_std=0.01):
        conv_param = conv_param or {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
        filter_num, filter_size = conv_param["filter_num"], conv_param["filter_size"]
        filter_pad, filter_stride = conv_param["pad"], conv_param["stride"]
        input_size = input_dim[1]
        conv_output_size = (input_size - filter_size + 2 * filter_pad) / filter_stride + 1
        pool_output_size = int(filter_num * (conv_output_size / 2) * (conv_output_size / 2))

        self.params = {}
        self.params["W1"] = weight_init_std * np.random.randn(filter_num, input_dim[0], filter_size, filter_size)
        self.params["b1"] = np.zeros(filter_num)
        self.params["W2"] = weight_init_std * np.random.randn(pool_output_size, hidden_size)
        self.params["b2"] = np.zeros(hidden_size)
        self.params["W3"] = weight_init_std * np.random.randn(hidden_size, output_size)
        self.params["b3"] = np.zeros(output_size)

        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(self.params["W1"], self.params["b1"], conv_param["stride"],
                                           conv_param["pad"])
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        y = self.predict(x)
        return self.last_layer.forward(y, t)

    def accuracy(self, x, t, batch_size=100):
        # The notebook's np.argmax / np.sum run on NumPy and on CuPy (which takes NumPy's function protocol);
        # the strict stand-in accelerator refuses them, so this one asks the array for its namespace.
        xp = array_namespace(x)
        if t.ndim != 1:
            t = xp.argmax(t, axis=1)
        acc = 0.0
        for i in range(int(x.shape[0] / batch_size)):
            tx = x[i * batch_size:(i + 1) * batch_size]
            tt = t[i * batch_size:(i + 1) * batch_size]
            y = xp.argmax(self.predict(tx), axis=1)
            acc += float(xp.sum(xp.astype(y == xp.astype(tt, xp.int64), xp.int64)))
        return acc / x.shape[0]

    def numerical_gradient(self, x, t):
        loss_w = lambda w: self.loss(x, t)  # noqa: E731 - the notebook's spelling
        grads = {}
        for idx in (1, 2, 3):
            grads["W" + str(idx)] = numerical_gradient(loss_w, self.params["W" + str(idx)])
            grads["b" + str(idx)] = numerical_gradient(loss_w, self.params["b" + str(idx)])
        return grads

    def gradient(self, x, t):
        self.loss(x, t)
        dout = 1
        dout = self.last_layer.backward(dout)
        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)
        grads = {}
        grads["W1"], grads["b1"] = self.layers["Conv1"].dW, self.layers["Conv1"].db
        grads["W2"], grads["b2"] = self.layers["Affine1"].dW, self.layers["Affine1"].db
        grads["W3"], grads["b3"] = self.layers["Affine2"].dW, self.layers["Affine2"].db
        return grads


class TwoLayerNet:
    """ch05.ipynb's TwoLayerNet, that writes down every call the Trainer makes and the weights it saw."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        self.params = {"W1": weight_init_std * np.random.randn(input_size, hidden_size), "b1": np.zeros(hidden_size),
                       "W2": weight_init_std * np.random.randn(hidden_size, output_size), "b2": np.zeros(output_size)}
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()
        self.calls: list[tuple[str, np.ndarray, float | None]] = []

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        value = self.lastLayer.forward(self.predict(x), t)
        self.calls.append(("loss", to_host(self.params["W2"], copy=True), float(value)))
        return value

    def accuracy(self, x, t):
        xp = array_namespace(x)
        y = xp.argmax(self.predict(x), axis=1)
        return float(xp.sum(xp.astype(y == xp.astype(t, xp.int64), xp.int64))) / x.shape[0]

    def gradient(self, x, t):
        self.calls.append(("gradient", to_host(self.params["W2"], copy=True), None))
        self.lastLayer.forward(self.predict(x), t)
        dout = self.lastLayer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {"W1": self.layers["Affine1"].dW, "b1": self.layers["Affine1"].db,
                "W2": self.layers["Affine2"].dW, "b2": self.layers["Affine2"].db}


def load(**kwargs: Any) -> Any:
    from xpnet.book.mnist import load_mnist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SampleDataWarning)
        return load_mnist(**kwargs)


def on_device(a: Any, dev: Device) -> bool:
    return isinstance(a, np.ndarray) if dev.is_host else (not isinstance(a, np.ndarray) and a.device == dev.native)


# -- the Trainer and a net of one's own ----------------------------------------------------------------

def test_an_inline_convnet_learns_through_the_books_trainer(book: Device) -> None:
    from xpnet.book.trainer import Trainer

    (x_train, t_train), (x_test, t_test) = load(flatten=False)
    np.random.seed(0)
    conv_param = {"filter_num": 8, "filter_size": 5, "pad": 0, "stride": 1}
    network = SimpleConvNet(input_dim=(1, 28, 28), conv_param=conv_param, hidden_size=20, output_size=10)
    trainer = Trainer(network, x_train[:400], t_train[:400], x_test[:100], t_test[:100], epochs=3, mini_batch_size=50,
                      optimizer="Adam", optimizer_param={"lr": 0.005}, evaluate_sample_num_per_epoch=100, verbose=False)
    # The net's NumPy arrays moved to the device once, each layer still holding the very array in params.
    assert all(on_device(p, book) for p in network.params.values())
    assert network.layers["Conv1"].W is network.params["W1"] and network.layers["Affine2"].b is network.params["b3"]
    trainer.train()
    losses = trainer.train_loss_list
    assert len(losses) == 3 * 8 and all(type(v) is float for v in losses)
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6]), losses
    assert len(trainer.test_acc_list) == 3 and trainer.test_acc_list[-1] > 0.4, trainer.test_acc_list  # chance: 0.1
    assert trainer.final_test_acc == network.accuracy(x_test[:100], t_test[:100])  # the net's own call, as the book
    assert network.layers["Conv1"].W is network.params["W1"]  # trained in place


def test_a_learners_net_records_the_books_post_update_loss(book: Device) -> None:
    from xpnet.book.trainer import Trainer

    (x_train, t_train), (x_test, t_test) = load()
    np.random.seed(1)
    network = TwoLayerNet(784, 20, 10, weight_init_std=0.1)
    x_host, t_host = to_host(x_train[:150]), to_host(t_train[:150])  # NumPy data, as a script may make: it moves too
    trainer = Trainer(network, x_host, t_host, x_test[:50], t_test[:50], epochs=1, mini_batch_size=50,
                      optimizer="sgd", optimizer_param={"lr": 0.5}, verbose=False)
    trainer.train()
    steps = [c for c in network.calls if c[0] in ("gradient", "loss")][:6]
    assert [c[0] for c in steps] == ["gradient", "loss"] * 3
    for (_, w_before, _), (_, w_seen, _) in zip(steps[::2], steps[1::2], strict=True):
        assert not np.array_equal(w_before, w_seen)  # the loss ran after the update, as in the book's Trainer
    assert trainer.train_loss_list == [c[2] for c in steps[1::2]]


def test_xpnets_own_nets_record_the_loss_of_their_forward_before_the_update(book: Device) -> None:
    from xpnet.book.multi_layer_net import MultiLayerNet
    from xpnet.book.trainer import Trainer

    (x_train, t_train), (x_test, t_test) = load()
    x, t = x_train[:100], t_train[:100]
    net, twin = MultiLayerNet(784, [20], 10, seed=3), MultiLayerNet(784, [20], 10, seed=3)
    np.random.seed(5)
    mask = np.random.choice(100, 50)  # the Trainer's first draw, replayed
    before = twin.loss(x[mask], t[mask])
    np.random.seed(5)
    trainer = Trainer(net, x, t, x_test[:50], t_test[:50], epochs=1, mini_batch_size=50, optimizer="sgd",
                      optimizer_param={"lr": 0.5}, verbose=False)
    trainer.train()
    assert trainer.train_loss_list[0] == pytest.approx(before, rel=1e-12)
    twin.gradient(x[mask], t[mask])
    from xpnet.book.optimizer import SGD

    SGD(lr=0.5).update(twin.params, twin.gradient(x[mask], t[mask]))
    assert twin.loss(x[mask], t[mask]) < before - 1e-3  # the post-update loss differs: the first one was recorded


def test_the_trainer_names_what_a_net_lacks_or_what_cannot_move(book: Device) -> None:
    from xpnet.book.trainer import Trainer

    (x_train, t_train), _ = load()
    np.random.seed(0)
    no_accuracy = TwoLayerNet(784, 5, 10)
    no_accuracy.accuracy = None
    with pytest.raises(TypeError, match=r"book's net contract .*; TwoLayerNet lacks accuracy$"):
        Trainer(no_accuracy, x_train[:100], t_train[:100], x_train[:100], t_train[:100])
    net = TwoLayerNet(784, 5, 10)
    net.params["b2"] = [0.0] * 10
    with pytest.raises(TypeError, match=r"^Trainer: network.params\['b2'\] is a list, not an array on the facade's "
                                        rf"device {book.name}$"):
        Trainer(net, x_train[:100], t_train[:100], x_train[:100], t_train[:100])


def test_an_inline_convnets_gradient_check_with_the_books_column_labels(book: Device) -> None:
    # ch07.ipynb's check, smaller, with weights large enough that no ReLU input sits within h of its kink.
    np.random.seed(2)
    network = SimpleConvNet(input_dim=(1, 6, 6), conv_param={"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1},
                            hidden_size=4, output_size=3, weight_init_std=0.3)
    place(network, book)  # what the Trainer does first: the net's arrays on the facade's device
    assert all(on_device(p, book) for p in network.params.values())
    assert network.layers["Affine1"].W is network.params["W2"]
    X = to_device(np.random.rand(36).reshape((1, 1, 6, 6)), book)
    T = to_device(np.array([1]).reshape((1, 1)), book)
    grad_num = network.numerical_gradient(X, T)
    grad = network.gradient(X, T)
    diffs = {k: float(np.abs(to_host(grad_num[k]) - to_host(grad[k])).mean()) for k in grad_num}
    assert set(diffs) == {"W1", "b1", "W2", "b2", "W3", "b3"} and all(d < 1e-8 for d in diffs.values()), diffs
    assert float(np.abs(to_host(grad["W3"])).max()) > 1e-3  # a real gradient, not zeros matched to zeros
    X3 = to_book(np.random.rand(3 * 36).reshape((3, 1, 6, 6)), book)  # sliced by the book's accuracy, as load_mnist's
    column = np.array([[2], [0], [1]])
    losses = [float(network.loss(X3, to_device(t, book))) for t in
              (column, column.ravel(), np.eye(3)[column.ravel()], np.eye(3, dtype=np.int64)[column.ravel()])]
    assert losses == pytest.approx([losses[0]] * 4, rel=1e-12)
    assert network.accuracy(X3, to_device(column.ravel(), book), batch_size=3) == network.accuracy(
        X3, to_device(np.eye(3)[column.ravel()], book), batch_size=3)


def test_on_the_host_nothing_moves(fresh_cpu: None) -> None:
    np.random.seed(0)
    network = SimpleConvNet(input_dim=(1, 6, 6), conv_param={"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1},
                            hidden_size=3, output_size=2)
    w1 = network.params["W1"]
    place(network, xpnet.book.current_device())
    assert network.params["W1"] is w1 and network.layers["Conv1"].W is w1


@pytest.fixture
def fresh_cpu() -> Any:
    xpnet.book.use("cpu")
    yield
    xpnet.book.reset()


# -- the book's label forms, at every level ----------------------------------------------------------

LABELS = np.array([2, 0, 1, 2])


def label_forms(dev: Device) -> dict[str, Any]:
    """The same four labels as index (N,), the book's column (N, 1), float one-hot and integer one-hot."""
    return {"index": to_device(LABELS, dev), "column": to_device(LABELS.reshape(4, 1), dev),
            "one-hot": to_device(np.eye(3)[LABELS], dev),
            "int one-hot": to_device(np.eye(3, dtype=np.int64)[LABELS], dev)}


def test_the_loss_layer_and_functions_take_every_label_form(dev: Device) -> None:
    logits = to_device(np.random.default_rng(0).standard_normal((4, 3)), dev)
    forms = label_forms(dev)
    layer = CoreSoftmaxWithLoss()
    ref_loss = float(layer.forward(logits, forms["index"]))
    ref_dx = to_host(layer.backward(1.0))
    y = F.softmax(logits)
    for name, t in forms.items():
        assert float(layer.forward(logits, t)) == pytest.approx(ref_loss, rel=1e-12), name
        np.testing.assert_allclose(to_host(layer.backward(1.0)), ref_dx, rtol=1e-12, err_msg=name)
        assert float(F.cross_entropy_error(y, t)) == pytest.approx(ref_loss, rel=1e-6), name
    from xpnet.book.functions import cross_entropy_error

    assert float(cross_entropy_error(y, forms["column"])) == pytest.approx(ref_loss, rel=1e-6)
    one = F.softmax(logits[0, ...])  # a single sample (C,), with its label as a number, a column or one-hot
    for t in (to_device(np.array(2), dev), to_device(np.array([[2]]), dev), to_device(np.array([0, 0, 1]), dev)):
        assert float(F.cross_entropy_error(one, t)) == pytest.approx(-np.log(to_host(one)[2] + 1e-7))


def test_other_label_shapes_are_one_line_errors_naming_the_shape(dev: Device) -> None:
    logits = to_device(np.zeros((4, 3)), dev)
    layer = CoreSoftmaxWithLoss()
    bad_index = (r"^labels shape \(4, 2\) does not match batch of 4 "
                 r"\(expected \(4,\) or \(4, 1\), or one-hot \(4, 3\)\)$")
    with pytest.raises(ValueError, match=bad_index):
        layer.forward(logits, to_device(np.zeros((4, 2), np.int64), dev))
    with pytest.raises(ValueError, match=r"^labels shape \(5, 1\) does not match batch of 4"):
        F.cross_entropy_error(F.softmax(logits), to_device(np.zeros((5, 1), np.int64), dev))
    with pytest.raises(ValueError, match=r"^one-hot labels shape \(4, 1\) does not match output shape \(4, 3\)$"):
        layer.forward(logits, to_device(np.zeros((4, 1)), dev))  # floats in a column: not indices
    out_of_range = r"^labels out of range: expected class indices in \[0, 3\), got min 0 and max 7$"
    with pytest.raises(ValueError, match=out_of_range):
        layer.forward(logits, to_device(np.array([[0], [7], [1], [2]]), dev))  # the column is range-checked too


def test_nets_take_every_label_form_in_loss_and_accuracy(dev: Device) -> None:
    net = nets.TwoLayerNet(3, 5, 3, weight_init_std=1.0, device=dev, dtype="float64", seed=4)
    x = to_device(np.random.default_rng(1).standard_normal((4, 3)), dev)
    forms = label_forms(dev)
    losses = {k: float(net.loss(x, t)) for k, t in forms.items()}
    accs = {k: net.accuracy(x, t) for k, t in forms.items()}
    assert losses == pytest.approx({k: losses["index"] for k in forms}, rel=1e-12)
    assert accs == {k: accs["index"] for k in forms}, accs
    assert 0.0 < accs["index"] < 1.0  # some right, some wrong: a broadcast (4, 4) comparison would not give this
    grads = net.gradient(x, forms["column"])
    assert tuple(grads["W1"].shape) == (3, 5)


def test_the_data_loader_reads_a_column_of_labels_as_indices(dev: Device) -> None:
    x = np.zeros((4, 2), np.float32)
    loader = DataLoader(x, LABELS.reshape(4, 1), batch_size=2, shuffle=False, device=dev, num_classes=3)
    assert [to_host(t).tolist() for _, t in loader] == [[2, 0], [1, 2]]
    with pytest.raises(ValueError, match=r"^labels must be in 0..2, found 0..7$"):
        DataLoader(x, np.array([[0], [7], [1], [2]]), batch_size=2, device=dev, num_classes=3)
