"""The communicator: MPI (mpi4py) when a launcher started several ranks, else one plain process.

Nothing here imports mpi4py unless ``mpiexec`` (or ``srun``, ``mpirun``) started more than one rank:
a one-rank run, or a machine without mpi4py, trains exactly as before, and pays no MPI start-up.
Collectives work on the device's arrays, in place: host arrays go through MPI, CuPy arrays
through NCCL on the GPU (:mod:`xpnet.dist.nccl`), never through host memory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xpnet.backend import device_of, to_device, to_host
from xpnet.dist.nccl import NcclComm

#: What MPI launchers tell their processes: the rank count and this process's rank
#: (MPICH/Intel MPI/Slurm's PMI, Open MPI, MVAPICH). XPNET_MPI=1 forces MPI where none of these is set.
SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


class MPIUnavailable(RuntimeError):
    """A launcher started several ranks but mpi4py cannot be imported: every rank would train alone."""


def _first_int(env: Mapping[str, str], names: Sequence[str], default: int) -> int:
    for name in names:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launched_size(env: Mapping[str, str] = os.environ) -> int:
    """How many ranks the launcher says it started (1 when no launcher did)."""
    return _first_int(env, SIZE_VARS, 1)


def launched_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's rank as the launcher says it (0 when no launcher did); usable before MPI starts."""
    return _first_int(env, RANK_VARS, 0)


class Solo:
    """One process: rank 0 of 1, and every collective leaves its data as it is."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    library = "none"

    def allreduce_(self, buf: Any) -> None: ...

    def bcast_(self, buf: Any) -> None: ...

    def sum(self, values: Sequence[float]) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def bcast_obj(self, obj: Any) -> Any:
        return obj

    def allgather_obj(self, obj: Any) -> list[Any]:
        return [obj]

    def abort(self, code: int) -> None:
        raise SystemExit(code)


class MPIComm:
    """MPI_COMM_WORLD (or ``comm``) through mpi4py, with the rank's place on its host."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this host: GPU r for local rank r
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.library = " ".join(MPI.Get_library_version().splitlines()[0].split())
        self._nccl: NcclComm | None = None

    def allreduce_(self, buf: Any) -> None:
        """Sum the 1-D array ``buf`` over every rank, in place."""
        if device_of(buf).backend == "cupy":
            self._gpu().allreduce_(buf)
            return
        host = _host_copy(buf)
        self.comm.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
        _write_back(buf, host)

    def bcast_(self, buf: Any) -> None:
        """Overwrite ``buf`` with rank 0's, in place."""
        if device_of(buf).backend == "cupy":
            self._gpu().bcast_(buf)
            return
        host = _host_copy(buf)
        self.comm.Bcast(host, root=0)
        _write_back(buf, host)

    def sum(self, values: Sequence[float]) -> np.ndarray:
        """Host numbers (counts) summed over the ranks, as float64."""
        out = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, out, op=self._mpi.SUM)
        return out

    def bcast_obj(self, obj: Any) -> Any:
        """Rank 0's (small, picklable) object, on every rank."""
        return self.comm.bcast(obj, root=0)

    def allgather_obj(self, obj: Any) -> list[Any]:
        """Every rank's (small, picklable) object, in rank order, on every rank."""
        return self.comm.allgather(obj)

    def abort(self, code: int) -> None:
        """End every rank now (one failed; the others would wait for it in the next collective)."""
        self.comm.Abort(code)

    def _gpu(self) -> NcclComm:
        if self._nccl is None:
            self._nccl = NcclComm(self)
        return self._nccl


def _host_copy(buf: Any) -> np.ndarray:
    """The host array MPI reads and writes: ``buf`` itself for a NumPy array, else a copy."""
    if isinstance(buf, np.ndarray) and buf.flags.c_contiguous and buf.flags.writeable:
        return buf
    return np.array(to_host(buf), copy=True, order="C")


def _write_back(buf: Any, host: np.ndarray) -> None:
    if host is not buf:
        buf[...] = to_device(host, device_of(buf), dtype=buf.dtype)


_WORLD: Solo | MPIComm | None = None


def world(env: Mapping[str, str] = os.environ) -> Solo | MPIComm:
    """The communicator of this process (made once): MPI when launched as one of several ranks."""
    global _WORLD
    if _WORLD is None:
        size = launched_size(env)
        if size <= 1 and env.get("XPNET_MPI", "") != "1":
            _WORLD = Solo()
        else:
            try:
                import mpi4py  # noqa: F401
            except ImportError:
                raise MPIUnavailable(f"started as one of {size} MPI ranks, but mpi4py is not installed "
                                     f"(pip install 'xpnet[mpi]')") from None
            _WORLD = MPIComm()
    return _WORLD
