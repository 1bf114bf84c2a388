"""Which samples of a global batch each rank takes, and the per-rank seeds.

Every rank walks the same seeded permutation of the training set and cuts each global batch into
``size`` contiguous parts that differ in length by one at most, so N ranks see exactly the samples
one process would, batch by batch. A rank's gradient is weighted by its part's share of the batch.
"""

from __future__ import annotations

import numpy as np


def span(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """The part ``[a, b)`` of the global batch ``[lo, hi)`` that ``rank`` of ``size`` takes."""
    n = hi - lo
    return lo + n * rank // size, lo + n * (rank + 1) // size


def check_batches(num_samples: int, batch_size: int, drop_last: bool, size: int) -> None:
    """Raise ValueError if some training batch would leave a rank without a sample.

    An empty part has no mean loss and no batch statistics, so every batch, the last short one
    included, needs at least one sample per rank.
    """
    rest = num_samples % batch_size
    smallest = batch_size if drop_last or rest == 0 else rest
    if smallest < size:
        which = "a batch" if smallest == batch_size else f"the epoch's last batch ({num_samples} samples)"
        raise ValueError(f"--batch-size {batch_size}: {which} has {smallest} sample(s) for {size} ranks; "
                         f"every rank needs at least one (change --batch-size or --limit-train)")


def rank_seed(seed: int, rank: int) -> int:
    """The dropout seed of ``rank``: rank 0 keeps ``seed`` (one rank runs as one process), the rest
    get seeds drawn from (seed, rank), so their masks differ."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0] >> 1)
