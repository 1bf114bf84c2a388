"""Run a notebook the way a learner would, top to bottom in a fresh kernel, but on this project's Python.

The kernel is this test process's own interpreter (``sys.executable``, the project's venv), named by a
kernel spec written into a scratch folder: a ``python3`` kernel installed elsewhere on the machine, or
none at all in a fresh clone, changes nothing. The kernel starts in ``cwd`` (a scratch folder, so the
notebook can only read what it made there), offline, with its own decoded-data cache and IPython profile.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

KERNEL_NAME = "xpnet-tests"


def kernel_manager(spec_dir: Path) -> AsyncKernelManager:
    """A manager for one kernel running ``sys.executable -m ipykernel_launcher``, found only in ``spec_dir``."""
    folder = spec_dir / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "xpnet (tests)", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(spec_dir)], ensure_native_kernel=False)
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    manager.connection_file = str(spec_dir / "connection.json")  # not in ~/.local/share/jupyter/runtime
    return manager


def execute(nb: Any, cwd: Path, env: dict[str, str | None] | None = None, timeout: int = 600) -> Any:
    """Execute ``nb`` (a NotebookNode, changed in place and returned); a cell error raises CellExecutionError.

    ``env`` adds to (or, with None, removes from) this process's environment; ``timeout`` is per cell.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    kernel_env = {**os.environ, "XPNET_OFFLINE": "1", "XDG_CACHE_HOME": str(cwd / ".cache"),
                  "IPYTHONDIR": str(cwd / ".ipython")}
    for key, value in (env or {}).items():
        if value is None:
            kernel_env.pop(key, None)
        else:
            kernel_env[key] = value
    # The kernel picks matplotlib's inline backend itself; a test run's MPLBACKEND=Agg would hide every figure.
    kernel_env.pop("MPLBACKEND", None)
    client = NotebookClient(nb, timeout=timeout, km=kernel_manager(cwd / ".kernels"),
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(cwd=str(cwd), env=kernel_env, cleanup_kc=True)  # cleanup: shut the kernel down after
    return nb


def read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def outputs(nb: Any) -> list[Any]:
    """Every output of every code cell, in order."""
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def text_of(nb: Any) -> str:
    """All text the cells printed or displayed (streams and text/plain results)."""
    parts = []
    for out in outputs(nb):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out.data:
            parts.append(out.data["text/plain"])
    return "\n".join(parts)


def images(nb: Any) -> list[Any]:
    """The PNG outputs (figures) of a notebook."""
    return [out for out in outputs(nb) if "data" in out and "image/png" in out.data]
