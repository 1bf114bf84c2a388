"""Learning-rate schedules: each one's values, step by step, and what it refuses."""

from __future__ import annotations

import math

import pytest

from xpnet.train import schedules
from xpnet.train.schedules import Constant, Cosine, StepDecay


def values(s: schedules.Schedule) -> list[float]:
    return [s(i) for i in range(s.total_steps)]


def test_constant_is_the_lr_at_every_step() -> None:
    s = Constant(0.05, steps_per_epoch=4, epochs=3)
    assert values(s) == [0.05] * 12


def test_linear_warmup_then_constant() -> None:
    s = Constant(0.1, steps_per_epoch=4, epochs=3, warmup_epochs=1)
    assert values(s)[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert values(s)[4:] == [0.1] * 8


def test_step_decay_multiplies_after_each_milestone_epoch() -> None:
    s = StepDecay(1.0, steps_per_epoch=3, epochs=5, steps=(2, 4), gamma=0.5)
    assert values(s) == pytest.approx([1.0] * 6 + [0.5] * 6 + [0.25] * 3)
    with_warmup = StepDecay(1.0, steps_per_epoch=2, epochs=4, steps=(2,), gamma=0.1, warmup_epochs=1)
    assert values(with_warmup) == pytest.approx([0.5, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1])


def test_cosine_halves_at_the_midpoint_and_ends_near_zero() -> None:
    s = Cosine(0.2, steps_per_epoch=5, epochs=2)
    v = values(s)
    assert v[0] == 0.2
    assert v[5] == pytest.approx(0.1)  # halfway through the 10 steps
    want = [0.1 * (1 + math.cos(math.pi * i / 10)) for i in range(10)]
    assert v == pytest.approx(want)
    assert all(a > b for a, b in zip(v, v[1:], strict=False)) and v[-1] > 0
    assert s(10) == 0.0 and s(1000) == 0.0  # past the end: the curve's floor


def test_cosine_starts_after_the_warmup() -> None:
    s = Cosine(1.0, steps_per_epoch=2, epochs=3, warmup_epochs=1)
    v = values(s)
    assert v[:2] == pytest.approx([0.5, 1.0])
    assert v[2:] == pytest.approx([0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(4)])


def test_state_dict_is_the_settings_and_create_builds_each() -> None:
    s = schedules.create("step", 0.01, steps_per_epoch=10, epochs=20, steps=[5, 15], gamma=0.2, warmup_epochs=1)
    assert isinstance(s, StepDecay)
    assert s.state_dict() == {"name": "step", "lr": 0.01, "steps_per_epoch": 10, "epochs": 20,
                              "warmup_epochs": 1, "steps": [5, 15], "gamma": 0.2}
    assert isinstance(schedules.create("cosine", 0.1, steps_per_epoch=1, epochs=2), Cosine)
    assert isinstance(schedules.create("constant", 0.1, steps_per_epoch=1, epochs=2), Constant)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "linear"}, "unknown schedule"),
    ({"name": "step"}, "at least one milestone"),
    ({"name": "step", "steps": [5, 3]}, "increasing"),
    ({"name": "step", "steps": [0, 3]}, "increasing"),
    ({"name": "step", "steps": [3], "gamma": 0.0}, "gamma must be a positive number"),
    ({"name": "cosine", "warmup_epochs": 10}, "warmup_epochs must be in"),
    ({"name": "cosine", "lr": -1.0}, "lr must be a positive number"),
])
def test_bad_settings_are_named(kwargs: dict, message: str) -> None:
    args = {"lr": 0.1, "steps_per_epoch": 5, "epochs": 10, **kwargs}
    name = args.pop("name")
    lr = args.pop("lr")
    with pytest.raises(ValueError, match=message):
        schedules.create(name, lr, **args)
