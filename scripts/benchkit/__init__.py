"""The pieces of ``scripts/bench.py``, one module per thing it times (issue 22: one concept per module).

- :mod:`runners`: the configs (nets and batches), the xpnet and PyTorch runners, FLOPs per sample;
- :mod:`floor`: a step's floor (its products timed alone, its element-wise traffic at the copy bandwidth);
- :mod:`machine`: the machine line, thread counts and the float32 GEMM rate (the compute ceiling);
- :mod:`memory`: the peak memory a run adds (host RSS or the CUDA pool);
- :mod:`workers`: the fresh child processes that time or measure one runner each;
- :mod:`steps`: per-step timing of each config, xpnet against PyTorch, and its table;
- :mod:`e2e`: ``--e2e``, whole training processes against ``scripts/torch_twin.py``;
- :mod:`parts`: ``--breakdown``, xpnet's step split into its layers, loss and update.
- :mod:`ranks`: ``--ranks N``, data-parallel steps on 1 rank x T threads and on N ranks x T/N.

Each module imports only the ones listed above it; ``scripts/bench.py`` holds the flags and ``main``.
"""


class BenchError(Exception):
    """A problem with the request (bad flag value, unusable device, missing data): one line, exit 2."""
