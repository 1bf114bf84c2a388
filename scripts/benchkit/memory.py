"""Peak memory a training run adds: the host's resident-set high-water mark, or the CUDA memory pool."""

from __future__ import annotations

from xpnet import backend

from .runners import Runner, TorchRunner


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def measure_memory(runner: Runner, steps: int, dev: backend.Device) -> float:
    """MiB a training run adds on top of model + data: the peak over a warm-up and ``steps`` steps."""
    if dev.backend == "cupy" or (isinstance(runner, TorchRunner) and runner.device != "cpu"):
        return _device_memory(runner, steps)
    import resource

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak-RSS mark (Linux >= 4.0), so the delta is this run's alone
        before = _rss_kib("VmRSS")
        runner.run(1 + steps)
        return (_rss_kib("VmHWM") - before) / 1024
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        runner.run(1 + steps)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def _device_memory(runner: Runner, steps: int) -> float:
    if isinstance(runner, TorchRunner):
        torch = runner.torch
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        runner.run(1 + steps)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    import cupy

    pool = cupy.get_default_memory_pool()
    runner.dev.synchronize()
    pool.free_all_blocks()  # cached free blocks would count as use: start with total == used
    before = pool.total_bytes()
    runner.run(1 + steps)
    # The pool only grows when what is in use does not fit, so its total now is the run's peak (plus block
    # rounding): total - before is what the run added at its peak, not counting blocks cached before it.
    return (pool.total_bytes() - before) / 2**20

