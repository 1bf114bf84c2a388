"""Data-parallel training (xpnet.dist): the pieces on their own, then 2 ranks under mpiexec against 1 process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.dist_worker import build, state_of
from xpnet import backend, nets
from xpnet.accel.flat import SPARE
from xpnet.dist import comm as dcomm
from xpnet.dist.launch import Launch
from xpnet.dist.nccl import NcclComm, device_for_rank
from xpnet.dist.parallel import DataParallel
from xpnet.dist.shard import check_batches, rank_seed, span
from xpnet.dist.timing import time_steps

ROOT = Path(__file__).resolve().parents[1]
MPIEXEC = Path(sys.executable).parent / "mpiexec"


# --- the pieces ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("lo", "hi", "size"), [(0, 25, 2), (100, 107, 2), (0, 10, 3), (5, 6, 4), (0, 0, 2)])
def test_span_cuts_a_batch_into_near_equal_parts_in_order(lo: int, hi: int, size: int) -> None:
    parts = [span(lo, hi, r, size) for r in range(size)]
    assert parts[0][0] == lo and parts[-1][1] == hi
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    lengths = [b - a for a, b in parts]
    assert max(lengths) - min(lengths) <= 1


def test_check_batches_refuses_a_rank_without_samples() -> None:
    check_batches(107, 25, False, 2)  # last batch of 7: fine
    check_batches(101, 25, True, 2)  # the short batch is dropped
    with pytest.raises(ValueError, match="last batch .* 1 sample"):
        check_batches(101, 25, False, 2)
    with pytest.raises(ValueError, match="--batch-size 2: a batch has 2 sample"):
        check_batches(100, 2, False, 3)


def test_rank_seed_keeps_rank_0_and_differs_per_rank() -> None:
    seeds = [rank_seed(7, r) for r in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert seeds == [rank_seed(7, r) for r in range(4)]  # a function of (seed, rank) alone
    assert all(0 <= s < 2**63 for s in seeds)


def test_launcher_environment_is_read() -> None:
    assert dcomm.launched_size({}) == 1 and dcomm.launched_rank({}) == 0
    assert dcomm.launched_size({"PMI_SIZE": "4", "PMI_RANK": "3"}) == 4
    assert dcomm.launched_rank({"OMPI_COMM_WORLD_RANK": "2"}) == 2


def test_world_is_one_process_without_a_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dcomm, "_WORLD", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # would raise if it were imported
    w = dcomm.world({})
    assert isinstance(w, dcomm.Solo) and (w.rank, w.size) == (0, 1)


def test_world_under_a_launcher_without_mpi4py_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dcomm, "_WORLD", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(dcomm.MPIUnavailable, match="one of 2 MPI ranks.*xpnet\\[mpi\\]"):
        dcomm.world({"PMI_SIZE": "2"})


def test_device_for_rank_one_gpu_per_local_rank() -> None:
    assert [device_for_rank(r, 4, 8) for r in range(4)] == [0, 1, 2, 3]
    assert device_for_rank(0, 1, 1) == 0  # the 1-rank NCCL check of a one-GPU host
    with pytest.raises(ValueError, match="2 ranks on this host but 1 GPU"):
        device_for_rank(1, 2, 1)


class FakeNccl:
    """Stand-in for cupy.cuda.nccl: records what the communicator is asked to do."""

    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def get_unique_id(self) -> tuple[int, ...]:
        return (42, 43)

    def NcclCommunicator(self, size: int, uid: Any, rank: int) -> Any:  # noqa: N802 (CuPy's name)
        self.calls.append(("init", size, uid, rank))
        return SimpleNamespace(allReduce=lambda *a: self.calls.append(("allReduce", *a)),
                               broadcast=lambda *a: self.calls.append(("broadcast", *a)))


def _device_array(dtype: str, n: int) -> Any:
    return SimpleNamespace(dtype=np.dtype(dtype), size=n, flags=SimpleNamespace(c_contiguous=True),
                           data=SimpleNamespace(ptr=0xBEEF))


@pytest.mark.parametrize("rank", [0, 1])
def test_nccl_comm_uses_rank_0s_unique_id_and_reduces_in_place(rank: int) -> None:
    nccl, sent = FakeNccl(), []

    def bcast_obj(obj: Any) -> Any:  # MPI's broadcast: rank 0's object reaches everyone
        sent.append(obj)
        return (42, 43)

    comm = SimpleNamespace(rank=rank, size=2, bcast_obj=bcast_obj)
    nc = NcclComm(comm, nccl=nccl, stream=lambda: 99)
    assert sent == [(42, 43) if rank == 0 else None]
    assert nccl.calls == [("init", 2, (42, 43), rank)]
    nc.allreduce_(_device_array("float32", 10))
    nc.bcast_(_device_array("float64", 3))
    assert nccl.calls[1:] == [("allReduce", 0xBEEF, 0xBEEF, 10, 7, 0, 99), ("broadcast", 0xBEEF, 0xBEEF, 3, 8, 0, 99)]
    with pytest.raises(TypeError, match="float32/float64"):
        nc.allreduce_(_device_array("int64", 3))


def test_gradient_buffer_has_spare_slots_after_the_gradients() -> None:
    tr = build(None)
    grads = tr.net.gradient(*next(iter(tr.loader)))
    assert grads.buffer.shape[0] == grads.flat.shape[0] + SPARE
    assert np.shares_memory(grads.flat, grads.buffer)


@pytest.mark.parametrize(("signals", "agreed"), [((), None), ((signal.SIGINT,), "SIGINT"),
                                                 ((signal.SIGINT, signal.SIGTERM), "SIGTERM")])
def test_signal_votes_travel_in_the_spare_slots(signals: tuple[int, ...], agreed: str | None) -> None:
    tr = build(None)
    grads = tr.net.gradient(*next(iter(tr.loader)))
    dp = DataParallel(dcomm.Solo())
    for s in signals:
        dp.vote_stop(s)
    _, loss = dp.allreduce(grads, tr.net.last_loss, 1.0)
    assert float(loss) == float(tr.net.last_loss) and dp.agreed_signal is None  # read with the losses, not before
    assert dp.read_votes() == agreed and grads.buffer[-SPARE + 1:].tolist()[:2] == [
        float(signal.SIGINT in signals), float(signal.SIGTERM in signals)]


def test_one_rank_data_parallel_is_the_plain_run() -> None:
    plain, solo = build(None), build(DataParallel(dcomm.Solo()))
    plain.fit(), solo.fit()
    a, b = state_of(plain), state_of(solo)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


class FakeComm(dcomm.Solo):
    """Stand-in for an MPIComm: rank ``rank`` of ``size``, ``local_rank`` of ``local_size`` on its host."""

    library = "FakeMPI 1.0"

    def __init__(self, rank: int, size: int, local_rank: int = 0, local_size: int = 1,
                 errors: list[str | None] | None = None) -> None:
        self.rank, self.size, self.local_rank, self.local_size = rank, size, local_rank, local_size
        self.errors = errors

    def allgather_obj(self, obj: Any) -> list[Any]:
        return self.errors if self.errors is not None else [obj] * self.size


@pytest.mark.parametrize(("local_rank", "spec", "want"), [(0, "cuda", "cuda:0"), (1, "cuda", "cuda:1"),
                                                            (1, "auto", "cuda:1"), (1, "cpu", "cpu")])
def test_rank_device_mapping_with_a_stand_in_gpu_host(monkeypatch: pytest.MonkeyPatch, local_rank: int,
                                                      spec: str, want: str) -> None:
    monkeypatch.setattr(backend, "cuda_status", lambda: (True, "", 2))  # a host with 2 GPUs
    assert Launch(FakeComm(2 + local_rank, 4, local_rank, 2)).device(spec) == want


def test_rank_device_mapping_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "cuda_status", lambda: (True, "", 1))
    with pytest.raises(ValueError, match="2 ranks on this host but 1 GPU"):
        Launch(FakeComm(1, 2, 1, 2)).device("cuda")
    with pytest.raises(ValueError, match="--device cuda:0 under 2 ranks"):
        Launch(FakeComm(0, 2, 0, 2)).device("cuda:0")
    monkeypatch.setattr(backend, "cuda_status", lambda: (False, "no driver", 0))
    assert Launch(FakeComm(1, 2, 1, 2)).device("cuda") == "cuda"  # backend.device warns and falls back
    assert Launch(FakeComm(0, 1)).device("cuda:3") == "cuda:3"  # one rank: as given


def test_launch_agreement_names_the_rank_that_failed() -> None:
    assert Launch(FakeComm(0, 2)).agree(None) is None
    assert Launch(FakeComm(0, 3, errors=[None, "no data", "other"])).agree(None) == "rank 1: no data"
    assert Launch(FakeComm(1, 2, errors=["bad flag", None])).agree(None) == "bad flag"


def test_only_rank_0_prints(capsys: pytest.CaptureFixture[str]) -> None:
    for rank in (0, 1):
        with Launch(FakeComm(rank, 2)).quiet_others():
            print(f"out {rank}")
            print(f"err {rank}", file=sys.stderr)
    out, err = capsys.readouterr()
    assert (out, err) == ("out 0\n", "err 0\n")


def test_launch_words_and_summary() -> None:
    two = Launch(FakeComm(0, 2))
    assert two.words() == "data-parallel over 2 ranks (MPI FakeMPI 1.0)" and two.parallel
    assert two.summary() == {"ranks": 2, "mpi": "FakeMPI 1.0"}
    one = Launch(dcomm.Solo())
    assert one.summary() == {"ranks": 1, "mpi": None} and one.data_parallel() is None


# --- 2 ranks under mpiexec ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run tests/dist_worker.py on 2 ranks once; its files, per scenario and rank."""
    pytest.importorskip("mpi4py", reason="the multi-rank tests need mpi4py (pip install 'xpnet[mpi]')")
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec beside {sys.executable} (pip install mpich)")
    out = tmp_path_factory.mktemp("two-ranks")
    proc = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "tests.dist_worker", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _ranks(out: Path, name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return tuple(dict(np.load(out / f"{name}.rank{r}.npz")) for r in (0, 1))  # type: ignore[return-value]


def test_two_ranks_train_the_one_process_model(two_ranks: Path) -> None:
    r0, r1 = _ranks(two_ranks, "same")
    one = build(None)
    one.fit()
    ref = state_of(one)
    assert sorted(r0) == sorted([*ref, "status"]) and str(r0["status"]) == "completed"
    for k, v in ref.items():
        assert np.array_equal(r0[k], r1[k]), k  # the ranks hold the very same numbers
        if v.dtype.kind == "f":
            scale = max(float(np.max(np.abs(v))), 1e-12)
            assert float(np.max(np.abs(r0[k] - v))) <= 1e-9 * scale, k
        else:
            assert np.array_equal(r0[k], v), k


def test_dropout_masks_differ_per_rank_and_weights_stay_equal(two_ranks: Path) -> None:
    r0, r1 = _ranks(two_ranks, "dropout")
    assert int(r0["seed"]) == 3 and int(r1["seed"]) == rank_seed(3, 1)
    assert all(np.array_equal(r0[k], r1[k]) for k in r0 if k != "seed")


def test_batchnorm_running_statistics_per_rank_averaged_on_save_and_eval(two_ranks: Path) -> None:
    r0, r1 = _ranks(two_ranks, "batchnorm")
    live = [k for k in r0 if k.startswith("live/")]
    assert live and all(not np.allclose(r0[k], r1[k]) for k in live)  # each rank normalised its own part
    for k in live:
        name = k[len("live/"):]
        assert np.allclose(r0[f"saved/{name}"], (r0[k] + r1[k]) / 2, rtol=1e-12)
        assert np.array_equal(r0[f"saved/{name}"], r1[f"saved/{name}"])
        assert np.array_equal(r0[f"ended/{name}"], r1[f"ended/{name}"])  # averaged before evaluation


def test_a_signal_on_one_rank_stops_every_rank_after_the_same_step(two_ranks: Path) -> None:
    r0, r1 = _ranks(two_ranks, "stop")
    for r in (r0, r1):
        # sent after step 2 to rank 1 only; the vote is read with the losses, every 4 steps
        assert (str(r["status"]), str(r["signal"]), int(r["step"])) == ("interrupted", "SIGTERM", 4)


def test_a_time_based_save_due_on_one_rank_is_agreed_and_written_by_rank_0(two_ranks: Path) -> None:
    r0, r1 = _ranks(two_ranks, "save_vote")
    # due on rank 1's clock after step 2; read with the losses after step 3; then the epoch's end (step 5)
    assert r0["saves"].tolist() == r1["saves"].tolist() == [3, 5]
    assert (two_ranks / "vote.rank0.npz").exists() and not (two_ranks / "vote.rank1.npz").exists()


@pytest.mark.parametrize("stop", [6, 5], ids=["mid-epoch", "epoch-end"])
def test_resume_under_two_ranks_is_bit_identical(two_ranks: Path, stop: int) -> None:
    full, _ = _ranks(two_ranks, "resume_full")
    for resumed in _ranks(two_ranks, f"resume{stop}"):
        assert resumed.keys() == full.keys()
        assert [k for k in full if not np.array_equal(full[k], resumed[k])] == []


def test_timing_one_rank_counts_steps_and_the_buffer() -> None:
    net = nets.MultiLayerNet(784, [16], 10, device="cpu", seed=0)
    x = np.random.default_rng(0).random((20, 784), dtype=np.float32)
    r = time_steps(net, x, np.zeros(20, np.int64), steps=3, warmup=1, comm=dcomm.Solo())
    assert (r["ranks"], r["steps"], r["allreduce_share"], r["allreduce_alone_s"], r["mpi"]) == (1, 3, 0.0, None, None)
    assert r["allreduce_bytes"] == 4 * (784 * 16 + 16 + 16 * 10 + 10) and r["steps_per_s"] > 0
