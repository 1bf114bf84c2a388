"""Devices: resolution, CPU fallback with one warning, clear errors, moving arrays, device RNG."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from xpnet import backend


def test_cpu_and_auto_resolve_to_cpu_without_cuda() -> None:
    if backend.cuda_status()[0]:
        pytest.skip("a CUDA device is visible: auto picks it")
    assert backend.device("cpu").backend == "numpy"
    assert backend.device("auto").name == "cpu"
    assert backend.device("cpu").native == "cpu"


def test_cuda_without_gpu_warns_once_with_reason_and_falls_back() -> None:
    ok, reason, _ = backend.cuda_status()
    if ok:
        pytest.skip("a CUDA device is visible: no fallback to test")
    assert reason, "an unusable CUDA must come with a reason"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dev = backend.device("cuda")
    assert dev.name == "cpu"
    fallbacks = [w for w in caught if issubclass(w.category, backend.CudaFallbackWarning)]
    assert len(fallbacks) == 1
    assert reason in str(fallbacks[0].message) and "CPU" in str(fallbacks[0].message)


def test_missing_cupy_is_named_with_install_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    ok, reason, count = backend.cuda_status()
    assert not ok and count == 0
    assert "CuPy is not installed" in reason and "xpnet[cuda12]" in reason


def test_cuda_index_past_visible_devices_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "cuda_count", lambda: (1, ""))  # counting: the check resolving touches no GPU
    monkeypatch.setattr(backend, "cuda_status", lambda index=0: (True, "", 1))
    with pytest.raises(backend.DeviceError, match=r"'cuda:7' does not exist: 1 CUDA device\(s\) visible"):
        backend.device("cuda:7")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cpu:1", ""])
def test_unknown_device_spec_is_rejected(spec: str) -> None:
    with pytest.raises(backend.DeviceError, match="unknown device"):
        backend.device(spec)


def test_round_trip_to_device_and_back(dev: backend.Device) -> None:
    host = np.arange(12, dtype=np.uint8).reshape(3, 4)
    x = backend.to_device(host, dev)
    assert backend.device_of(x) == dev
    assert x.dtype == dev.xp.uint8
    y = backend.to_device(x, dev, dtype=dev.xp.float32)
    assert y.dtype == dev.xp.float32
    np.testing.assert_array_equal(backend.to_host(y), host.astype(np.float32))


def test_device_rng_is_seeded_and_resumable(dev: backend.Device) -> None:
    a, b = dev.rng(5), dev.rng(5)
    first = backend.to_host(a.random((3, 4), dev.xp.float32))
    np.testing.assert_array_equal(first, backend.to_host(b.random((3, 4), dev.xp.float32)))
    assert first.min() >= 0 and first.max() < 1
    state = a.state_dict()
    nxt = backend.to_host(a.random((5,), dev.xp.float32))
    c = dev.rng(99)
    c.load_state_dict(state)
    np.testing.assert_array_equal(nxt, backend.to_host(c.random((5,), dev.xp.float32)))
    assert not np.array_equal(first, backend.to_host(dev.rng(6).random((3, 4), dev.xp.float32)))
