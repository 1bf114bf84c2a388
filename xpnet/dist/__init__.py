"""Data-parallel training over MPI: one model, many processes (and GPUs, and machines).

``mpiexec -n N xpnet train ...`` starts N copies of the same run; each rank takes its slice of every
global batch, and one in-place allreduce of the flat gradient buffer per step keeps the N copies of
the weights identical. MPI (mpi4py) launches and connects the ranks; on GPUs the allreduce goes
through NCCL on the device.

- :mod:`.comm`: the communicator (MPI, or a one-process stand-in where there is no MPI launcher);
- :mod:`.shard`: which part of a global batch a rank takes, and its dropout seed;
- :mod:`.nccl`: the GPU allreduce, and which GPU a rank uses;
- :mod:`.parallel`: :class:`~xpnet.dist.parallel.DataParallel`, what the Trainer calls.
"""
