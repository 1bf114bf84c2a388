"""`xpnet train`'s own flag parser, used by the search so every train flag works unchanged.

The search never lists the trainer's flags: a trial is a train command line
(the fixed flags the user gave plus the flags the trial drew), parsed by
``xpnet.cli.build_parser()`` into a :class:`RunConfig`. New train flags therefore
reach the search without any change here.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from collections.abc import Sequence
from typing import Any

from xpnet.train.config import ConfigError, RunConfig

#: The command a person runs to reproduce a trial.
TRAIN_COMMAND = "xpnet train"


class FlagError(ValueError):
    """A train flag the trainer's parser refuses (the message is argparse's, one line)."""


class TrainFlags:
    """The trainer's parser, raising FlagError instead of printing usage and exiting."""

    def __init__(self) -> None:
        from xpnet import cli

        parser = cli.build_parser()
        parser.allow_abbrev = False  # --hid must not silently mean --hidden in a space file

        def error(message: str) -> Any:
            raise FlagError(message)

        parser.error = error  # type: ignore[method-assign]
        self.parser = parser

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        return self.parser.parse_args(list(argv))

    def is_switch(self, name: str) -> bool:
        """Whether ``--name`` takes no value (--batchnorm); FlagError if the trainer has no such flag."""
        try:
            self.parse([f"--{name}"])
        except FlagError as exc:
            if "expected one argument" in str(exc):
                return False
            raise FlagError(f"--{name} is not an xpnet train flag") from None
        return True

    def config(self, argv: Sequence[str]) -> RunConfig:
        """The RunConfig a train command line describes (ConfigError if its settings do not fit)."""
        args = self.parse(argv)
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
                 if getattr(args, f.name, None) is not None}
        return RunConfig(**given).validate()

    def given(self, argv: Sequence[str]) -> list[str]:
        """The flag names (without --) that ``argv`` sets."""
        return [a[2:].split("=", 1)[0] for a in argv if a.startswith("--")]


def command(argv: Sequence[str]) -> str:
    """The shell command that runs ``xpnet train`` with ``argv``."""
    return " ".join([TRAIN_COMMAND, *(shlex.quote(a) for a in argv)])


__all__ = ["ConfigError", "FlagError", "TRAIN_COMMAND", "TrainFlags", "command"]
