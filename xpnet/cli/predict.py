"""``xpnet predict RUN|CHECKPOINT FILE...``: classify your own pictures (or .npy arrays) with a trained model.

Pictures (PNG, JPEG, BMP, GIF, ... of any size, colour or grey, dark ink on light paper or the
reverse, the drawing anywhere in the frame) are turned into 28×28 inputs the way the model's dataset
made its images: for MNIST crop to the ink, fit a 20×20 box, centre of mass at the centre; for
Fashion-MNIST trim, longer side to 28, centred. ``.npy`` arrays of shape (28, 28) or (N, 28, 28)
are used as they are (light on black, like the datasets). Every file is read and checked before
anything is printed or written; a bad one stops the command with one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xpnet.cli._common import (
    EXIT_FAIL,
    EXIT_OK,
    Parser,
    UsageError,
    check_dataset,
    device_arg,
    load_model,
    model_arg,
    run,
    say,
    writable_folder,
)

PROG = "xpnet predict"


def _top(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1 or str(v) != s.strip().lstrip("+"):
        raise argparse.ArgumentTypeError(f"must be a positive integer (at most the model's classes are shown), "
                                         f"got {s!r}")
    return v


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                epilog="exit status: 0 done, 2 bad input (nothing printed or written)")
    model_arg(p)
    p.add_argument("files", nargs="+", metavar="FILE", help="pictures (PNG, JPEG, BMP, GIF, ...) or .npy arrays")
    p.add_argument("--top", type=_top, default=3, metavar="K", help="how many classes to show per input (default 3)")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list of {"file", "top": [{"label", "name", "prob"}, ...]}')
    p.add_argument("--show", metavar="DIR", help="write each input the model saw (28×28 for MNIST) into DIR as PNG")
    p.add_argument("--dataset", help="what the inputs are (mnist digits or fashion-mnist clothing); refused "
                                     "when the model was trained on other data (default: the model's)")
    device_arg(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(PROG, lambda: _predict(args))


def _show_dir(arg: str | None) -> Path | None:
    return None if arg is None else writable_folder("--show", Path(arg))


SHOW_SUFFIX = "_28x28.png"


def show_names(inputs: list[Any], suffix: str = SHOW_SUFFIX) -> list[str]:
    """A distinct PNG name per input: ``<stem>_28x28.png`` (``<stem>-i_28x28.png`` for the i-th array of a
    .npy, ``~n`` added on a clash; ``suffix`` names another size); the suffix keeps --show from ever taking a
    picture's own name."""
    names: list[str] = []
    taken: set[str] = set()
    counts: dict[Path, int] = {}
    for inp in inputs:
        k = counts.get(inp.path, 0)
        counts[inp.path] = k + 1
        stem = inp.path.stem + (f"-{k}" if inp.name.endswith("]") else "")
        name, n = stem + suffix, 2
        while name in taken:
            name, n = f"{stem}~{n}{suffix}", n + 1
        taken.add(name)
        names.append(name)
    return names


def _write_png(path: Path, image: Any) -> None:
    import io

    import numpy as np
    from PIL import Image

    from xpnet.train.files import atomic_write

    pixels = np.round(np.asarray(image) * 255.0).astype(np.uint8)
    if pixels.ndim == 3:  # (C, H, W): a grey plane or an RGB picture
        pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from xpnet.model_io.predict import probabilities, read_inputs, top_k
    from xpnet.model_io.preprocess import ImageError

    show = _show_dir(args.show)
    model = load_model(args.model, args.device)
    dataset = check_dataset(model, args.dataset, "classify")
    kind = model.kind if dataset == model.dataset else dataset
    inputs = []
    for f in args.files:
        try:
            inputs.extend(read_inputs(f, kind, model.sample_shape))
        except ImageError as exc:
            raise UsageError(str(exc)) from None
    probs = probabilities(model.net, np.stack([i.image for i in inputs]))
    tops = top_k(probs, model.classes, args.top)

    if show is not None:
        shape = inputs[0].image.shape
        suffix = SHOW_SUFFIX if shape == (28, 28) else f"_{shape[-1]}x{shape[-2]}.png"
        targets = [show / name for name in show_names(inputs, suffix)]
        try:
            show.mkdir(parents=True, exist_ok=True)
            for inp, target in zip(inputs, targets, strict=True):
                _write_png(target, inp.image)
        except OSError as exc:
            say(PROG, f"error: cannot write {exc.filename or show}: {exc.strerror or exc}")
            return EXIT_FAIL
    if args.json:
        print(json.dumps([{"file": inp.name, "top": top} for inp, top in zip(inputs, tops, strict=True)], indent=2))
    else:
        width = max(len(inp.name) for inp in inputs)
        for inp, top in zip(inputs, tops, strict=True):
            print(f"{inp.name:<{width}}  " + "  ".join(f"{t['name']} {t['prob']:.3f}" for t in top))
    sys.stdout.flush()
    return EXIT_OK
