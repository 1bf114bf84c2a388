"""The backend matrix: every test that takes ``dev`` runs on each backend.

- numpy:  NumPy on the host.
- strict: array_api_strict on Device('device1'), a simulated accelerator that
  raises on any host/device mix and on any call outside the Array API standard.
- cupy:   a real CUDA device; skipped, with the reason, where none is visible (a failure instead with
          XPNET_REQUIRE_CUPY=1, as ``make gpu-check`` sets it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import no_cuda
from tests.search_runs import Children
from xpnet import backend


def _strict() -> backend.Device:
    import array_api_strict as strict

    return backend.wrap(strict, strict.Device("device1"), name="strict:device1")


def _cupy() -> backend.Device:
    ok, reason, _ = backend.cuda_status()
    if not ok:
        no_cuda(f"cupy backend skipped: {reason}")
    return backend.device("cuda:0")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never write into the user's real ~/.cache/xpnet: the decoded-data cache goes to a temp folder."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


_MAKERS = {"numpy": backend.cpu, "strict": _strict, "cupy": _cupy}


@pytest.fixture(params=list(_MAKERS))
def dev(request: pytest.FixtureRequest) -> backend.Device:
    """One Device per backend in the matrix."""
    return _MAKERS[request.param]()


@pytest.fixture
def strict_dev() -> backend.Device:
    return _strict()


def mnist_dir() -> Path | None:
    """Real MNIST, found through XPNET_DATA_DIR (``.ci/run`` sets it) or ../shared."""
    env = os.environ.get("XPNET_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "datasets")
    for base in candidates:
        for d in (base / "mnist", base):
            if (d / "train-images-idx3-ubyte.gz").exists():
                return d
    return None


@pytest.fixture
def mnist_path() -> Path:
    d = mnist_dir()
    if d is None:
        pytest.skip("real MNIST not found: set XPNET_DATA_DIR to a folder holding mnist/")
    return d


@pytest.fixture
def mnist(monkeypatch: pytest.MonkeyPatch, mnist_path: Path) -> None:
    """Real MNIST through XPNET_DATA_DIR, for runs that find their data themselves (trials, child processes)."""
    monkeypatch.setenv("XPNET_DATA_DIR", str(mnist_path.parent if mnist_path.name == "mnist" else mnist_path))


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    """A test's child processes, logged to files and all reaped when it ends (:mod:`tests.search_runs`)."""
    with Children(tmp_path / "logs") as kids:
        yield kids


@pytest.fixture
def book(dev: backend.Device, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[backend.Device]:
    """The book facade on the matrix device, offline, in a scratch folder; real MNIST where it is found."""
    import xpnet.book

    monkeypatch.setenv("XPNET_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    found = mnist_dir()
    if found is not None:
        monkeypatch.setenv("XPNET_DATA_DIR", str(found))
    monkeypatch.chdir(tmp_path)
    xpnet.book.use(dev)
    yield dev
    xpnet.book.reset()
