"""A sampler whose draws depend on (--seed, trial number) only, whichever process runs the trial.

Optuna's samplers keep one random stream per process. Several processes started
with the same seed (K local workers, the same command on many machines, a study
continued later) would then draw the same trials. Here each trial gets a fresh
sampler seeded from the search seed and the trial's number, which the storage
hands out once per study: no two trials share a stream, and a search with one
worker is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler


class PerTrialSeed(BaseSampler):
    """Delegate to ``make(seed)`` built anew before every trial, seeded by (``seed``, trial number)."""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self.make, self.seed = make, int(seed)
        self.inner = make(self.seed)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        state = np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0]
        self.inner = self.make(int(state))
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: Any,
                    values: Any) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
