#!/usr/bin/env python3
"""``make gpu-check``: the proof of xpnet's CUDA path, in stages that fit a short GPU host.

GPU hosts are lent for minutes (at most 10 a command), so the check is a fixed list of stages, each with a time
budget (together at most 480 s), each run in its own process group and killed at its budget:

1. ``doctor``: ``xpnet doctor --json --require-cuda`` once (every GPU: a matmul, a compiled kernel, a draw);
2. ``tests``: the cupy/cuda/nvrtc/gpu tests (``-k``) with ``XPNET_REQUIRE_CUPY=1``: a skipped cupy test fails;
3. ``train``: the main job, ``scripts/train.py --device cuda``, on real MNIST (XPNET_DATA_DIR) to >= 97.5% test
   accuracy (on the bundled sample when real MNIST is absent: then no accuracy bar);
4. ``sync``: a Trainer epoch of DeepConvNet with dropout, augmentation, clipping, a cosine schedule and
   patience under ``cupyx.allow_synchronize(False)`` (``scripts/gpu_nosync.py``);
5. ``bench``: MLP and SimpleConvNet training steps against PyTorch CUDA (``scripts/bench.py``), in one process;
6. ``nccl``: data-parallel training on one rank (``XPNET_MPI=1``): steps whose gradients go through CuPy's NCCL
   allreduce on the device give the very weights of the same steps without it (``scripts/gpu_nccl.py``).

``report.json`` and ``report.md`` (in ``--out``, default gpu-report/) are rewritten atomically after every stage,
so a run cut short still says how far it got; beside them is one log per stage and nothing else (a GPU tool
copies back a handful of files). What the stages write for themselves (the doctor's JSON, the JUnit XML, the
main job's run folder, the bench JSON) goes to ``--work`` (default a fresh temp folder) and is summarised into
report.json. ``--plan [--json]`` prints the stages and budgets (no CUDA needed); ``--stage NAME`` runs one
and updates its entry in an existing report. Without a usable CUDA device it stops at once: one line naming what
is missing, exit 2, nothing written. Exit 0 when every stage run passed, 1 otherwise, 130/143 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("numpy", "array_api_compat", "array_api_strict", "pytest", "cupy")
MAIN_JOB_BAR = 0.975
TOTAL_BUDGET_S = 480
TEST_SELECTION = "cupy or cuda or nvrtc or gpu"
KILL_GRACE_S = 5.0  # between SIGTERM to a stage's process group and SIGKILL


@dataclass(frozen=True)
class Stage:
    """One step of the proof: its name, its time budget and what it shows."""

    name: str
    budget_s: int
    about: str


STAGES: tuple[Stage, ...] = (
    Stage("doctor", 30, "xpnet doctor --json --require-cuda: a matmul, a compiled kernel and a draw per GPU"),
    Stage("tests", 180, f"pytest -k '{TEST_SELECTION}' with XPNET_REQUIRE_CUPY=1"),
    Stage("train", 100, "the main job on --device cuda, real MNIST, >= 97.5% test accuracy"),
    Stage("sync", 70, "a Trainer epoch of DeepConvNet (dropout, shift:2, clip-norm, cosine, patience) with no "
                      "device->host sync between the loss read-backs"),
    Stage("bench", 60, "MLP and SimpleConvNet training steps, xpnet vs PyTorch CUDA"),
    Stage("nccl", 30, "data-parallel on one rank (XPNET_MPI=1): steps through CuPy's NCCL allreduce give the "
                      "plain steps' weights"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the check: the stage running was stopped, the report says so."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def plan() -> dict[str, Any]:
    return {"stages": [{"name": s.name, "budget_s": s.budget_s, "about": s.about} for s in STAGES],
            "total_budget_s": sum(s.budget_s for s in STAGES)}


def missing() -> str | None:
    """What stops the check from running here, in one line, or None."""
    absent = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if absent:
        return (f"{sys.executable} lacks {', '.join(absent)} (a GPU host needs CuPy, NumPy, array-api-compat, "
                "array-api-strict and pytest installed; run make gpu-check GPU_PYTHON=/path/to/python)")
    sys.path.insert(0, str(ROOT))
    from xpnet import backend

    ok, reason, _ = backend.cuda_status()
    return None if ok else f"no usable CUDA device: {reason}"


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def real_mnist_dir() -> Path | None:
    """The folder holding real MNIST under $XPNET_DATA_DIR (``<dir>/mnist/`` or the files directly), or None."""
    base = os.environ.get("XPNET_DATA_DIR")
    if not base:
        return None
    for d in (Path(base) / "mnist", Path(base)):
        if (d / "train-images-idx3-ubyte.gz").exists():
            return d
    return None


# -- running one stage ------------------------------------------------------------------------------------

def run_bounded(cmd: list[str], budget_s: float, log: Path, env: dict[str, str] | None = None,
                stdout: Path | None = None) -> tuple[int, float, bool]:
    """Run ``cmd`` in its own process group, output to ``log`` (stdout to ``stdout`` if given); at ``budget_s``
    the whole group gets SIGTERM, then SIGKILL. Returns (exit status, seconds, killed at the budget).

    A SIGINT/SIGTERM to this process stops the group the same way and raises :class:`Interrupted`.
    """
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    got: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        got.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    try:
        with open(log, "w") as err, open(stdout or os.devnull, "w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out if stdout else err, stderr=err,
                                    start_new_session=True)
            killed = False
            while proc.poll() is None and not got:
                left = budget_s - (time.monotonic() - t0)
                if left <= 0:
                    killed = True
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=min(left, 0.2))
            if proc.poll() is None:
                _stop_group(proc)
            rc = proc.returncode
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if got:
        raise Interrupted(got[0])
    return rc, time.monotonic() - t0, killed


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the stage's process group, SIGKILL what is left after the grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def stage_commands(work: Path) -> dict[str, tuple[list[str], dict[str, str], Path | None]]:
    """Each stage's command line, extra environment and stdout file (None: into the log)."""
    py = sys.executable
    data_env = {} if real_mnist_dir() else {"XPNET_OFFLINE": "1"}  # no MNIST: the bundled sample, no download
    return {
        "doctor": ([py, "-m", "xpnet", "doctor", "--json", "--require-cuda"], {}, work / "doctor.json"),
        "tests": ([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", TEST_SELECTION,
                   "--junitxml", str(work / "tests.xml"), "tests"], {"XPNET_REQUIRE_CUPY": "1"}, None),
        "train": ([py, "scripts/train.py", "--device", "cuda", "--out", str(work / "main-job")], data_env, None),
        "sync": ([py, "scripts/gpu_nosync.py", "--device", "cuda", "--out", str(work / "sync.json")], data_env,
                 None),
        "nccl": ([py, "scripts/gpu_nccl.py", "--out", str(work / "nccl.json")], {"XPNET_MPI": "1"}, None),
        "bench": ([py, "scripts/bench.py", "--device", "cuda", "--configs", "mlp,conv", "--repeats", "3",
                   "--one-process", "--no-memory", "--out", str(work / "bench.json")], {}, None),
    }


# -- what each stage's output says -----------------------------------------------------------------------

def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_doctor(work: Path) -> dict[str, Any] | None:
    d = _json(work / "doctor.json")
    if not isinstance(d, dict):
        return None
    return {"gpu": [dev.get("name") for dev in d.get("devices", [])],
            "driver_cuda": d.get("cuda", {}).get("driver supports CUDA"),
            "cupy": d.get("versions", {}).get("cupy"), "nvrtc": d.get("cuda", {}).get("NVRTC"),
            "cuda_ok": d.get("cuda_ok")}


def read_tests(work: Path) -> dict[str, Any] | None:
    try:
        root = ET.parse(work / "tests.xml").getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": failed[:50]}


def read_train(work: Path) -> dict[str, Any] | None:
    s = _json(work / "main-job" / "summary.json")
    if not isinstance(s, dict):
        return None
    r = s.get("results") or {}
    job = {"status": s.get("status"), "test_acc": r.get("test_acc"), "epochs": r.get("epochs"),
           "seconds": r.get("seconds"), "dataset": s.get("dataset"), "device": s.get("device")}
    if real_mnist_dir():
        acc = job["test_acc"]
        job["bar"] = {"required": MAIN_JOB_BAR, "ok": isinstance(acc, int | float) and acc >= MAIN_JOB_BAR}
    else:
        job["bar"] = {"required": None, "ok": None, "note": "real MNIST absent: the bundled sample ran"}
    return job


def read_bench(work: Path) -> list[dict[str, Any]] | None:
    b = _json(work / "bench.json")
    if not isinstance(b, dict):
        return None
    return [{"config": r.get("config"), "title": r.get("title"),
             "xpnet_samples_per_s": (r.get("xpnet") or {}).get("samples_per_s"),
             "torch_samples_per_s": (r.get("torch") or {}).get("samples_per_s")} for r in b.get("results", [])]


READERS: dict[str, Callable[[Path], Any]] = {"doctor": read_doctor, "tests": read_tests, "train": read_train,
                                             "sync": lambda work: _json(work / "sync.json"), "bench": read_bench,
                                             "nccl": lambda work: _json(work / "nccl.json")}


def verdict(name: str, rc: int, killed: bool, facts: Any) -> str:
    """passed / failed / killed at budget, from the exit status and, where it has one, the stage's own bar."""
    if killed:
        return "killed at budget"
    if rc != 0:
        return "failed"
    if name == "train" and isinstance(facts, dict) and facts["bar"]["ok"] is False:
        return "failed"
    if name in ("sync", "nccl") and not (isinstance(facts, dict) and facts.get("ok")):
        return "failed"
    return "passed"


# -- the report ---------------------------------------------------------------------------------------------

def new_report(work: Path) -> dict[str, Any]:
    return {"plan": plan(), "python": sys.executable, "work": str(work), "ended": "running",
            "stages": [{"name": s.name, "budget_s": s.budget_s, "status": "pending"} for s in STAGES]}


def load_report(out: Path, work: Path) -> dict[str, Any]:
    """The report already in ``out`` when its plan is this one (``--stage`` adds to it), else a new one."""
    old = _json(out / "report.json")
    if isinstance(old, dict) and old.get("plan") == plan():
        old["work"] = str(work)
        return old
    return new_report(work)


def write_report(out: Path, rep: dict[str, Any]) -> None:
    done = [s for s in rep["stages"] if s["status"] not in ("pending", "running")]
    rep["ok"] = bool(done) and all(s["status"] == "passed" for s in done)
    rep["complete"] = len(done) == len(rep["stages"])
    atomic_write(out / "report.json", json.dumps(rep, indent=2, default=str) + "\n")
    atomic_write(out / "report.md", markdown(rep))


def markdown(rep: dict[str, Any]) -> str:
    doc = rep.get("doctor") or {}
    lines = ["# xpnet gpu-check", "",
             f"GPU: {', '.join(map(str, doc.get('gpu') or ['?']))}; driver supports CUDA "
             f"{doc.get('driver_cuda', '?')}; CuPy {doc.get('cupy', '?')}; NVRTC {doc.get('nvrtc', '?')}", "",
             "| stage | budget s | status | exit | seconds |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {s['name']} | {s['budget_s']} | {s['status']} | {s.get('rc', '')} | {s.get('seconds', '')} |"
              for s in rep["stages"]]
    if rep.get("tests"):
        t = rep["tests"]
        lines += ["", f"Tests: {t['passed']} passed, {t['failures'] + t['errors']} failed, {t['skipped']} skipped."]
        lines += [f"- FAILED {name}" for name in t["failed"]]
    if rep.get("train"):
        m = rep["train"]
        lines += ["", f"Main job: status {m.get('status')}, test accuracy {m.get('test_acc')} "
                      f"(bar {m['bar']['required']}), {m.get('seconds')} s, {m.get('epochs')} epochs."]
    if rep.get("sync"):
        s = rep["sync"]
        lines += ["", f"No-sync Trainer run: {s.get('steps')} steps, {s.get('flushes')} loss read-backs, "
                      f"syncs between them: {s.get('syncs_between_readbacks')}; {'ok' if s.get('ok') else 'FAILED'}"
                      f"{': ' + s['error'] if s.get('error') else ''}."]
    if rep.get("bench"):
        lines += ["", "| bench config | xpnet samples/s | PyTorch CUDA samples/s |", "| --- | --- | --- |"]
        for b in rep["bench"]:
            xp, torch = b["xpnet_samples_per_s"], b["torch_samples_per_s"]
            lines.append(f"| {b['title']} | {f'{xp:,.0f}' if xp else 'n/a'} | {f'{torch:,.0f}' if torch else 'n/a'} |")
    result = ("every stage passed" if rep["ok"] and rep["complete"] else
              "the stages run passed" if rep["ok"] else "FAILED (see the stage logs beside this file)")
    lines += ["", f"result: {result}; ended: {rep['ended']}", ""]
    return "\n".join(lines)


def run_stages(names: list[str], out: Path, work: Path) -> dict[str, Any]:
    """Run ``names`` in order, rewriting the report after each; a signal stops the run where it is."""
    rep = load_report(out, work)
    entries = {s["name"]: s for s in rep["stages"]}
    commands = stage_commands(work)
    rep["ended"] = "running"
    for name in names:
        entry = entries[name]
        cmd, env, stdout = commands[name]
        entry.update({"status": "running", "command": cmd, "log": f"{name}.log"})
        for k in ("rc", "seconds"):
            entry.pop(k, None)
        write_report(out, rep)
        print(f"gpu-check: {name} (budget {entry['budget_s']} s): {' '.join(cmd)}", flush=True)
        try:
            rc, seconds, killed = run_bounded(cmd, entry["budget_s"], out / f"{name}.log", env, stdout)
        except Interrupted as stop:
            entry["status"] = "interrupted"
            rep["ended"] = f"interrupted by {stop} during {name}"
            write_report(out, rep)
            raise
        facts = READERS[name](work) if name in READERS else None
        if facts is not None:
            rep[name] = facts
        entry.update({"rc": rc, "seconds": round(seconds, 1), "status": verdict(name, rc, killed, facts)})
        write_report(out, rep)
        print(f"gpu-check: {name}: {entry['status']} (exit {rc}, {seconds:.0f} s)", flush=True)
    rep["ended"] = "completed"
    write_report(out, rep)
    return rep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "gpu-report", help="report folder (default gpu-report/)")
    p.add_argument("--work", type=Path, default=None,
                   help="where the stages write their own files (default: a fresh temp folder)")
    p.add_argument("--plan", action="store_true", help="print the stages and their budgets; run nothing")
    p.add_argument("--json", action="store_true", help="--plan as JSON")
    p.add_argument("--stage", choices=STAGE_NAMES, action="append", default=None,
                   help="run only this stage (repeatable); its entry in an existing report is updated")
    args = p.parse_args(argv)
    if args.plan:
        the_plan = plan()
        print(json.dumps(the_plan, indent=2) if args.json else "\n".join(
            [f"{s['name']:<8} {s['budget_s']:>4} s  {s['about']}" for s in the_plan["stages"]]
            + [f"{'total':<8} {the_plan['total_budget_s']:>4} s"]))
        return 0
    why = missing()
    if why:
        print(f"gpu-check: cannot run here: {why}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (args.work or Path(tempfile.mkdtemp(prefix="xpnet-gpu-check-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    names = [n for n in STAGE_NAMES if n in (args.stage or STAGE_NAMES)]
    try:
        rep = run_stages(names, out, work)
    except Interrupted as stop:
        print(f"gpu-check: interrupted by {stop}; report: {out / 'report.md'}", file=sys.stderr)
        return 128 + stop.signum
    print(f"gpu-check: {'every stage passed' if rep['ok'] else 'FAILED'}; report: {out / 'report.md'}")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
