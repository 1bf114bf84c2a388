"""The notebooks under notebooks/: each runs top to bottom in a fresh kernel, and each is committed clean.

Every notebook is executed with nbclient in a kernel on this project's Python (tests/nbrun.py), in a scratch
folder and offline, on real MNIST where it is found (XPNET_DATA_DIR, as .ci/run sets it) and on the bundled
sample otherwise. Any cell error fails the test; so does a notebook without a figure, or one whose output
holds a carriage return (a terminal progress bar piling up as text). These are the slowest tests of the suite:
a minute or so each on two cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import nbrun
from tests.conftest import mnist_dir

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ["ch04_learning", "ch05_backprop", "ch06_techniques", "ch07_cnn", "ch08_deep", "gpu_colab"]
SAMPLE_NOTE = "NOTE: real MNIST was not found, so this notebook uses xpnet's bundled sample"


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Real MNIST where it is found; matplotlib's font cache built once for all the kernels, not per notebook."""
    found = mnist_dir()
    return {"XPNET_DATA_DIR": str(found) if found is not None else None,
            "MPLCONFIGDIR": str(tmp_path_factory.mktemp("matplotlib"))}


def test_the_chapters_and_the_gpu_notebook_are_there() -> None:
    assert [p.stem for p in notebooks()] == EXPECTED


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    nb = nbrun.read(path)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state; clear it before committing"
    assert all(cell.metadata.get("execution") is None for cell in nb.cells), f"{path.name}: execution timings"


@pytest.mark.slow
@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path, shared_env: dict[str, str | None]) -> None:
    nb = nbrun.execute(nbrun.read(path), tmp_path / "work", env=shared_env)  # raises on the first cell error
    assert nbrun.images(nb), f"{path.name} shows no figure"
    text = nbrun.text_of(nb)
    assert "\r" not in text, f"{path.name}: a carriage return in the output"
    assert (SAMPLE_NOTE in text) == (shared_env["XPNET_DATA_DIR"] is None)


def test_notebook_says_when_it_runs_on_the_sample(tmp_path: Path, shared_env: dict[str, str | None]) -> None:
    """Without MNIST (none given, none cached, offline) the cell that loads the data says so in plain words."""
    nb = nbrun.read(NOTEBOOKS / "ch04_learning.ipynb")
    loads = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and "load_dataset(" in cell.source)
    nb.cells = nb.cells[:loads + 1]  # the notebook up to its data: enough to see the note
    nbrun.execute(nb, tmp_path / "work", env={**shared_env, "XPNET_DATA_DIR": None})
    text = nbrun.text_of(nb)
    assert SAMPLE_NOTE in text and "is_sample" not in text and "SAMPLE" in text  # the Dataset repr says it too
