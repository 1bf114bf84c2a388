"""Defects a review of the CuPy path found (issue 11), each shown on the CPU where a CPU can show it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import sync_double
from tests.helpers import randn, reachable_arrays, two_gpus
from tests.sync_double import SyncDetector, SyncError
from xpnet import backend, gradcheck, nets, optim
from xpnet.accel import flat
from xpnet.data import DataLoader

# -- defect 2: numerical_gradient read a 0-d view ------------------------------------------------

class ViewIndexing(np.ndarray):
    """NumPy arrays whose integer indexing returns a 0-d *view*, as CuPy's does."""

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, tuple) and all(isinstance(i, int) for i in idx):
            return super().__getitem__((*idx, Ellipsis))  # a 0-d view, not a copy
        return super().__getitem__(idx)


def test_view_indexing_reproduces_cupy() -> None:
    a = np.arange(4.0).view(ViewIndexing)
    old = a[(1,)]
    a[(1,)] = 9.0
    assert float(old) == 9.0  # the "old value" changed with the array: CuPy's behaviour


def test_numerical_gradient_copies_the_value_it_restores() -> None:
    x = np.array([[1.0, -2.0], [0.5, 3.0]]).view(ViewIndexing)
    before = np.array(x, copy=True)
    grad = gradcheck.numerical_gradient(lambda a: np.sum(np.asarray(a) ** 2), x)
    np.testing.assert_allclose(np.asarray(grad), 2 * before, rtol=1e-6)  # not half of it
    np.testing.assert_array_equal(np.asarray(x), before)  # restored exactly


# -- defect 6: a device->host sync on every step ---------------------------------------------------

def test_sync_detector_detects() -> None:
    a = np.ones(3).view(SyncDetector)
    s = np.sum(a * 2)
    assert isinstance(s, SyncDetector) and s.ndim == 0
    for read in (bool, int, float, lambda v: v.item()):
        with pytest.raises(SyncError):
            read(s)


@pytest.mark.parametrize("name", ["two_layer", "extend", "conv"])
def test_training_steps_do_not_sync(name: str) -> None:
    """Whole training steps (forward, loss, backward, weight decay, Adam) with labels validated once by a
    DataLoader: nothing is read back to the host until the trainer reads the losses it kept on the device.

    Every array of the step is a sync detector (the inputs, the flat parameter and gradient buffers, the
    optimizer's state, dropout's and batch norm's arrays): the net, optimizer and loader live on a device
    that makes nothing else."""
    dev = sync_double.sync_detector_device()
    rng = np.random.default_rng(0)
    x = rng.random((8, 1, 28, 28) if name == "conv" else (8, 784), dtype=np.float32)
    t = rng.integers(0, 10, 8)
    with sync_double.allow():  # building may read back once (the flat-buffer probe, the loader's label check)
        if name == "conv":
            net = nets.SimpleConvNet(device=dev, seed=0, weight_decay_lambda=1e-3)
        elif name == "extend":
            net = nets.MultiLayerNet(784, [20, 20], 10, device=dev, seed=0, use_dropout=True,
                                     use_batchnorm=True, weight_decay_lambda=1e-3)
        else:
            net = nets.TwoLayerNet(784, 20, 10, device=dev, seed=0)
        loader = DataLoader(x, t, 8, shuffle=False, device=dev, flatten=name != "conv", normalize=False)
    net.last_layer.check_labels = False  # what the Trainer does for a DataLoader's labels
    opt = optim.Adam(1e-3)
    losses = []
    with sync_double.forbid():
        for _ in range(3):
            for xb, tb in loader:
                grads = net.gradient(xb, tb)
                opt.update(net.params, grads)
                losses.append(net.last_loss)
    state = [a for arrays in opt.state.values() for a in arrays.values()]
    assert state and all(isinstance(a, SyncDetector) for a in [*net.params.values(), *grads.values(), *state,
                                                               xb, tb, *losses]), \
        "the step's arrays are not all detectors: the test would miss a read of them"
    with sync_double.allow():
        values = np.asarray(np.stack(losses)).astype(np.float64)  # the one read-back, as the trainer does
    assert np.all(np.isfinite(values))


def test_the_trainer_skips_the_per_step_label_check_only_for_validated_labels() -> None:
    from xpnet.train.trainer import Trainer

    x, t = np.zeros((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
    net = nets.TwoLayerNet(4, 5, 3, device="cpu", seed=0)
    Trainer(net, optim.SGD(0.1), DataLoader(x, t, 3, num_classes=3), epochs=1)
    assert net.last_layer.check_labels is False
    wide = nets.TwoLayerNet(4, 5, 3, device="cpu", seed=0)  # loader allows 10 classes, net has 3 outputs
    Trainer(wide, optim.SGD(0.1), DataLoader(x, t, 3), epochs=1)
    assert wide.last_layer.check_labels is True
    plain = nets.TwoLayerNet(4, 5, 3, device="cpu", seed=0)
    Trainer(plain, optim.SGD(0.1), [(x, t)], epochs=1)
    assert plain.last_layer.check_labels is True
    with pytest.raises(ValueError, match="labels out of range"):
        plain.gradient(x, np.array([0, 1, 7, 0, 1, 2]))


def test_device_labels_are_checked_once_by_the_loader(strict_dev: backend.Device) -> None:
    x = randn(strict_dev, 4, 3, dtype="float32")
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2, found 0\.\.5"):
        DataLoader(x, strict_dev.asarray(np.array([0, 5, 1, 2])), 2, device=strict_dev, num_classes=3)


# -- defect 1: a CuPy that counts devices but cannot compile a kernel --------------------------------

def _fake_cupy(compile_error: str | None) -> types.ModuleType:
    """A stand-in for CuPy on a host with one GPU whose NVRTC cannot find the CUDA headers."""
    cupy = types.ModuleType("cupy")

    class Kernel:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if compile_error:
                raise RuntimeError(compile_error)
            self.body = args[2]

        def __call__(self, x: np.ndarray) -> np.ndarray:
            return (x * x + 1).view(FakeArray)

    class FakeArray(np.ndarray):
        def get(self) -> np.ndarray:
            return np.asarray(self)

    class Philox:
        def __init__(self, seed: Any, size: int = -1) -> None:
            self.seed = seed

    class Generator:
        def __init__(self, bitgen: Philox) -> None:
            self.rng = np.random.default_rng(bitgen.seed)

        def random(self, shape: Any, dtype: Any) -> np.ndarray:
            return self.rng.random(shape, dtype=np.float32).view(FakeArray)

    cupy.float32, cupy.ndarray = np.float32, FakeArray
    cupy.ElementwiseKernel = Kernel
    cupy.arange = lambda n, dtype: np.arange(n, dtype=dtype)
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
                                      Device=lambda i: contextlib.nullcontext())
    cupy.random = types.SimpleNamespace(Generator=Generator, Philox4x3210=Philox)
    return cupy


def test_cuda_status_says_unusable_when_no_kernel_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    headers = "Failed to find CUDA headers. Please install CUDA toolkit headers"
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(headers))
    ok, reason, count = backend.cuda_status()
    assert (ok, count) == (False, 1)
    assert "cannot compile" in reason and "Failed to find CUDA headers" in reason and "xpnet[cuda12]" in reason
    assert backend.device("auto").backend == "numpy"  # auto does not pick a GPU that would crash
    with pytest.warns(backend.CudaFallbackWarning, match="Failed to find CUDA headers"):
        assert backend.device("cuda").backend == "numpy"


def test_cuda_status_runs_the_probe_kernel_and_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(None))
    assert backend.cuda_status() == (True, "", 1)


def test_views_share_memory_raises_instead_of_caching_a_failure() -> None:
    """A device whose first allocation fails (CuPy compiling its fill kernel) is an error, not 'no'."""
    class Broken(types.ModuleType):
        float32 = np.float32

        def zeros(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("Failed to find CUDA headers")

    dev = backend.wrap(Broken("broken_xp"), "gpu0", name="broken")
    for _ in range(2):  # and the second ask is not answered from a cache
        with pytest.raises(RuntimeError, match="CUDA headers"):
            flat.views_share_memory(dev)


# -- defect 3: the device RNG's saved state restores the same stream ------------------------------------

def _cupy_device(monkeypatch: pytest.MonkeyPatch) -> backend.Device:
    fake = _fake_cupy(None)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    xp = types.ModuleType("cupy")
    xp.float32 = np.float32
    return backend.Device("cuda:0", xp, contextlib.nullcontext())


@pytest.mark.parametrize("kind", ["numpy", "strict", "cupy-path"])
def test_rng_resume_replays_the_uninterrupted_stream(kind: str, strict_dev: backend.Device,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    dev = {"numpy": backend.cpu(), "strict": strict_dev}.get(kind) or _cupy_device(monkeypatch)
    assert (dev.backend == "cupy") == (kind == "cupy-path")
    whole = dev.rng(7)
    stream = [backend.to_host(whole.random((3, 4), dev.xp.float32)) for _ in range(5)]
    first = dev.rng(7)
    for _ in range(2):
        first.random((3, 4), dev.xp.float32)
    state = first.state_dict()
    resumed = dev.rng(123)
    resumed.load_state_dict(state)
    for k in range(2, 5):
        got = resumed.random((3, 4), dev.xp.float32)
        np.testing.assert_array_equal(backend.to_host(got), stream[k])
    assert set(json.loads(state["rng"])) == {"seed", "draws"}  # nothing library-specific to lose


# -- defect 5: every array of a net and its optimizer on the device asked for ------------------------



@pytest.mark.parametrize("name", ["two_layer", "multi", "conv"])
def test_every_array_lands_on_the_second_device(name: str) -> None:
    import array_api_strict as strict

    dev = backend.wrap(strict, strict.Device("device2"), name="strict:device2")
    if name == "conv":
        net = nets.SimpleConvNet(device=dev, seed=0, weight_decay_lambda=1e-3)
        x = dev.asarray(np.random.default_rng(0).random((4, 1, 28, 28)), dtype=strict.float32)
    else:
        net = (nets.TwoLayerNet(784, 10, 10, device=dev, seed=0) if name == "two_layer" else
               nets.MultiLayerNet(784, [10, 10], 10, device=dev, seed=0, use_dropout=True, use_batchnorm=True))
        x = dev.asarray(np.random.default_rng(0).random((4, 784)), dtype=strict.float32)
    t = dev.asarray(np.array([1, 2, 3, 4]))
    opt = optim.Adam(1e-3)
    for _ in range(2):
        opt.update(net.params, net.gradient(x, t))
    net.accuracy(x, t)
    arrays = reachable_arrays(net, set()) + reachable_arrays(opt, set())
    assert len(arrays) > 8
    assert {str(a.device) for a in arrays} == {str(dev.native)}


# -- defect 10: a Device can be a dict key ---------------------------------------------------------------

def test_devices_hash_even_when_the_native_device_does_not() -> None:
    class Unhashable:
        __hash__ = None  # like cupy.cuda.Device

        def __repr__(self) -> str:
            return "<CUDA Device 0>"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Unhashable)

    a = backend.Device("cuda:0", types.ModuleType("cupy"), Unhashable())
    b = backend.Device("cuda:0", a.xp, Unhashable())
    assert a == b and {a: 1}[b] == 1
    assert len({backend.cpu(), backend.cpu()}) == 1


# -- make gpu-check: a GPU run cannot pass by skipping -----------------------------------------------------

def test_require_cupy_turns_the_cupy_skip_into_a_failure() -> None:
    ok, _, _ = backend.cuda_status()
    if ok:
        pytest.skip("CUDA is usable here: the cupy tests run rather than skip")
    test = "tests/test_backend.py::test_device_rng_is_seeded_and_resumable[cupy]"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    plain = subprocess.run(run, capture_output=True, text=True, cwd=root, env=env, timeout=120)
    assert plain.returncode == 0 and "1 skipped" in plain.stdout, plain.stdout
    required = subprocess.run(run, capture_output=True, text=True, cwd=root, timeout=120,
                              env={**env, "XPNET_REQUIRE_CUPY": "1"})
    assert required.returncode == 1 and "XPNET_REQUIRE_CUPY=1 but cupy backend skipped" in required.stdout


def test_every_array_lands_on_the_second_gpu() -> None:
    """Defect 5 on real GPUs (gpu-check on a host with two): nothing of a net or its optimizer on GPU 0."""
    two_gpus()
    dev = backend.device("cuda:1")
    backend.device("cuda:0")  # the current GPU is now 0: allocations must still follow the net's device
    net = nets.MultiLayerNet(784, [10, 10], 10, device=dev, seed=0, use_dropout=True, use_batchnorm=True)
    x = dev.asarray(np.random.default_rng(0).random((4, 784)), dtype=dev.xp.float32)
    t = dev.asarray(np.array([1, 2, 3, 4]))
    opt = optim.Adam(1e-3)
    with dev.context():
        for _ in range(2):
            opt.update(net.params, net.gradient(x, t))
    arrays = reachable_arrays(net, set()) + reachable_arrays(opt, set())
    assert {a.device.id for a in arrays} == {1}
    moved = backend.to_device(backend.to_device(np.ones(3), backend.device("cuda:0")), dev)
    assert moved.device.id == 1
