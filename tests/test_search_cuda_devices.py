"""``xpnet search --devices`` opens a CUDA context only where a worker computes (issue 23, item 4).

Resolving a GPU opens a context on it (and the kernel probe used to run on GPU 0 whatever was asked), so
resolving every listed device in the supervisor and in each worker made K+1 contexts per GPU, and fails
outright in EXCLUSIVE_PROCESS mode. A stand-in CuPy with two GPUs records which devices were entered."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest

from xpnet import backend
from xpnet.search import study


class _Array(np.ndarray):
    def get(self) -> np.ndarray:
        return np.asarray(self)


def _two_gpus(opened: list[int], broken: int | None = None) -> types.ModuleType:
    """A CuPy with two GPUs that records every device made current; GPU ``broken`` cannot compile."""
    cupy = types.ModuleType("cupy")
    current = [0]

    class Device:
        def __init__(self, index: int) -> None:
            self.id = index

        def __enter__(self) -> Device:
            opened.append(self.id)
            self.before, current[0] = current[0], self.id
            return self

        def __exit__(self, *exc: Any) -> None:
            current[0] = self.before

        def use(self) -> None:
            opened.append(self.id)
            current[0] = self.id

    def kernel(*args: Any) -> Any:
        if current[0] == broken:
            raise RuntimeError("Failed to find CUDA headers")
        return lambda x: (x * x + 1).view(_Array)

    class Generator:
        def __init__(self, bitgen: Any) -> None:
            pass

        def random(self, n: int, dtype: Any) -> np.ndarray:
            return np.full(n, 0.5, dtype=np.float32)

    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 2), Device=Device)
    cupy.float32, cupy.ElementwiseKernel = np.float32, kernel
    cupy.arange = lambda n, dtype: np.arange(n, dtype=dtype)
    cupy.empty = lambda n: np.empty(n)
    cupy.random = types.SimpleNamespace(Generator=Generator, Philox4x3210=lambda seed: None)
    return cupy


def test_checking_the_device_list_touches_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    monkeypatch.setitem(sys.modules, "cupy", _two_gpus(opened))
    assert study._devices("cuda:0, cuda:1,auto,cpu") == ["cuda:0", "cuda:1", "auto", "cpu"]
    assert opened == [], "the supervisor (and every worker) read the list: no context may open for it"
    with pytest.raises(study.SearchError, match=r"--devices cuda:5: this machine has 2 CUDA device\(s\)"):
        study._devices("cuda:0,cuda:5")
    with pytest.raises(study.SearchError, match="--devices gpu: unknown device"):
        study._devices("gpu")
    assert opened == []


@pytest.mark.parametrize("worker", [0, 1, 2, 3])
def test_a_worker_opens_only_its_own_gpu(worker: int, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    monkeypatch.setitem(sys.modules, "cupy", _two_gpus(opened))
    s = types.SimpleNamespace(devices=study._devices("cuda:0,cuda:1"))
    dev = study.worker_device(s, worker)
    assert dev.name == f"cuda:{worker % 2}"
    assert set(opened) == {worker % 2}, f"worker {worker} entered GPUs {sorted(set(opened))}"


def test_a_numbered_gpu_that_cannot_run_a_kernel_fails_its_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    monkeypatch.setitem(sys.modules, "cupy", _two_gpus(opened, broken=1))
    s = types.SimpleNamespace(devices=["cuda:0", "cuda:1"])
    assert study.worker_device(s, 0).name == "cuda:0"
    with pytest.raises(study.SearchError, match=r"--devices cuda:1: .*cannot compile or run a kernel on cuda:1"):
        study.worker_device(s, 1)
    assert backend.cuda_status(0)[0] and not backend.cuda_status(1)[0]  # each GPU's own probe
