"""ONNX and npz export: onnxruntime (or plain NumPy) on the exported file gives what xpnet gives.

Every net type the trainer builds is exported after a few training steps (so BatchNorm's running
statistics and the weights are not their initial values) and run in onnxruntime on inputs in the
net's own layout; the class probabilities must agree within 1e-5 in float32.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import nets
from xpnet.layers import Affine, BatchNormalization, Convolution, Pooling, Relu, SoftmaxWithLoss, Tanh
from xpnet.model_io import export_npz
from xpnet.model_io.evaluate import softmax
from xpnet.optim import Adam

onnx = pytest.importorskip("onnx", reason="the onnx package (pip install 'xpnet[onnx]') is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (it is in backends/test.txt)")

from xpnet.model_io import export_onnx  # noqa: E402


@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """MNIST test digits from the bundled copy (always there), as floats in [0, 1], and their labels."""
    from xpnet.data.idx import read_idx

    bundled = Path(__file__).resolve().parents[1] / "xpnet" / "data" / "bundled"
    x = read_idx(bundled / "t10k-images-idx3-ubyte.gz")[:2000].astype(np.float32) / 255
    return x, read_idx(bundled / "t10k-labels-idx1-ubyte.gz")[:2000].astype(np.int64)


def inputs(net: Any, x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), *net.input_shape)


def trained(net: Any, steps: int = 20, seed: int = 0) -> Any:
    """Some Adam steps on real digits, so the weights and BatchNorm's running statistics move well away from
    their start; then the last layer is scaled so the logits spread (std 3): near-uniform probabilities
    would hide an exporter's errors from a comparison of probabilities."""
    x, t = digits()
    rng = np.random.default_rng(seed)
    opt = Adam(lr=3e-3)
    for _ in range(steps):
        i = rng.choice(1500, 50, replace=False)
        opt.update(net.params, net.gradient(inputs(net, x[i]), t[i]))
    last = max((k for k in net.params if k.startswith("W")), key=lambda k: int(k[1:]))
    scale = 3.0 / float(np.std(np.asarray(net.predict(inputs(net, x[:200])))))
    for name in (last, "b" + last[1:]):
        net.params[name][...] = net.params[name] * scale
    return net


def tiny_padded_pool_net() -> Any:
    """Not one of the book's nets: a padded max pool and Tanh, to reach the exporter's other branches."""
    rng = np.random.default_rng(3)
    f32 = np.float32
    conv = Convolution(rng.normal(0, 0.3, (4, 1, 3, 3)).astype(f32), np.zeros(4, f32), stride=2, pad=1)
    # pooled: (4, 14, 14) → pad 1, 3×3 window, stride 2 → (4, 7, 7)
    layers = [conv, Tanh(), Pooling(3, 3, stride=2, pad=1),
              BatchNormalization(np.ones(196, f32), np.zeros(196, f32)), Relu(),
              Affine(rng.normal(0, 0.1, (196, 10)).astype(f32), np.zeros(10, f32))]
    return nets.Sequential(layers, SoftmaxWithLoss(), input_shape=(1, 28, 28), device=xpnet.device("cpu"),
                           dtype="float32")


NETS = {
    "mlp-bn-dropout": lambda: nets.MultiLayerNet(784, [64, 32], 10, use_batchnorm=True, use_dropout=True,
                                                 dropout_ratio=0.3, device="cpu"),
    "mlp-sigmoid": lambda: nets.MultiLayerNet(784, [50], 10, activation="sigmoid", weight_init_std="sigmoid",
                                              device="cpu"),
    "mlp-tanh": lambda: nets.MultiLayerNet(784, [50, 40], 10, activation="tanh", weight_init_std="sigmoid",
                                           device="cpu"),
    "two-layer": lambda: nets.TwoLayerNet(784, 50, 10, device="cpu"),
    "simple-convnet": lambda: nets.SimpleConvNet(hidden_size=40, device="cpu"),
    "deep-convnet": lambda: nets.DeepConvNet(device="cpu"),
    "padded-pool": tiny_padded_pool_net,
}


def run_onnx(model: Any, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    [logits] = sess.run(["logits"], {"input": x})
    return np.asarray(logits)


@pytest.mark.parametrize("name", list(NETS))
def test_onnxruntime_matches_xpnet(name: str) -> None:
    net = trained(NETS[name]())
    model = export_onnx.build_graph(net, {"dataset": "mnist"})
    x = inputs(net, digits()[0][1500:1700])  # digits the net did not train on
    logits = np.asarray(net.predict(x), dtype=np.float64)
    onnx_logits = run_onnx(model, x).astype(np.float64)
    assert onnx_logits.shape == (200, 10)
    ours, theirs = softmax(logits), softmax(onnx_logits)
    diff = float(np.abs(ours - theirs).max())
    assert diff <= 1e-5, f"{name}: max |Δp| = {diff:.2e}"
    assert float(np.abs(logits - onnx_logits).max()) <= 1e-5 * (1 + float(np.abs(logits).max()))
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    # A net that says something: confident on some digits, unsure on others.
    assert ours.max(axis=1).max() > 0.9 and ours.max(axis=1).min() < 0.9, name


def test_graph_shape_and_metadata() -> None:
    net = trained(NETS["mlp-bn-dropout"]())
    meta = export_onnx.metadata("mlp", "fashion-mnist", ["T-shirt/top", *"123456789"], flat_input=True)
    model = export_onnx.build_graph(net, meta)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    g = model.graph
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["logits"]
    dims = [d.dim_value or d.dim_param for d in g.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 784]
    ops = [n.op_type for n in g.node]
    assert ops == ["Gemm", "BatchNormalization", "Relu", "Identity"] * 2 + ["Gemm"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["dataset"] == "fashion-mnist" and json.loads(props["classes"])[0] == "T-shirt/top"
    assert "preprocessing" in props
    inits = {i.name for i in g.initializer}
    assert {"W1", "b1", "gamma1", "beta1", "running_mean1", "running_var1", "W3"} <= inits
    conv = export_onnx.build_graph(trained(NETS["simple-convnet"]()))
    dims = [d.dim_value or d.dim_param for d in conv.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, 28, 28]
    assert [n.op_type for n in conv.graph.node][:3] == ["Conv", "Relu", "MaxPool"]


def test_float64_net_exports_float32() -> None:
    net = trained(nets.TwoLayerNet(784, 30, 10, device="cpu", dtype="float64"))
    x = digits()[0][1500:1600].reshape(100, 784).astype(np.float64)
    ours = softmax(np.asarray(net.predict(x)))
    theirs = softmax(run_onnx(export_onnx.build_graph(net), x.astype(np.float32)).astype(np.float64))
    assert float(np.abs(ours - theirs).max()) <= 1e-5


def test_npz_is_plain_weights_by_the_books_names(tmp_path: Any) -> None:
    """The npz alone (no xpnet, no pickle) is enough to compute the MLP's output by hand."""
    net = trained(NETS["mlp-bn-dropout"]())
    path = tmp_path / "w.npz"
    np.savez(path, **export_npz.arrays(net, {"dataset": "mnist"}))
    with np.load(path, allow_pickle=False) as z:
        w = {k: z[k] for k in z.files}
    meta = json.loads(str(w.pop("meta")))
    assert meta["dataset"] == "mnist" and meta["layers"][:4] == ["Affine", "BatchNormalization", "Relu", "Dropout"]
    assert set(w) == {"W1", "b1", "gamma1", "beta1", "running_mean1", "running_var1",
                      "W2", "b2", "gamma2", "beta2", "running_mean2", "running_var2", "W3", "b3"}
    x = digits()[0][1500:1600].reshape(100, 784)
    h = x
    for i in (1, 2):
        h = h @ w[f"W{i}"] + w[f"b{i}"]
        h = w[f"gamma{i}"] * (h - w[f"running_mean{i}"]) / np.sqrt(w[f"running_var{i}"] + 1e-7) + w[f"beta{i}"]
        h = np.maximum(h, 0)
    by_hand = h @ w["W3"] + w["b3"]
    np.testing.assert_allclose(by_hand, np.asarray(net.predict(x)), rtol=1e-4, atol=1e-5)
