"""Run an optimizer kernel's C body on host arrays, rounding exactly as the GPU does.

The bodies are a few C statements over elementwise ``T`` values. CuPy casts every scalar argument to ``T``
before the launch, and the kernels are built with ``--fmad=false``, so each C operation is one IEEE operation
rounded to ``T``, which is what a NumPy operation on ``T`` arrays with ``T`` scalars does (sqrt and division
are correctly rounded on both). Translating the statements one for one therefore reproduces the kernel's
float32 arithmetic bit for bit, without a GPU.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np


def run_body(body: str, dtype: str, arrays: dict[str, np.ndarray], scalars: dict[str, float]) -> None:
    """Execute ``body`` in ``dtype``: ``arrays`` are read and written in place, ``scalars`` cast to ``dtype``."""
    T = np.dtype(dtype).type
    env: dict[str, Any] = {"sqrt": np.sqrt, "T": T, **{n: T(v) for n, v in scalars.items()}, **arrays}
    python = re.sub(r"\(T\)\s*([0-9][0-9.eE+-]*)", r"T(\1)", body)
    for stmt in filter(None, (s.strip() for s in python.split(";"))):
        m = re.fullmatch(r"(\w+)\s*=\s*(.+)", stmt)
        if m and m.group(1) in arrays:  # `v = ...` writes the output array, as the kernel does
            stmt = f"{m.group(1)}[...] = {m.group(2)}"
        with np.errstate(all="ignore"):
            exec(stmt, {"__builtins__": {}}, env)
