"""A seeded, stratified train/test split for data that comes without a test set.

Each class gives the same fraction of its samples to the test set (at least one where it has
two or more), so a small or unbalanced folder still tests every class. The seed is fixed, not
the run's: the test set is a property of the data, and ``xpnet eval`` finds the same one later.
"""

from __future__ import annotations

import numpy as np

SPLIT_SEED = 20241204


def stratified_split(t: np.ndarray, fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted index arrays ``(train, test)`` holding out ``fraction`` of every class of labels ``t``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the test split must be between 0 and 1 (exclusive), got {fraction}")
    gen = np.random.Generator(np.random.PCG64(seed))
    train, test = [], []
    for c in np.unique(t):
        idx = gen.permutation(np.flatnonzero(t == c))
        n_test = 0 if idx.size < 2 else min(idx.size - 1, max(1, round(idx.size * fraction)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
