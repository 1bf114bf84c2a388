"""Trainer.fit in a notebook: tqdm's notebook bar, epoch lines on stdout, and one figure redrawn in place.

The notebook side is tested in a real Jupyter kernel (nbclient, as the notebooks' own test does); the
script side checks that outside Jupyter the callbacks behave as before and never import IPython.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import nbformat

from tests import nbrun

TRAIN = """\
import numpy as np
from xpnet import nets, optim
from xpnet.data import DataLoader
from xpnet.train import ConsoleProgress, LivePlot, Plot, Trainer

rng = np.random.default_rng(0)
protos = rng.integers(0, 256, (10, 28, 28))
t = rng.integers(0, 10, 400).astype(np.uint8)
x = np.clip(protos[t] + rng.normal(0, 60, (400, 28, 28)), 0, 255).astype(np.uint8)
net = nets.TwoLayerNet(784, 32, 10)
live = LivePlot("blobs")
progress = ConsoleProgress()
saved = Plot("curves.png", every=0.0, live=True)
trainer = Trainer(net, optim.Adam(), DataLoader(x, t, 50), epochs=3, log_every=2,
                  evals={"train": DataLoader(x, t, 200, shuffle=False)}, callbacks=[progress, live, saved])
result = trainer.fit()
print("mode", progress.mode, "status", result.status, "drawn", live.drawn, saved.live.drawn, saved.drawn)
"""


def test_fit_in_a_jupyter_kernel_shows_a_notebook_bar_and_redraws_one_figure(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TRAIN)])
    nbrun.execute(nb, tmp_path)
    outs = nb.cells[0].outputs
    text = nbrun.text_of(nb)
    # 3 epochs and the end: four pictures each, yet one output per LivePlot: updated in place.
    assert "mode notebook status completed drawn 4 4 4" in text
    assert len(nbrun.images(nb)) == 2
    # tqdm's notebook bar is a widget (one per epoch), not text.
    bars = [o for o in outs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(bars) == 3
    stdout = "".join(o.text for o in outs if o.output_type == "stream" and o.name == "stdout")
    assert [line.split("  ")[0] for line in stdout.splitlines()[:3]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert not [o for o in outs if o.output_type == "stream" and o.name == "stderr"]
    assert "\r" not in text
    assert (tmp_path / "curves.png").is_file()


def test_outside_jupyter_nothing_changes(tmp_path: Path) -> None:
    script = TRAIN.replace("ConsoleProgress()", "ConsoleProgress(io.StringIO())").replace(
        "import numpy as np", "import io, sys\nimport numpy as np")
    script += 'print("ipython imported", "IPython" in sys.modules)\n'
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    # No kernel: lines (the stream is no TTY), no live picture, curves.png as ever, and no IPython import.
    assert "mode lines status completed drawn 0 0 4" in out
    assert "ipython imported False" in out
    assert (tmp_path / "curves.png").is_file()


def test_console_progress_rejects_an_unknown_mode() -> None:
    import pytest

    from xpnet.train import ConsoleProgress

    with pytest.raises(ValueError, match="mode must be"):
        ConsoleProgress(io.StringIO(), mode="fancy")
