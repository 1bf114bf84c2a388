"""Load a trained model: a run folder or a checkpoint back into the book's net, ready to predict.

A run folder holds ``summary.json`` and ``checkpoint.npz`` (and, where the run kept the best
validation weights, ``best.npz``). The checkpoint stores the run's config, so the very net that
was trained is rebuilt and its weights and BatchNorm running statistics are loaded onto the device.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import backend
from xpnet.data.sources import SPECS
from xpnet.train import checkpoint as ckpt
from xpnet.train.config import ConfigError, RunConfig, build_net

#: In a run folder, the weights to use, first found first: the best validation weights a run kept
#: (its final model and test evaluation use them), else the last checkpoint.
WEIGHT_FILES = ("best.npz", ckpt.FILENAME)


class ModelError(ValueError):
    """The path is not an xpnet model (or not one this xpnet can rebuild): a one-line reason."""


@dataclass
class LoadedModel:
    """A trained net and what is known about it."""

    net: Any
    config: RunConfig
    checkpoint: Path  # the .npz the weights came from
    run_dir: Path  # the folder holding it (the run's folder)
    data: dict[str, Any] = field(default_factory=dict)  # the run's data info (name, source, sizes)
    summary: dict[str, Any] | None = None  # the run's summary.json, when there is a readable one

    @property
    def dataset(self) -> str:
        return self.config.dataset

    @property
    def classes(self) -> list[str]:
        """Class names as the run recorded them (folder names, CIFAR-10's, an .npz's class_names); for runs
        from before they were recorded, Fashion-MNIST's garments or the digits "0".."9" for MNIST."""
        stored = self.data.get("classes")
        if isinstance(stored, list) and stored:
            return [str(c) for c in stored]
        spec = SPECS.get(self.config.dataset)
        names = list(spec.classes) if spec is not None and spec.classes else []
        return names if len(names) == 10 else [str(i) for i in range(10)]

    @property
    def kind(self) -> str:
        """How the training data was made: 'mnist', 'fashion-mnist', 'cifar10', 'folder' or 'npz'."""
        return str(self.data.get("kind") or self.config.dataset)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One training sample's shape as stored: (28, 28) for MNIST, (C, H, W) for pictures, (D,) for vectors."""
        return stored_sample_shape(self.data)

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) of the training images, None when the data were vectors."""
        s = self.sample_shape
        return (s[0], s[1], s[2]) if len(s) == 3 else (1, s[0], s[1]) if len(s) == 2 else None

    @property
    def flat_input(self) -> bool:
        """True for MLPs, which take (N, D) (784 for MNIST); conv nets take (N, C, H, W)."""
        return len(tuple(self.net.input_shape)) == 1

    @property
    def run_test_acc(self) -> float | None:
        """The test accuracy the run reported for these weights (summary.json results.test_acc)."""
        results = (self.summary or {}).get("results") or {}
        value = results.get("test_acc")
        return float(value) if isinstance(value, int | float) else None


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The weights file for ``path``: the file itself, or in a run folder :data:`WEIGHT_FILES` in order."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such run folder or checkpoint")
    if p.is_dir():
        for name in WEIGHT_FILES:
            if (p / name).is_file():
                return p / name
        raise ModelError(f"{p} is a folder without {' or '.join(WEIGHT_FILES)}: not an xpnet run")
    return p


def load_model(path: str | os.PathLike[str], device: str | backend.Device = "auto") -> LoadedModel:
    """Rebuild the net of a run folder or checkpoint on ``device``; every problem is one ModelError."""
    file = find_checkpoint(path)
    arrays = _read(file)
    try:
        stored = ckpt.read_config(arrays)
        cfg = RunConfig.from_dict(dict(stored["run"])).validate()
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{file} holds a config this xpnet cannot rebuild a net from ({exc})") from None
    dev = device if isinstance(device, backend.Device) else backend.device(device)
    data = dict(stored.get("data") or {})
    try:
        net = build_net(cfg, dev, stored_sample_shape(data), len(data.get("classes") or []) or 10)
    except (ConfigError, ValueError) as exc:
        raise ModelError(f"{file}: cannot rebuild its net ({exc})") from None
    try:
        net.load_state_dict(ckpt.section(arrays, "net"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{file}: the weights do not fit its own config ({exc})") from None
    run_dir = file.parent
    return LoadedModel(net=net, config=cfg, checkpoint=file, run_dir=run_dir, data=data,
                       summary=_summary(run_dir, file))


def stored_sample_shape(data: dict[str, Any]) -> tuple[int, ...]:
    """The sample shape a run recorded (runs from before it was recorded trained on 28x28 MNIST images)."""
    shape = data.get("sample_shape")
    return tuple(int(s) for s in shape) if isinstance(shape, list) and shape else (28, 28)


def _read(file: Path) -> dict[str, Any]:
    """A checkpoint's arrays. A weights-only file beside a run's checkpoint.npz (``net/*`` entries, as a
    best-weights file may be) takes the run's config from that checkpoint."""
    try:
        return ckpt.load(file)
    except ckpt.CheckpointError as exc:
        sibling = file.parent / ckpt.FILENAME
        if file.name == ckpt.FILENAME or not sibling.is_file():
            raise ModelError(str(exc)) from None
        try:
            with np.load(file, allow_pickle=False) as z:
                weights = {k: z[k] for k in z.files if k.startswith("net/")}
            base = ckpt.load(sibling)
        except Exception:  # unreadable either way: the first reason is the one to give
            raise ModelError(str(exc)) from None
        if not weights:
            raise ModelError(str(exc)) from None
        return {**{k: v for k, v in base.items() if not k.startswith("net/")}, **weights}


def load(path: str | os.PathLike[str], device: str | backend.Device = "auto") -> Any:
    """The trained net of a run folder or checkpoint, on ``device``, ready for ``net.predict(x)``.

    ``predict`` evaluates (BatchNorm uses the running statistics, dropout is off) unless
    asked for ``train_flg=True``, and returns logits as in the book; softmax gives probabilities.
    """
    return load_model(path, device).net


def _summary(run_dir: Path, file: Path) -> dict[str, Any] | None:
    """The run's summary.json when its numbers are about ``file`` (the weights the run ended with), else None."""
    try:
        if find_checkpoint(run_dir).resolve() != file.resolve():
            return None  # e.g. checkpoint.npz of a run whose results come from best.npz
        with open(run_dir / "summary.json", encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None
