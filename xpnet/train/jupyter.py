"""Where the trainer's output goes in a notebook: Jupyter detection and pictures redrawn in place.

A notebook (Jupyter, VS Code, Colab) runs the code in an IPython kernel whose output is a web
page, not a terminal: a bar drawn with carriage returns piles up as text there, and a picture
saved to a file is not seen. So :class:`~xpnet.train.progress.ConsoleProgress` draws tqdm's
notebook bar and :class:`~xpnet.train.plots.LivePlot` shows its figure through a display handle
that each epoch replaces. Nothing here imports IPython unless the program already runs in it,
so ``import xpnet`` stays light and a script never sees a difference.
"""

from __future__ import annotations

import sys
from typing import Any


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (Jupyter, VS Code, Colab); False in a script or a terminal IPython."""
    if "IPython" not in sys.modules:  # not imported: certainly no kernel (and importing it costs 0.3 s)
        return False
    shell = sys.modules["IPython"].get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def notebook_bar_class() -> Any:
    """tqdm's notebook bar class, or None where ipywidgets (what it draws with) is not installed."""
    try:
        from tqdm import notebook
    except ImportError:
        return None
    return notebook.tqdm if getattr(notebook, "IProgress", None) is not None else None


class LiveImage:
    """One picture in the notebook's output that every :meth:`show` replaces in place."""

    def __init__(self) -> None:
        self._handle: Any = None

    def show(self, png: bytes) -> None:
        from IPython.display import DisplayHandle, Image

        image = Image(data=png, format="png")
        if self._handle is None:
            self._handle = DisplayHandle()
            self._handle.display(image)
        else:
            self._handle.update(image)
