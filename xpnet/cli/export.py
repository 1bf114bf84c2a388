"""``xpnet export RUN|CHECKPOINT --format onnx|npz -o FILE``: the trained model for use outside xpnet.

``onnx``: an ONNX graph (opset 17, float32, input ``input``, output ``logits``, metadata with the
dataset, class names and preprocessing); needs the optional extra: ``pip install 'xpnet[onnx]'``.
``npz``: plain arrays by the book's names (W1, b1, gamma1, ..., running_mean1, ...) plus a JSON
``meta``; no pickle. An existing FILE is kept unless ``--force``. Exit 0 done, 2 bad input (nothing
written).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xpnet.cli._common import (
    EXIT_FAIL,
    EXIT_OK,
    Parser,
    UsageError,
    first_line,
    load_model,
    model_arg,
    run,
    say,
)

PROG = "xpnet export"
FORMATS = ("onnx", "npz")


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                epilog="exit status: 0 written, 2 bad input (nothing written)")
    model_arg(p)
    p.add_argument("--format", choices=FORMATS, default="onnx", help="default onnx")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write (default RUN/model.onnx or RUN/model.npz)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(PROG, lambda: _export(args))


def _target(args: argparse.Namespace, model: Any) -> Path:
    out = Path(args.output) if args.output else model.run_dir / f"model.{args.format}"
    if out.is_dir():
        raise UsageError(f"-o {out} is a folder; give a file name such as {out / ('model.' + args.format)}")
    if not out.parent.is_dir():
        raise UsageError(f"-o {out}: the folder {out.parent} does not exist")
    if out.exists():
        same = out.resolve() == model.checkpoint.resolve()
        if same or not args.force:
            why = "it is the model's own checkpoint" if same else "add --force to replace it"
            raise UsageError(f"-o {out} exists; {why}")
    return out


def _export(args: argparse.Namespace) -> int:
    import numpy as np

    from xpnet.model_io import export_npz, export_onnx
    from xpnet.train.files import atomic_write

    if args.format == "onnx":
        missing = export_onnx.missing_onnx()
        if missing:
            raise UsageError(missing)
    model = load_model(args.model, "cpu")  # export reads host arrays: no device needed
    out = _target(args, model)
    from xpnet.data.catalog import MNIST_LIKE

    meta = export_onnx.metadata(model.config.model, model.dataset, model.classes, model.flat_input,
                                image_shape=model.image_shape, mnist_like=model.kind in MNIST_LIKE)
    meta["source"] = str(model.checkpoint)
    if args.format == "onnx":
        try:
            data = export_onnx.to_bytes(export_onnx.build_graph(model.net, meta))
        except export_onnx.ExportError as exc:
            raise UsageError(first_line(exc)) from None
    else:
        buf = io.BytesIO()
        np.savez(buf, **export_npz.arrays(model.net, {**meta, "classes": model.classes}))
        data = buf.getvalue()
    try:
        atomic_write(out, lambda f: f.write(data))
    except OSError as exc:
        say(PROG, f"error: cannot write {exc.filename or out}: {exc.strerror or exc}")
        return EXIT_FAIL
    shape = f"(N, {', '.join(str(s) for s in model.net.input_shape)})"
    print(f"{out}: {args.format}, {model.config.model} on {model.dataset}, input {shape}, {len(data):,} bytes")
    sys.stdout.flush()
    return EXIT_OK
