"""``xpnet COMMAND [ARGS]``: one git-style front door to every xpnet tool (also ``python -m xpnet``).

The command line is this package, a floor above the library: one module per command
(``train``, ``eval``, ``predict``, ``export``, ``search``, ``doctor``), each turning flags into
calls of the library (``xpnet.train``, ``xpnet.model_io``, ``xpnet.search``, ``xpnet.diagnosis``);
the train flags themselves live one floor lower, in :mod:`xpnet.runflags`, because the search
builds its trials from them too.

Every command is one row of :data:`COMMANDS`: its name, where its ``main(argv) -> int`` lives, and
the one line ``xpnet --help`` shows. A new command (e.g. ``search``) is one more row; its module is
imported only when that command runs, so ``xpnet --help`` stays fast and a missing optional
dependency of one command never breaks another.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

PROG = "xpnet"


class Command(NamedTuple):
    target: str  # "module:function"; the function takes argv (list of str) and returns the exit status
    summary: str  # one line for `xpnet --help`


#: The commands, in the order `xpnet --help` lists them.
COMMANDS: dict[str, Command] = {
    "train": Command("xpnet.cli.train:main", "train one of the book's nets on MNIST or Fashion-MNIST (= xpnet-train)"),
    "eval": Command("xpnet.cli.eval:main",
                    "test accuracy, per-class accuracy, confusion matrix and mistakes of a trained model"),
    "predict": Command("xpnet.cli.predict:main",
                       "classify your own images (PNG/JPEG/...) or .npy arrays with a trained model"),
    "export": Command("xpnet.cli.export:main", "write a trained model as ONNX or as plain npz weights"),
    "doctor": Command("xpnet.cli.doctor:main", "what xpnet can run on here, and why CUDA cannot (= xpnet-doctor)"),
    "search": Command("xpnet.cli.search:main", "search hyper-parameters with Optuna, judged on validation data"),
}

EXIT_USAGE = 2


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [args]   ({PROG} <command> --help for a command's flags)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += ["", f"Examples: {PROG} train --epochs 5 · {PROG} eval runs/<run> · "
              f"{PROG} predict runs/<run> digit.png · {PROG} export runs/<run> --format onnx -o model.onnx"]
    return "\n".join(lines)


def resolve(name: str) -> Callable[[list[str]], int | None]:
    """The ``main`` function of command ``name`` (imports its module now)."""
    module, _, func = COMMANDS[name].target.partition(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xpnet`` and ``python -m xpnet``: run one command, return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # like git: the usage, and a status that says no command ran
        print(usage())
        return EXIT_USAGE
    first, rest = args[0], args[1:]
    if first in ("-h", "--help", "help"):
        if first == "help" and rest and rest[0] in COMMANDS:  # `xpnet help eval` = `xpnet eval --help`
            return _run(rest[0], ["--help"])
        print(usage())
        return 0
    if first in ("-V", "--version"):
        from xpnet import __version__

        print(f"{PROG} {__version__}")
        return 0
    if first not in COMMANDS:
        close = difflib.get_close_matches(first, COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"{PROG}: {first!r} is not a command{hint} (commands: {', '.join(COMMANDS)}; see {PROG} --help)",
              file=sys.stderr)
        return EXIT_USAGE
    return _run(first, rest)


def _run(name: str, argv: list[str]) -> int:
    try:
        return int(resolve(name)(argv) or 0)
    except SystemExit as exc:  # argparse's --help (0) and usage errors (2)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
