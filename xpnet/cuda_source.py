"""The CUDA source of every kernel xpnet ships, as CuPy generates it, compiled with NVRTC without a GPU.

A CuPy kernel is only compiled the first time it runs, so a missing header or a typo in a kernel
body would first show on a GPU. This module builds the exact translation unit CuPy's
``ElementwiseKernel`` would hand to NVRTC (CuPy's own code generation and compiler options) and
compiles it for a given architecture through CuPy's NVRTC binding: the tests do it for sm_80 and
sm_90 in float32 and float64, and the Docker image's smoke stage does it once
(``python -m xpnet.cuda_source``). It needs CuPy, NVRTC and the CUDA runtime headers
(``pip install 'xpnet[cuda12]'``), not a GPU. It uses CuPy internals (``cupy._core``) on purpose:
the point is to compile what CuPy would compile.

Why it sits above accel and optim, not in accel: it names each optimizer kernel's arguments from the
optimizer class declaring that formula, exactly as :func:`xpnet.accel.step` does, so it needs
:mod:`xpnet.optim`, which accel's lower floor must never import. Nothing imports it: it is a command.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from xpnet import optim
from xpnet.accel import kernels
from xpnet.backend import DTYPES


@dataclass(frozen=True)
class Kernel:
    """One ElementwiseKernel of :mod:`xpnet.accel.kernels`: its name, (inputs, outputs, body), and which inputs are
    scalars (an optimizer's hyper-parameters; every other parameter is an array)."""

    name: str
    ins: str
    outs: str
    body: str
    scalars: tuple[str, ...] = ()


def every_kernel() -> list[Kernel]:
    """Every kernel :mod:`xpnet.accel.kernels` can build: the activations and one per optimizer formula."""
    out = [Kernel(f"xpnet_{n}", *spec) for n, spec in kernels.ACTIVATIONS.items()]
    by_formula = {cls.formula: cls for cls in optim.OPTIMIZERS.values()}
    for name in kernels.OPTIMIZERS:
        cls = by_formula[name]
        opt = cls()
        opt.iter = 1  # Adam's hyper() needs a step count
        hyper = list(opt.hyper())
        out.append(Kernel(f"xpnet_{name}", *kernels.source(name, cls.slots, hyper), scalars=tuple(hyper)))
    return out


def elementwise_source(k: Kernel, dtype: str) -> str:
    """The CUDA C++ CuPy generates for ``k`` called on contiguous 1-D ``dtype`` arrays (scalars for
    the optimizer's hyper-parameters, as :func:`xpnet.accel.kernels.optimizer` passes them), headers included."""
    import cupy
    import numpy as np
    from cupy._core import _carray, _kernel, _scalar, core

    ek = cupy.ElementwiseKernel(k.ins, k.outs, k.body, k.name, options=kernels.OPTIONS)
    t = np.dtype(dtype)
    ndarray, indexer, scalar = 1, 2, 3  # cupy/_core/_kernel.pxd: _ArgKind
    infos = [_kernel._ArgInfo(scalar, _scalar.CScalar, t, 0, True, True) if p.name in k.scalars
             else _kernel._ArgInfo(ndarray, cupy.ndarray, t, 1, True, True) for p in ek.params[:-1]]
    infos.append(_kernel._ArgInfo(indexer, _carray.Indexer, None, 1, True, True))
    _, _, type_map = ek._decide_params_type(tuple(t for _ in ek.in_params), ())
    code = _kernel._get_elementwise_kernel_code(tuple(infos), type_map, ek.params, ek.operation, ek.name,
                                                ek.preamble)
    headers = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
    return headers + code


def nvrtc_options(arch: str, ptx: bool = False) -> tuple[str, ...]:
    """The options CuPy's ``compile_with_cache`` passes to NVRTC for our kernels on ``sm_<arch>``."""
    from cupy._core import core

    target = f"-arch=compute_{arch}" if ptx else f"-arch=sm_{arch}"
    return core.assemble_cupy_compiler_options(kernels.OPTIONS) + (
        "-ftz=true", target, "--device-as-default-execution-space")


def compile_source(source: str, arch: str, ptx: bool = False) -> bytes:
    """Compile ``source`` with NVRTC for ``sm_<arch>``: the cubin (or, with ``ptx``, the PTX text).
    Raises RuntimeError with NVRTC's log when it does not compile."""
    from cupy_backends.cuda.libs import nvrtc

    prog = nvrtc.createProgram(source, "xpnet_kernel.cu", (), ())
    try:
        try:
            nvrtc.compileProgram(prog, nvrtc_options(arch, ptx))
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC ({exc}) for sm_{arch}:\n{nvrtc.getProgramLog(prog)}") from None
        return nvrtc.getPTX(prog) if ptx else nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)


def nvrtc_version() -> tuple[int, int]:
    from cupy_backends.cuda.libs import nvrtc

    return nvrtc.getVersion()


def compile_all(archs: list[str], dtypes: list[str]) -> list[tuple[str, str, str, int]]:
    """Compile every kernel for every arch and dtype: (kernel, arch, dtype, cubin bytes) rows."""
    rows = []
    for k in every_kernel():
        for dtype in dtypes:
            src = elementwise_source(k, dtype)
            for arch in archs:
                rows.append((k.name, arch, dtype, len(compile_source(src, arch))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xpnet.cuda_source", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["80", "90"], help="compute capabilities (default: 80 90)")
    parser.add_argument("--dtype", nargs="+", default=list(DTYPES), choices=DTYPES)
    args = parser.parse_args(argv)
    try:
        rows = compile_all(args.arch, args.dtype)
    except Exception as exc:  # missing CuPy, NVRTC or headers: one line, not a traceback
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        print(f"xpnet cuda_source: cannot compile xpnet's CUDA kernels: {exc.__class__.__name__}: {first}",
              file=sys.stderr)
        return 2
    major, minor = nvrtc_version()
    print(f"compiled {len(rows)} kernels with NVRTC {major}.{minor} "
          f"({len(every_kernel())} kernels x sm_{', sm_'.join(args.arch)} x {', '.join(args.dtype)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
