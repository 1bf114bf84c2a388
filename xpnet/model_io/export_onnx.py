"""Export a trained net as an ONNX graph, written node by node with ``onnx.helper``.

Each layer of the book's net becomes the ONNX operator that computes the same function at
evaluation time: Affine → Gemm (Flatten first when its input has more axes), Convolution → Conv,
max Pooling → MaxPool (after a zero Pad when the layer pads: the book pads with zeros, ONNX's
MaxPool with −∞), Relu/Sigmoid/Tanh → the same, BatchNormalization → BatchNormalization with the
running statistics, Dropout → Identity (xpnet's dropout is inverted, so evaluation is the
identity), Flatten → Flatten. The graph is float32 with one input ``input`` ((N, D) for MLPs,
(N, C, H, W) for conv nets: (N, 784) and (N, 1, 28, 28) for MNIST) and one output ``logits``;
weights keep the book's names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from xpnet.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Flatten,
    Pooling,
    Relu,
    Sigmoid,
    Tanh,
)

OPSET = 17
IR_VERSION = 8  # the IR that goes with opset 17: runtimes from 2021 on read it
_ACTIVATIONS = {Relu: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh"}


class ExportError(ValueError):
    """The net holds a layer this exporter has no ONNX operator for."""


def missing_onnx() -> str | None:
    """None when the onnx package imports, else the one-line reason and how to install it."""
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        return f"ONNX export needs the onnx package ({exc}); install it with: pip install 'xpnet[onnx]'"
    return None


class _Graph:
    """Nodes and initializers appended in order, with the running tensor name and per-sample shape."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.cur, self.shape = "input", list(input_shape)
        self.n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def add(self, op: str, inputs: list[str], shape: list[int], name: str, **attrs: Any) -> None:
        self.n += 1
        out = f"{name}_out"
        self.nodes.append(self.helper.make_node(op, [self.cur, *inputs], [out], name=name, **attrs))
        self.cur, self.shape = out, shape

    def flatten(self, name: str) -> None:
        if len(self.shape) > 1:
            self.add("Flatten", [], [math.prod(self.shape)], name, axis=1)


def build_graph(net: Any, metadata: Mapping[str, str] | None = None) -> Any:
    """The ONNX ModelProto of ``net`` (opset :data:`OPSET`), checked by ``onnx.checker``."""
    import onnx
    from onnx import TensorProto, helper

    from xpnet._version import __version__

    state = {k: np.asarray(v) for k, v in net.state_dict().items()}

    def weight(name: str) -> np.ndarray:
        return state[name].astype(np.float32)

    g = _Graph(tuple(net.input_shape))
    n_w = n_bn = 0
    for i, layer in enumerate(net.layers, start=1):
        kind = type(layer)
        if isinstance(layer, Affine):
            n_w += 1
            g.flatten(f"flatten_before_affine{n_w}")
            w, b = weight(f"W{n_w}"), weight(f"b{n_w}")
            g.add("Gemm", [g.const(f"W{n_w}", w), g.const(f"b{n_w}", b)], [int(w.shape[1])], f"affine{n_w}")
        elif isinstance(layer, Convolution):
            n_w += 1
            w, b = weight(f"W{n_w}"), weight(f"b{n_w}")
            fn, _, fh, fw = (int(s) for s in w.shape)
            _, h, wd = g.shape
            s, p = layer.stride, layer.pad
            g.add("Conv", [g.const(f"W{n_w}", w), g.const(f"b{n_w}", b)],
                  [fn, (h + 2 * p - fh) // s + 1, (wd + 2 * p - fw) // s + 1], f"conv{n_w}",
                  kernel_shape=[fh, fw], strides=[s, s], pads=[p, p, p, p])
        elif isinstance(layer, Pooling):
            c, h, wd = g.shape
            p, s, ph, pw = layer.pad, layer.stride, layer.pool_h, layer.pool_w
            if p:
                pads = g.const(f"pool{i}_pads", np.array([0, 0, p, p, 0, 0, p, p], dtype=np.int64))
                g.add("Pad", [pads], [c, h + 2 * p, wd + 2 * p], f"pad{i}", mode="constant")
            g.add("MaxPool", [], [c, (h + 2 * p - ph) // s + 1, (wd + 2 * p - pw) // s + 1], f"pool{i}",
                  kernel_shape=[ph, pw], strides=[s, s])
        elif kind in _ACTIVATIONS:
            g.add(_ACTIVATIONS[kind], [], g.shape, f"{_ACTIVATIONS[kind].lower()}{i}")
        elif isinstance(layer, BatchNormalization):
            n_bn += 1
            shape = list(g.shape)
            g.flatten(f"flatten_before_bn{n_bn}")  # xpnet normalises every feature after the batch axis
            names = [g.const(f"{k}{n_bn}", weight(f"{k}{n_bn}"))
                     for k in ("gamma", "beta", "running_mean", "running_var")]
            g.add("BatchNormalization", names, g.shape, f"batchnorm{n_bn}", epsilon=float(layer.eps))
            if len(shape) > 1:
                back = g.const(f"bn{n_bn}_shape", np.array([0, *shape], dtype=np.int64))
                g.add("Reshape", [back], shape, f"reshape_after_bn{n_bn}")
        elif isinstance(layer, Dropout):
            g.add("Identity", [], g.shape, f"dropout{i}")  # inverted dropout: the identity at evaluation
        elif isinstance(layer, Flatten):
            g.flatten(f"flatten{i}")
        else:
            raise ExportError(f"no ONNX operator for layer {i} ({kind.__name__}) of {type(net).__name__}")
    g.nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        g.nodes, f"xpnet_{type(net).__name__}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *(int(s) for s in net.input_shape)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", *g.shape])],
        initializer=g.inits,
        doc_string="logits of xpnet's net; softmax gives class probabilities")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="xpnet",
                              producer_version=__version__, ir_version=IR_VERSION)
    helper.set_model_props(model, dict(metadata or {}))
    onnx.checker.check_model(model, full_check=True)
    return model


def metadata(model_name: str, dataset: str, classes: list[str], flat_input: bool, *,
             image_shape: tuple[int, int, int] | None = (1, 28, 28), mnist_like: bool = True) -> dict[str, str]:
    """What a consumer of the .onnx needs to feed it: the dataset, the class names and the preprocessing.

    ``image_shape`` is the training images' (C, H, W) (None for vector data); ``mnist_like`` says
    whether they are MNIST-style drawings (light ink on black) or pictures resized to (H, W).
    """
    if image_shape is None:
        layout = "(N, D): the vectors the model was trained on"
    else:
        c, h, w = image_shape
        layout = (f"(N, {c * h * w}): {c}x{h}x{w} images flattened in (C, H, W) order" if flat_input
                  else f"(N, {c}, {h}, {w}): NCHW")
        if (c, h, w) == (1, 28, 28) and flat_input:
            layout = "(N, 784): 28x28 images flattened row by row"
    if mnist_like:
        how = (f"grey levels scaled to [0, 1] (pixel / 255), light ink on a black background as in {dataset}; "
               "for your own pictures see `xpnet predict`")
    elif image_shape is not None:
        planes = "grey" if image_shape[0] == 1 else "R, G, B planes"
        how = (f"pictures resized to {image_shape[2]}x{image_shape[1]} (bilinear), {planes}, scaled to [0, 1] "
               "(pixel / 255), as `xpnet predict` does")
    else:
        how = "the values as in the training arrays (uint8 / 255, floats as they are)"
    return {
        "dataset": dataset,
        "classes": json.dumps(classes),
        "model": model_name,
        "input": f"float32 {layout}",
        "preprocessing": how,
        "output": f"logits (N, {len(classes)}); softmax gives the class probabilities",
    }


def to_bytes(model: Any) -> bytes:
    return bytes(model.SerializeToString())
