"""How runs end: SIGTERM like Ctrl-C (also as PID 1), a second signal, time-based checkpoints, failures.

Real signals throughout: in-process ones through ``os.kill(os.getpid(), ...)`` from a callback (so the
moment is exact), and to a child ``scripts/train.py`` (so the console entry point is what is tested).
The child runs on xpnet's bundled MNIST sample, so these tests need no download and no data folder.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xpnet import backend
from xpnet.cli.train import main
from xpnet.train import Callback, Checkpoint, Trainer
from xpnet.train import checkpoint as ckpt
from xpnet.train import config as cfgmod
from xpnet.train.config import parse_duration
from xpnet.train.signals import GracefulStop, Interrupted, exit_status, raise_on_signals, signum_of

from .test_train import assert_same_params, make

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"
SMALL = ["--limit-train", "3000", "--hidden", "32", "--device", "cpu", "--seed", "4"]


def env() -> dict[str, str]:
    e = dict(os.environ, XPNET_OFFLINE="1", PYTHONPATH=str(ROOT))
    e.pop("COLUMNS", None)
    return e


def summary(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "summary.json").read_text()))


def net_arrays(path: Path) -> dict[str, np.ndarray]:
    return {k: v for k, v in ckpt.load(path).items() if k.startswith(("net/", "optim/", "loader/"))}


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def trainer_state(path: Path) -> dict[str, Any]:
    return dict(ckpt.from_json_array(ckpt.load(path)["trainer/state"]))


# --- the signals module ----------------------------------------------------------------------------

def test_graceful_stop_first_signal_asks_second_raises() -> None:
    seen: list[int] = []
    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop(seen.append) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM] and stop.name == "SIGTERM"
        with pytest.raises(Interrupted) as info:
            os.kill(os.getpid(), signal.SIGINT)
    assert info.value.signum == signal.SIGINT and isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_raise_on_signals_turns_sigterm_into_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt) as info, raise_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # not reached: the handler raises first
    assert signum_of(info.value) == signal.SIGTERM and exit_status(signum_of(info.value)) == 143
    assert exit_status("SIGINT") == 130 and signum_of(KeyboardInterrupt()) == signal.SIGINT


def test_signal_tools_do_nothing_outside_the_main_thread() -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with GracefulStop(), raise_on_signals():
                pass
        except BaseException as exc:  # signal.signal would raise ValueError here
            errors.append(exc)

    th = threading.Thread(target=work)
    th.start()
    th.join()
    assert errors == []


# --- the trainer ------------------------------------------------------------------------------------

class SendSignals(Callback):
    """Send this process ``signals`` after step ``at`` (one by one, as a process manager would)."""

    def __init__(self, at: int, *signals: int) -> None:
        self.at, self.signals = at, signals

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.global_step == self.at:
            for s in self.signals:
                os.kill(os.getpid(), s)


def test_sigterm_finishes_the_step_saves_and_resumes_bit_identical(tmp_path: Path) -> None:
    cpu = backend.cpu()
    straight = make(cpu, epochs=3)
    straight.fit()
    first = make(cpu, epochs=3, callbacks=(SendSignals(17, signal.SIGTERM), Checkpoint(tmp_path / "c.npz")))
    r = first.fit()
    assert (r.status, r.signal, r.steps) == ("interrupted", "SIGTERM", 17) and "SIGTERM" in r.reason
    resumed = make(cpu, epochs=3)
    resumed.load_state_dict(ckpt.load(tmp_path / "c.npz"))
    assert resumed.result(0).status == "completed" and resumed.step_in_epoch == 5  # mid-epoch 2
    resumed.fit()
    assert_same_params(straight, resumed)
    assert resumed.step_losses == straight.step_losses


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    tr = make(backend.cpu(), epochs=3, callbacks=(SendSignals(5, signal.SIGTERM, signal.SIGTERM),
                                                   Checkpoint(tmp_path / "c.npz")))
    with pytest.raises(Interrupted) as info:
        tr.fit()
    assert info.value.signum == signal.SIGTERM and tr.global_step == 5
    assert not (tmp_path / "c.npz").exists()  # nothing was saved after the second signal
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored even so


class Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash (kill -9)")


def test_time_based_checkpoints_are_mid_epoch_and_resume_bit_identical(tmp_path: Path) -> None:
    now = [0.0]

    class Tick(Callback):  # every step takes one "second"
        def on_step_end(self, trainer: Trainer) -> None:
            now[0] += 1.0

    cpu = backend.cpu()
    straight = make(cpu, epochs=3)
    straight.fit()
    cp = Checkpoint(tmp_path / "c.npz", every=5.0, clock=lambda: now[0])
    first = make(cpu, epochs=3, callbacks=(Tick(), cp, Crash(19)))  # 12 steps per epoch
    with pytest.raises(RuntimeError):
        first.fit()
    # saved at steps 5, 10, 12 (epoch end), 17: the last is mid-epoch 2
    state = trainer_state(tmp_path / "c.npz")
    assert (state["global_step"], state["step_in_epoch"], state["epoch"]) == (17, 5, 1)
    resumed = make(cpu, epochs=3)
    resumed.load_state_dict(ckpt.load(tmp_path / "c.npz"))
    resumed.fit()
    assert_same_params(straight, resumed)
    assert resumed.step_losses == straight.step_losses


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("1h", 3600), ("1.5h", 5400),
                                               ("250ms", 0.25), ("45", 45), (" 2M ", 120)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "m", "10x", "-5s", "nan", "1e999s", "ten minutes"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_bad_checkpoint_every_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--checkpoint-every", "soon", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--checkpoint-every" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


# --- the CLI: SIGTERM, PID 1, kill -9 ------------------------------------------------------------------

def test_sigterm_during_the_evaluation_finishes_it_and_exits_143(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM arrives after the first batch of epoch 1's first evaluation: every evaluation of the epoch
    still runs to its end, the epoch is recorded and checkpointed, and the run stops there."""
    evaluate = Trainer.evaluate
    seen: dict[str, Any] = {"batches": 0}

    def evaluate_and_signal(self: Trainer, loader: Any) -> float:
        if "n" in seen:
            return evaluate(self, loader)
        seen["n"] = len(loader)

        def batches() -> Any:
            for i, batch in enumerate(loader):
                if i == 1:
                    os.kill(os.getpid(), signal.SIGTERM)
                seen["batches"] += 1
                yield batch

        seen["acc"] = evaluate(self, batches())
        return seen["acc"]

    monkeypatch.setattr(Trainer, "evaluate", evaluate_and_signal)
    out = tmp_path / "run"
    rc = main([*SMALL, "--val-split", "0.1", "--epochs", "3", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 143, err
    assert "interrupted by SIGTERM after epoch 1" in err and "Traceback" not in err
    assert seen["n"] == 3 and seen["batches"] == 3  # 2,700 training images in batches of 1,000: all read
    s = summary(out)
    assert s["status"] == "interrupted" and s["results"]["signal"] == "SIGTERM" and s["results"]["epochs"] == 1
    [record] = s["history"]
    assert record["train_acc"] == seen["acc"] and record["val_acc"] is not None  # the next evaluation ran too
    state = trainer_state(out / ckpt.FILENAME)
    assert state["epoch"] == 1 and state["step_in_epoch"] == 0 and state["global_step"] == record["step"]
    assert len((out / "metrics.csv").read_text().splitlines()) == 2


def test_a_second_signal_stops_the_command_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two SIGTERMs in epoch 2: no step finishes and nothing is saved after the second; the summary says so."""
    build = cfgmod.build_trainer

    def build_with_signals(*args: Any, **kwargs: Any) -> Trainer:
        trainer = build(*args, **kwargs)
        trainer.callbacks.append(SendSignals(trainer.steps_per_epoch + 3, signal.SIGTERM, signal.SIGTERM))
        return trainer

    monkeypatch.setattr(cfgmod, "build_trainer", build_with_signals)
    out = tmp_path / "run"
    rc = main([*SMALL, "--epochs", "3", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 143, err
    s = summary(out)
    steps = s["results"]["steps"]
    assert s["status"] == "interrupted" and s["results"]["signal"] == "SIGTERM"
    assert s["results"]["reason"] == "interrupted by a second SIGTERM" and s["results"]["epochs"] == 1
    saved = trainer_state(out / ckpt.FILENAME)  # epoch 1's checkpoint: the stop saved nothing
    assert (saved["epoch"], saved["step_in_epoch"], steps) == (1, 0, saved["global_step"] + 3)
    assert f"the last checkpoint (epoch 1, step {saved['global_step']})" in err and "Traceback" not in err
    assert len((out / "metrics.csv").read_text().splitlines()) == 2


def start(out: Path, *extra: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    args = [*prefix, sys.executable, str(SCRIPT), *SMALL, "--epochs", "1000", "--out", str(out), *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT)


def wait_for_epoch(proc: subprocess.Popen[str]) -> None:
    """Read the child's progress until an epoch has ended (one plain line per epoch off a terminal)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 90
    for line in proc.stderr:
        if line.startswith("epoch 1/") or time.monotonic() > deadline:
            return
    pytest.fail(f"the run ended before its first epoch: exit {proc.wait()}")


def check_interrupted(proc: subprocess.Popen[str], out: Path, sig: str) -> None:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == exit_status(sig), err
    assert "Traceback" not in err and f"interrupted by {sig}" in err and "--resume" in err
    s = summary(out)
    assert s["status"] == "interrupted" and s["results"]["signal"] == sig and s["finished"]
    assert trainer_state(out / ckpt.FILENAME)["global_step"] == s["results"]["steps"] > 0


def test_sigterm_to_the_trainer_exits_143_with_checkpoint_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start(out)
    wait_for_epoch(proc)
    proc.send_signal(signal.SIGTERM)
    check_interrupted(proc, out, "SIGTERM")
    steps = summary(out)["results"]["steps"]
    p = subprocess.run([sys.executable, str(SCRIPT), "--resume", str(out), "--epochs",
                        str(trainer_state(out / ckpt.FILENAME)["epoch"] + 2), "--quiet"],
                       capture_output=True, text=True, env=env(), cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    s = summary(out)
    assert s["status"] == "completed" and s["results"]["steps"] > steps and len(s["commands"]) == 2


def test_sigint_still_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start(out)
    wait_for_epoch(proc)
    proc.send_signal(signal.SIGINT)
    check_interrupted(proc, out, "SIGINT")


def test_sigterm_before_training_exits_143_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # SIGTERM arrives while the data is being read (the child sends it itself, at that exact moment).
    child = ("import os, signal, sys\n"
             "from xpnet.cli.train import main\n"
             "from xpnet.train import config\n"
             "load = config.build_data\n"
             "def build_data(*a, **k):\n"
             "    os.kill(os.getpid(), signal.SIGTERM)\n"
             "    return load(*a, **k)\n"
             "config.build_data = build_data\n"
             "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", child, *SMALL, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "interrupted by SIGTERM" in err
    assert not (out / "summary.json").exists()


def _unshare_reason() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    p = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"unshare --pid --fork --mount-proc is not permitted here: {p.stderr.strip() or p.returncode}"
    return None


def _child_of(pid: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    raise AssertionError(f"process {pid} started no child")


def test_sigterm_to_pid_1_of_a_pid_namespace(tmp_path: Path) -> None:
    """What `docker stop` does: SIGTERM from outside to the PID 1 of a namespace (dropped without a handler)."""
    reason = _unshare_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "run"
    proc = start(out, prefix=("unshare", "--pid", "--fork", "--mount-proc"))
    trainer = _child_of(proc.pid)
    ns_pids = [ln.split()[1:] for ln in Path(f"/proc/{trainer}/status").read_text().splitlines()
               if ln.startswith("NSpid:")][0]
    assert ns_pids[-1] == "1"  # the trainer is PID 1 in its namespace, as a container's entrypoint is
    wait_for_epoch(proc)
    os.kill(trainer, signal.SIGTERM)
    check_interrupted(proc, out, "SIGTERM")


def test_kill_9_after_a_time_based_checkpoint_resumes_bit_identical(tmp_path: Path) -> None:
    common = [*SMALL, "--batch-size", "10", "--train-eval-size", "500", "--epochs", "3", "--quiet"]
    straight = tmp_path / "straight"
    p = subprocess.run([sys.executable, str(SCRIPT), *common, "--out", str(straight)], capture_output=True,
                       text=True, env=env(), cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *common, "--out", str(out), "--checkpoint-every",
                             "1ms"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(),
                            cwd=ROOT)
    deadline, state = time.monotonic() + 120, None
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / ckpt.FILENAME).exists():
            proc.send_signal(signal.SIGSTOP)  # freeze it, look at the checkpoint, then kill it
            state = trainer_state(out / ckpt.FILENAME)
            if state["step_in_epoch"] > 0:
                proc.kill()
                break
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before a mid-epoch checkpoint was seen"
    assert state is not None and state["step_in_epoch"] > 0 and state["epoch"] < 3
    assert summary(out)["status"] == "running"  # kill -9 leaves no chance to write; the checkpoint is what counts
    p = subprocess.run([sys.executable, str(SCRIPT), "--resume", str(out), "--quiet"], capture_output=True,
                       text=True, env=env(), cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    assert_same_arrays(net_arrays(straight / ckpt.FILENAME), net_arrays(out / ckpt.FILENAME))
    assert summary(out)["status"] == "completed"


# --- failures ----------------------------------------------------------------------------------------

def test_full_disk_is_status_failed_with_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The checkpoint write runs out of space half-way; the small summary still gets written."""

    def savez_until_full(f: Any, **arrays: Any) -> None:
        f.write(b"\0" * 100_000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", savez_until_full)
    out = tmp_path / "run"
    rc = main([*SMALL, "--epochs", "2", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if "error:" in ln]
    assert "checkpoint.npz" in line and "No space left on device" in line
    s = summary(out)
    assert s["status"] == "failed" and s["results"]["status"] == "failed"
    assert s["results"]["error"] == line.split("error: ", 1)[1] and "\n" not in s["results"]["error"]
    assert s["results"]["epochs"] == 1 and s["finished"]
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # no temp file left (the checkpoint comes first)


def test_full_disk_for_real_on_a_tiny_tmpfs(tmp_path: Path) -> None:
    """The same on a real 160 KiB tmpfs (a private mount namespace): the checkpoint does not fit, the summary does."""
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", f"mount -t tmpfs -o size=160k tmpfs {tmp_path}"],
                           capture_output=True, text=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a private mount namespace here: "
                    + (probe.stderr.strip() if probe else "unshare is not installed"))
    out = tmp_path / "run"
    train = shlex.join([sys.executable, str(SCRIPT), *SMALL, "--epochs", "2", "--quiet", "--out", str(out)])
    script = (f"mount -t tmpfs -o size=160k tmpfs {shlex.quote(str(tmp_path))} && {train}; echo rc=$?; "
              f"ls -A {shlex.quote(str(out))}; echo ---; cat {shlex.quote(str(out / 'summary.json'))}")
    p = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, env=env(),
                       cwd=ROOT, timeout=120)
    head, _, body = p.stdout.partition("---\n")
    lines = head.split()
    assert lines[0] == "rc=1", p.stdout + p.stderr
    assert lines[1:] == ["summary.json"]  # no temp file left
    s = json.loads(body)
    assert s["status"] == "failed" and "No space left on device" in s["results"]["error"]
    assert "Traceback" not in p.stderr and "checkpoint.npz" in p.stderr
