"""The GPU path: which GPU a rank drives, and the allreduce through NCCL on the device.

Rank r of a host uses GPU r (its local rank); NCCL refuses two ranks on one GPU, so a host needs
as many GPUs as ranks. The NCCL communicator is made from a unique id that rank 0 draws and MPI
broadcasts; after that the gradients never leave the GPUs (NVLink or the network, as NCCL sees fit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def device_for_rank(local_rank: int, local_size: int, n_gpus: int) -> int:
    """The GPU index of the rank with ``local_rank`` of ``local_size`` on a host with ``n_gpus`` GPUs."""
    if local_size > n_gpus:
        raise ValueError(f"{local_size} ranks on this host but {n_gpus} GPU(s) visible: NCCL needs one GPU "
                         f"per rank (start at most {n_gpus} per host, e.g. mpiexec -ppn {max(n_gpus, 1)})")
    return local_rank


def _cupy_nccl() -> Any:
    from cupy.cuda import nccl

    if not nccl.available:
        raise RuntimeError("NCCL is not installed for CuPy: pip install nvidia-nccl-cu12 (or -cu13)")
    return nccl


def _current_stream() -> int:
    import cupy

    return int(cupy.cuda.get_current_stream().ptr)


class NcclComm:
    """An NCCL communicator over the ranks of ``comm`` (an :class:`xpnet.dist.comm.MPIComm`).

    ``nccl`` and ``stream`` default to CuPy's NCCL binding and the current CUDA stream; tests pass
    stand-ins. Collectives are enqueued on the stream, in order with the step's kernels: no sync.
    """

    def __init__(self, comm: Any, nccl: Any = None, stream: Callable[[], int] = _current_stream) -> None:
        self._nccl = _cupy_nccl() if nccl is None else nccl
        uid = self._nccl.get_unique_id() if comm.rank == 0 else None
        uid = comm.bcast_obj(uid)  # the only thing NCCL needs from MPI
        self._comm = self._nccl.NcclCommunicator(comm.size, uid, comm.rank)
        self._stream = stream
        self._dtypes = {"f": self._nccl.NCCL_FLOAT32, "d": self._nccl.NCCL_FLOAT64}

    def _args(self, buf: Any) -> tuple[int, int, int]:
        char = buf.dtype.char
        if char not in self._dtypes or not buf.flags.c_contiguous:
            raise TypeError(f"NCCL collectives here take contiguous float32/float64 arrays, got {buf.dtype}")
        return int(buf.data.ptr), int(buf.size), self._dtypes[char]

    def allreduce_(self, buf: Any) -> None:
        ptr, count, dtype = self._args(buf)
        self._comm.allReduce(ptr, ptr, count, dtype, self._nccl.NCCL_SUM, self._stream())

    def bcast_(self, buf: Any) -> None:
        ptr, count, dtype = self._args(buf)
        self._comm.broadcast(ptr, ptr, count, dtype, 0, self._stream())
