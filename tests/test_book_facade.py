"""xpnet.book's contracts, one by one: the book's shapes, types, names and files, on every backend."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet.book
from xpnet import to_host
from xpnet.backend import CudaFallbackWarning, Device, DeviceError, cuda_status
from xpnet.data import SampleDataWarning


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    xpnet.book.reset()
    yield
    xpnet.book.reset()


def load(**kwargs: Any) -> Any:
    from xpnet.book.mnist import load_mnist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SampleDataWarning)
        return load_mnist(**kwargs)


def on_device(a: Any, dev: Device) -> bool:
    return isinstance(a, np.ndarray) if dev.is_host else (not isinstance(a, np.ndarray) and a.device == dev.native)


# -- load_mnist --------------------------------------------------------------------------------------

def test_load_mnist_has_the_books_defaults_shapes_and_dtypes(book: Device) -> None:
    (x_train, t_train), (x_test, t_test) = load()
    n, m = x_train.shape[0], x_test.shape[0]
    assert (x_train.shape, t_train.shape, x_test.shape, t_test.shape) == ((n, 784), (n,), (m, 784), (m,))
    assert n >= 8000 and m >= 2000  # MNIST (60000/10000) or the bundled sample (8000/2000)
    xp = book.xp
    assert x_train.dtype == xp.float32 and t_train.dtype == xp.uint8
    host = to_host(x_train[:100])
    assert host.min() >= 0.0 and host.max() <= 1.0 and host.max() > 0.9
    assert all(on_device(a, book) for a in (x_train, t_train, x_test, t_test))
    (x4, t1h), _ = load(normalize=False, flatten=False, one_hot_label=True)
    assert x4.shape == (n, 1, 28, 28) and x4.dtype == xp.uint8
    assert t1h.shape == (n, 10) and to_host(t1h[:50]).sum() == 50.0
    np.testing.assert_array_equal(np.argmax(to_host(t1h[:50]), axis=1), to_host(t_train[:50]))


def test_the_books_indexing_keeps_data_on_the_device(book: Device) -> None:
    (x_train, t_train), _ = load()
    batch_mask = np.random.default_rng(0).choice(x_train.shape[0], 100)  # a NumPy index array
    xb, tb = x_train[batch_mask], t_train[batch_mask]
    assert xb.shape == (100, 784) and tb.shape == (100,) and on_device(xb, book) and on_device(tb, book)
    np.testing.assert_array_equal(to_host(tb), to_host(t_train)[batch_mask])
    small = x_train[:300]
    assert small.shape == (300, 784) and small[:1000].shape == (300, 784)  # past the end clips, as in NumPy
    assert small[np.array([0, 5])].shape == (2, 784) and small[[1, 2, 3], :].shape == (3, 784)
    assert small[7].shape == (784,) and on_device(small[batch_mask[:10] % 300], book)
    np.testing.assert_array_equal(to_host(small[3]), to_host(x_train)[3])
    from xpnet.book.util import shuffle_dataset

    np.random.seed(3)
    xs, ts = shuffle_dataset(small, t_train[:300])
    assert on_device(xs, book) and on_device(xs[[0, 1]], book)
    np.random.seed(3)
    perm = np.random.permutation(300)  # the book's order: NumPy's global generator
    np.testing.assert_array_equal(to_host(ts), to_host(t_train)[:300][perm])


# -- the device switch ------------------------------------------------------------------------------

def test_xpnet_device_picks_the_facades_device(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_DEVICE", "cpu")
    assert xpnet.book.current_device().backend == "numpy"
    xpnet.book.reset()
    monkeypatch.setenv("XPNET_DEVICE", "gpu")
    with pytest.raises(DeviceError, match="XPNET_DEVICE=gpu: unknown device 'gpu'"):
        xpnet.book.current_device()
    monkeypatch.setenv("XPNET_DTYPE", "float16")
    with pytest.raises(DeviceError, match=r"xpnet.book.use\('tpu'\): unknown device"):
        xpnet.book.use("tpu")
    with pytest.raises(ValueError, match="XPNET_DTYPE='float16'"):
        xpnet.book.current_dtype()
    monkeypatch.delenv("XPNET_DEVICE")
    monkeypatch.delenv("XPNET_DTYPE")
    assert xpnet.book.current_device().backend == "numpy" and xpnet.book.current_dtype() == "float64"


def test_xpnet_device_cuda_without_a_gpu_warns_once_and_uses_the_cpu(fresh: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ok, reason, _ = cuda_status()
    if ok:
        pytest.skip("a CUDA device is visible: no fallback to test")
    monkeypatch.setenv("XPNET_DEVICE", "cuda")
    with pytest.warns(CudaFallbackWarning, match=r"XPNET_DEVICE=cuda: CUDA is unusable") as caught:
        assert xpnet.book.current_device().backend == "numpy"
        assert xpnet.book.current_device().backend == "numpy"  # resolved once: no second warning
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    with pytest.warns(CudaFallbackWarning, match=r"xpnet.book.use\('cuda'\): CUDA is unusable"):
        assert xpnet.book.use("cuda").backend == "numpy"


def test_use_moves_what_is_built_afterwards(fresh: None, strict_dev: Device) -> None:
    from xpnet.book.multi_layer_net import MultiLayerNet

    before = MultiLayerNet(4, [3], 2)
    xpnet.book.use(strict_dev, dtype="float32")
    after = MultiLayerNet(4, [3], 2)
    assert before.device.backend == "numpy" and before.dtype == "float64"
    assert after.device == strict_dev and after.dtype == "float32"
    assert MultiLayerNet(4, [3], 2, device="cpu", dtype="float64").device.backend == "numpy"


# -- nets: the book's doors ---------------------------------------------------------------------------

def test_nets_take_host_arrays_and_give_python_floats(book: Device) -> None:
    from xpnet.book.two_layer_net import TwoLayerNet

    np.random.seed(0)
    net = TwoLayerNet(input_size=6, hidden_size=5, output_size=3)
    x, t = np.random.rand(4, 6), np.array([0, 2, 1, 2])  # NumPy, as the book's scripts make them
    loss, acc = net.loss(x, t), net.accuracy(x, t)
    assert type(loss) is float and type(acc) is float and loss > 0 and 0.0 <= acc <= 1.0
    y = net.predict(x)
    assert y.shape == (4, 3) and on_device(y, book)
    assert net.layers.keys() == ["Affine1", "Relu1", "Affine2"] and net.lastLayer is net.last_layer
    assert net.layers["Affine1"].W is net.params["W1"] and list(net.layers)[1] is net.layers["Relu1"]
    grads = net.gradient(x, t)
    assert set(grads) == {"W1", "b1", "W2", "b2"} and on_device(grads["W1"], book)
    T = np.array([[1], [0], [2], [2]])  # labels as a column, like ch. 7's gradient check
    assert net.loss(x, T) == pytest.approx(net.loss(x, T.ravel()))


def test_gradient_returns_the_same_dict_each_call_its_arrays_overwritten(book: Device) -> None:
    from xpnet.book.two_layer_net import TwoLayerNet

    net, twin = TwoLayerNet(6, 5, 3, seed=1), TwoLayerNet(6, 5, 3, seed=1)
    rng = np.random.default_rng(0)
    x1, x2, t = rng.random((4, 6)), rng.random((4, 6)), np.array([0, 2, 1, 2])
    first = net.gradient(x1, t)
    kept = {k: to_host(v, copy=True) for k, v in first.items()}
    second = net.gradient(x2, t)
    assert second is first  # the README's promise: the same dict, and the same arrays in it
    expected = twin.gradient(x2, t)
    for k in kept:
        np.testing.assert_array_equal(to_host(first[k]), to_host(expected[k]), err_msg=k)  # now x2's gradient
    assert not np.array_equal(kept["W1"], to_host(first["W1"]))  # x1's is gone: copy to keep it


def test_layers_answer_items_and_simple_convnet_has_a_flatten1(book: Device) -> None:
    from xpnet.book.simple_convnet import SimpleConvNet
    from xpnet.layers import Flatten

    net = SimpleConvNet(input_dim=(1, 8, 8), conv_param={"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1},
                        hidden_size=4, output_size=3)
    items = list(net.layers.items())
    assert [name for name, _ in items] == ["Conv1", "Relu1", "Pool1", "Flatten1", "Affine1", "Relu2", "Affine2"]
    assert [layer for _, layer in items] == list(net.layers) == net.layers.values()
    assert isinstance(net.layers["Flatten1"], Flatten) and net.layers["Affine1"].W is net.params["W2"]
    assert net.layers["Conv1"].W is net.params["W1"]


def test_weights_follow_numpys_global_seed(book: Device) -> None:
    from xpnet.book.multi_layer_net import MultiLayerNet

    np.random.seed(5)
    a, b = MultiLayerNet(5, [4], 3), MultiLayerNet(5, [4], 3)
    np.random.seed(5)
    c = MultiLayerNet(5, [4], 3)
    W = [to_host(n.params["W1"]) for n in (a, b, c)]
    assert not np.array_equal(W[0], W[1]) and np.array_equal(W[0], W[2])


def test_multi_layer_net_extend_names_and_the_books_arguments(book: Device) -> None:
    from xpnet.book.multi_layer_net_extend import MultiLayerNetExtend

    net = MultiLayerNetExtend(input_size=8, hidden_size_list=[6, 5], output_size=3, use_dropout=True,
                              dropout_ration=0.3, use_batchnorm=True, weight_decay_lambda=0.1)
    assert net.layers.keys() == ["Affine1", "BatchNorm1", "Activation_function1", "Dropout1", "Affine2",
                                 "BatchNorm2", "Activation_function2", "Dropout2", "Affine3"]
    assert net.layers["Dropout2"].dropout_ratio == 0.3 and net.hidden_layer_num == 2
    assert set(net.params) == {"W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"}
    assert net.use_dropout and net.use_batchnorm and net.weight_decay_lambda == 0.1


def test_save_params_writes_npz_under_any_name_and_load_params_restores(book: Device) -> None:
    from xpnet.book.multi_layer_net_extend import MultiLayerNetExtend
    from xpnet.book.optimizer import SGD

    np.random.seed(1)
    net = MultiLayerNetExtend(10, [8], 3, use_batchnorm=True)
    x, t = np.random.rand(20, 10), np.random.randint(0, 3, 20)
    opt = SGD(lr=0.1)
    for _ in range(5):
        opt.update(net.params, net.gradient(x, t))
    net.save_params("params.pkl")
    assert zipfile.is_zipfile("params.pkl")
    with np.load("params.pkl", allow_pickle=False) as f:
        assert {"W1", "gamma1", "running_mean1", "running_var1"} <= set(f.files)
    other = MultiLayerNetExtend(10, [8], 3, use_batchnorm=True)
    other.load_params("params.pkl")
    np.testing.assert_array_equal(to_host(other.predict(x)), to_host(net.predict(x)))  # BN statistics too
    with pytest.raises(ValueError, match=r"params.pkl: state 'W1' has shape \(10, 8\)"):
        MultiLayerNetExtend(10, [7], 3, use_batchnorm=True).load_params("params.pkl")


class _Trap:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_load_params_never_unpickles(book: Device, tmp_path: Path) -> None:
    from xpnet.book.simple_convnet import SimpleConvNet

    marker = tmp_path / "unpickled"
    with open("deep_convnet_params.pkl", "wb") as f:
        pickle.dump({"W1": _Trap(marker)}, f)
    net = SimpleConvNet(input_dim=(1, 8, 8), conv_param={"filter_num": 2, "filter_size": 3}, hidden_size=4)
    with pytest.raises(ValueError, match="deep_convnet_params.pkl: not a parameter file .* never loads pickles"):
        net.load_params("deep_convnet_params.pkl")
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        net.load_params("missing.pkl")


# -- optimizers and the Trainer --------------------------------------------------------------------

def test_optimizers_by_the_books_names_and_with_number_params() -> None:
    from xpnet.book import optimizer

    assert set(optimizer.optimizer_class_dict) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    assert optimizer.optimizer_class_dict["adam"] is optimizer.Adam and optimizer.np is np
    params = {"x": -7.0, "y": 2.0}  # ch. 6's path plots keep Python numbers
    opt = optimizer.SGD(lr=0.95)
    opt.update(params, {"x": params["x"] / 10.0, "y": 2.0 * params["y"]})
    assert params == {"x": pytest.approx(-7.0 + 0.95 * 0.7), "y": pytest.approx(2.0 - 0.95 * 4.0)}
    assert type(params["x"]) is float
    m = optimizer.Momentum(lr=0.1)
    for _ in range(2):
        m.update(params, {"x": 1.0, "y": 0.0})
    assert params["x"] == pytest.approx(-7.0 + 0.95 * 0.7 - 0.1 - (0.9 * 0.1 + 0.1))  # the velocity persists


def test_trainer_prints_the_books_lines(book: Device, capsys: pytest.CaptureFixture[str]) -> None:
    from xpnet.book.multi_layer_net import MultiLayerNet
    from xpnet.book.trainer import Trainer

    (x_train, t_train), (x_test, t_test) = load()
    np.random.seed(0)
    net = MultiLayerNet(784, [20], 10)
    trainer = Trainer(net, x_train[:200], t_train[:200], x_test[:100], t_test[:100], epochs=2, mini_batch_size=50,
                      optimizer="Adam", optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=50)
    trainer.train()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 8 + 2 + 2 and all(line.startswith("train loss:") for line in out[:4])
    assert float(out[0].split(":")[1]) == trainer.train_loss_list[0]
    assert out[4] == f"=== epoch:1, train acc:{trainer.train_acc_list[0]}, test acc:{trainer.test_acc_list[0]} ==="
    assert out[-2:] == ["=============== Final Test Accuracy ===============", f"test acc:{trainer.final_test_acc}"]
    assert trainer.final_test_acc == net.accuracy(x_test[:100], t_test[:100])
    assert trainer.train_acc_list[-1] == net.accuracy(x_train[:50], t_train[:50])  # the first 50 samples
    with pytest.raises(ValueError, match="unknown optimizer 'AdamW'"):
        Trainer(net, x_train[:200], t_train[:200], x_test, t_test, optimizer="AdamW")
    with pytest.raises(TypeError, match=r"the book's net contract .*; object lacks params \(a dict of arrays\), "
                                        r"gradient, loss, accuracy$"):  # any object with the contract trains
        Trainer(object(), x_train[:200], t_train[:200], x_test, t_test)


# -- functions, gradient, util, layers ---------------------------------------------------------------

def test_the_books_functions_and_numerical_gradient() -> None:
    from xpnet.book import functions as F
    from xpnet.book.gradient import numerical_gradient

    np.testing.assert_array_equal(F.step_function(np.array([-1.0, 1.0, 2.0])), [0, 1, 1])
    np.testing.assert_allclose(F.sigmoid_grad(np.array([0.0])), [0.25])
    np.testing.assert_array_equal(F.relu_grad(np.array([-1.0, 0.0, 3.0])), [0.0, 1.0, 1.0])
    y = F.softmax(np.array([0.3, 2.9, 4.0]))
    assert float(F.cross_entropy_error(y, np.array([0, 0, 1]))) == pytest.approx(-np.log(y[2] + 1e-7))
    assert float(F.cross_entropy_error(y, np.array([0.0, 0.0, 1.0]))) == pytest.approx(-np.log(y[2] + 1e-7))
    x = np.array([3.0, 4.0])
    np.testing.assert_allclose(numerical_gradient(lambda v: np.sum(v**2), x), [6.0, 8.0], rtol=1e-6)
    np.testing.assert_array_equal(x, [3.0, 4.0])


def test_util_and_layers() -> None:
    from xpnet.book import layers, util

    assert util.conv_output_size(28, 5) == 24 and util.conv_output_size(28, 3, stride=1, pad=1) == 28
    assert util.im2col(np.zeros((2, 3, 7, 7)), 5, 5).shape == (2 * 3 * 3, 3 * 5 * 5)
    assert util.col2im(np.ones((2 * 9, 75)), (2, 3, 7, 7), 5, 5).shape == (2, 3, 7, 7)
    curve = [float(v) for v in np.linspace(2.0, 0.1, 50)]
    smooth = util.smooth_curve(curve)
    assert smooth.shape == (50,) and np.allclose(util.smooth_curve([1.0] * 30), 1.0)
    assert abs(smooth[25] - curve[25]) < 1e-9  # a straight line stays where it is
    conv = layers.Convolution(np.ones((1, 1, 3, 3)), np.zeros(1))
    assert conv.forward(np.ones((1, 1, 5, 5))).shape == (1, 1, 3, 3)
    assert layers.np is np and {"Affine", "Relu", "SoftmaxWithLoss", "BatchNormalization"} <= set(layers.__all__)


def test_book_optimizers_take_xpnets_own_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """xpnet chooses its fused step by the optimizer's exact class; the book's classes must reach it."""
    from xpnet import accel, optim
    from xpnet.book.multi_layer_net import MultiLayerNet
    from xpnet.book.optimizer import Adam

    seen: list[type] = []
    real_step = accel.step

    def spy(opt: Any, *args: Any) -> None:
        seen.append(accel.formula_class(opt))
        real_step(opt, *args)

    monkeypatch.setattr(accel, "step", spy)
    net = MultiLayerNet(6, [5], 3, device="cpu", seed=0)
    twin = MultiLayerNet(6, [5], 3, device="cpu", seed=0)
    x, t = np.random.default_rng(0).random((8, 6)), np.arange(8) % 3
    book_opt, core_opt = Adam(lr=0.01), optim.Adam(lr=0.01)
    for _ in range(3):
        book_opt.update(net.params, net.gradient(x, t))
        core_opt.update(twin.params, twin.gradient(x, t))
    assert seen and set(seen) == {optim.Adam} and type(book_opt) is Adam
    for key in net.params:
        np.testing.assert_array_equal(to_host(net.params[key]), to_host(twin.params[key]))
