"""The search space: which `xpnet train` flags a trial draws, and from what distribution.

A space is a mapping from a train flag (``lr``, ``weight-decay``, ``hidden`` ...) to a
:class:`Param`. It comes from :func:`default_space` (one per model, after the book's
ch. 6.5 recipe: learning rate and weight decay log-uniform) or from a TOML file::

    [lr]
    kind = "log-uniform"     # uniform | log-uniform | int | log-int | choice
    low = 1e-4
    high = 1e-1

    [hidden]
    choices = ["100", "256,128"]   # kind "choice" may be left out

Every value a space can produce is checked against the trainer's own flag parser
before the first trial, so a trial never fails on a flag typo.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("uniform", "log-uniform", "int", "log-int", "choice")
#: Train flags a space may not draw: they decide what the search is judged on or where it runs.
FIXED = ("dataset", "data-dir", "val-split", "test-split", "image-size", "channels", "strict-images", "seed", "device",
         "out", "resume", "quiet", "model")

Value = bool | int | float | str


class SpaceError(ValueError):
    """A space that cannot be searched (the message names the file and the flag)."""


@dataclass(frozen=True)
class Param:
    """One searched flag: a range (``low``..``high``) or a list of ``choices``."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Value, ...] = ()

    def suggest(self, trial: Any, name: str) -> Value:
        """Draw this flag's value for an Optuna trial."""
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind in ("int", "log-int"):
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.kind == "log-int")
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.kind == "log-uniform")

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"kind": "choice", "choices": list(self.choices)}
        return {"kind": self.kind, "low": self.low, "high": self.high}

    def describe(self) -> str:
        if self.kind == "choice":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        return f"{self.kind} [{self.low:g}, {self.high:g}]"


Space = dict[str, Param]

#: Per model: what the book tunes (lr, weight decay) plus the knobs that model has.
_LR = Param("log-uniform", 1e-4, 1e-1)
_WD = Param("log-uniform", 1e-8, 1e-3)
_BATCH = Param("choice", choices=(50, 100, 200))
_OPT = Param("choice", choices=("sgd", "momentum", "adam"))
DEFAULT_SPACES: dict[str, Space] = {
    "mlp": {"lr": _LR, "weight-decay": _WD, "dropout": Param("uniform", 0.0, 0.5),
            "hidden": Param("choice", choices=("100", "256,128", "512,256", "100,100,100")),
            "batch-size": _BATCH, "optimizer": _OPT},
    # The book's TwoLayerNet has no weight decay and no dropout.
    "two-layer": {"lr": _LR, "hidden": Param("choice", choices=("50", "100", "200")), "batch-size": _BATCH,
                  "optimizer": _OPT},
    "convnet": {"lr": _LR, "weight-decay": _WD, "hidden": Param("choice", choices=("50", "100", "200")),
                "batch-size": _BATCH, "optimizer": _OPT},
    "deep-convnet": {"lr": Param("log-uniform", 1e-4, 1e-2), "weight-decay": _WD,
                     "hidden": Param("choice", choices=("50", "100")), "batch-size": _BATCH,
                     "optimizer": Param("choice", choices=("momentum", "adam"))},
}


def flag_name(key: str) -> str:
    """``--weight_decay`` / ``weight_decay`` / ``weight-decay`` → ``weight-decay``."""
    return key.strip().lstrip("-").replace("_", "-")


def default_space(model: str, given: Sequence[str] = ()) -> Space:
    """The model's default space without the flags the user fixed on the command line."""
    fixed = {flag_name(g) for g in given}
    return {k: p for k, p in DEFAULT_SPACES[model].items() if k not in fixed}


def to_argv(space: Mapping[str, Param], params: Mapping[str, Value], is_switch: Callable[[str], bool]
            ) -> list[str]:
    """A trial's params as train flags (switches such as --batchnorm appear only when true)."""
    argv: list[str] = []
    for name in space:
        value = params[name]
        if is_switch(name):
            argv += [f"--{name}"] if _truthy(value) else []
        else:
            argv += [f"--{name}", format_value(value)]
    return argv


def format_value(value: Value) -> str:
    """A flag argument that parses back to exactly ``value`` (repr keeps every digit of a float)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _truthy(value: Value) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"))


def signature(space: Mapping[str, Param]) -> str:
    """A canonical text of the space: a study remembers it and refuses another one."""
    return json.dumps({k: space[k].to_dict() for k in sorted(space)}, sort_keys=True)


def load(path: str | Path) -> Space:
    """Read a TOML space file; every problem is a SpaceError naming the file and the entry."""
    path = Path(path)
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise SpaceError(f"--space {path}: reading TOML needs Python 3.11 or later") from None
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise SpaceError(f"--space {path}: no such file") from None
    except OSError as exc:
        raise SpaceError(f"--space {path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"--space {path}: not valid TOML ({exc})") from None
    if not raw:
        raise SpaceError(f"--space {path}: the file names no flags to search")
    space: Space = {}
    for key, entry in raw.items():
        name = flag_name(key)
        where = f"--space {path}: [{key}]"
        if not isinstance(entry, dict):
            raise SpaceError(f"{where} must be a table such as [{key}] kind = \"log-uniform\" low = ... high = ...")
        space[name] = _param(where, entry)
    return space


def _param(where: str, entry: Mapping[str, Any]) -> Param:
    kind = entry.get("kind", "choice" if "choices" in entry else None)
    unknown = sorted(set(entry) - {"kind", "low", "high", "choices"})
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r} (expected kind, low, high or choices)")
    if kind not in KINDS:
        raise SpaceError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "choice":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: a choice needs a non-empty list: choices = [...]")
        if any(not isinstance(c, bool | int | float | str) for c in choices):
            raise SpaceError(f"{where}: choices must be numbers, strings or booleans")
        if len(set(map(json.dumps, choices))) != len(choices):
            raise SpaceError(f"{where}: choices repeat a value")
        return Param("choice", choices=tuple(choices))
    if "choices" in entry:
        raise SpaceError(f"{where}: kind {kind!r} takes low and high, not choices")
    low, high = entry.get("low"), entry.get("high")
    for what, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SpaceError(f"{where}: {what} must be a number, got {v!r}")
    if kind in ("int", "log-int") and (low != int(low) or high != int(high)):
        raise SpaceError(f"{where}: kind {kind!r} needs whole numbers, got low {low!r}, high {high!r}")
    if not low < high:
        raise SpaceError(f"{where}: low {low!r} must be less than high {high!r}")
    if kind.startswith("log") and low <= 0:
        raise SpaceError(f"{where}: kind {kind!r} needs low > 0, got {low!r}")
    return Param(kind, float(low) if kind in ("uniform", "log-uniform") else int(low),
                 float(high) if kind in ("uniform", "log-uniform") else int(high))


def check(space: Mapping[str, Param], parse: Callable[[list[str]], Any],
          is_switch: Callable[[str], bool], source: str) -> None:
    """Refuse flags the trainer does not have, flags a space may not draw, and values its parser rejects.

    ``parse`` is the trainer's parser (raising SpaceError-compatible ValueError on bad input).
    """
    for name, p in space.items():
        where = f"{source}: --{name}"
        if name in FIXED:
            raise SpaceError(f"{where} cannot be searched (the search fixes it; pass it as a flag instead)")
        try:
            switch = is_switch(name)
        except ValueError:
            raise SpaceError(f"{source}: --{name} is not an xpnet train flag") from None
        if switch:
            if p.kind != "choice" or any(not isinstance(c, bool) for c in p.choices):
                raise SpaceError(f"{where} is an on/off switch: use choices = [true, false]")
            continue
        values: list[Value] = list(p.choices) if p.kind == "choice" else [p.low, p.high]
        for v in values:
            try:
                parse([f"--{name}", format_value(v)])
            except ValueError as exc:
                raise SpaceError(f"{where}: value {v!r} is rejected by xpnet train ({exc})") from None
