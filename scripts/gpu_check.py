#!/usr/bin/env python3
"""``make gpu-check``: everything that proves xpnet's CUDA path, in one command, on a host with a GPU.

Runs with the Python it is started with (``make gpu-check PYTHON=...``), which must already have CuPy,
NumPy, array-api-compat, array-api-strict and pytest (GPU hosts are often offline: nothing is downloaded;
PyTorch, tqdm and matplotlib are used when present):

1. ``xpnet doctor --require-cuda``: every GPU computes a matmul, a compiled kernel and a random draw;
2. the whole test suite with ``XPNET_REQUIRE_CUPY=1``: a skipped cupy test is a failure;
3. ``scripts/bench.py --device cuda`` (with the PyTorch CUDA twin when torch sees the GPU);
4. the bare main job, ``scripts/train.py --device cuda``, on real MNIST (XPNET_DATA_DIR) to >= 97.5% test
   accuracy, or on the bundled sample when real MNIST is absent (then no accuracy bar);
5. the main job's training steps (and a dropout + batch-norm variant) for a few hundred steps under
   ``cupyx.allow_synchronize(False)``: a device->host sync anywhere in a step is an error.

Writes ``gpu-report/report.json`` and ``gpu-report/report.md`` (atomically) plus each step's log. Without a
usable CUDA device it stops at once: one line naming what is missing, exit 2. Exit 0 when every step passed,
1 when one failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("numpy", "array_api_compat", "array_api_strict", "pytest", "cupy")
MAIN_JOB_BAR = 0.975
NOSYNC_STEPS = 300


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
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run_step(name: str, cmd: list[str], out: Path, env: dict[str, str] | None = None,
             timeout: int = 1800, stdout: Path | None = None) -> dict[str, Any]:
    """Run one step, its output to ``out/<name>.log`` (stdout to ``stdout`` if given); returns name, command,
    exit status and seconds."""
    t0 = time.perf_counter()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    log = out / f"{name}.log"
    print(f"gpu-check: {name}: {' '.join(cmd)}", flush=True)
    with open(log, "w") as f, open(stdout or os.devnull, "w") as so:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=full_env, stdout=so if stdout else f, stderr=f,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    seconds = time.perf_counter() - t0
    print(f"gpu-check: {name}: exit {rc} in {seconds:.0f} s (log {log.relative_to(ROOT)})", flush=True)
    return {"name": name, "command": cmd, "rc": rc, "seconds": round(seconds, 1), "log": str(log.name)}


def nosync_steps(steps: int, variant: str) -> dict[str, Any]:
    """The main job's training steps under cupyx.allow_synchronize(False) (a child process runs this)."""
    import cupyx

    from xpnet import backend
    from xpnet.train.config import RunConfig, build_data, build_net, build_optimizer

    extra = {"dropout": 0.2, "batchnorm": True} if variant == "dropout+batchnorm" else {}
    cfg = RunConfig(data_dir=os.environ.get("XPNET_DATA_DIR"), **extra)
    dev = backend.device("cuda")
    net, opt = build_net(cfg, dev), build_optimizer(cfg)
    data = build_data(cfg, dev, tuple(net.input_shape))
    net.last_layer.check_labels = False  # as the Trainer does: the DataLoader validated the labels once
    losses, done = [], 0
    t0 = time.perf_counter()
    with cupyx.allow_synchronize(False):
        while done < steps:
            for x, t in data.train:
                grads = net.gradient(x, t)
                opt.update(net.params, grads)
                losses.append(net.last_loss)
                done += 1
                if done == steps:
                    break
    dev.synchronize()
    seconds = time.perf_counter() - t0
    values = backend.to_host(dev.xp.stack(losses)).tolist()
    finite = all(v == v and abs(v) != float("inf") for v in values)
    return {"variant": variant, "steps": done, "seconds": round(seconds, 2), "first_loss": values[0],
            "last_loss": values[-1], "finite": finite, "ok": finite and values[-1] < values[0]}


def summarize(out: Path, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """report.json's content: the steps plus what their outputs say (GPU, driver, CuPy, speed, accuracy)."""
    rep: dict[str, Any] = {"steps": steps, "python": sys.executable}
    doctor_json = out / "doctor.json"
    if doctor_json.exists():
        try:
            d = json.loads(doctor_json.read_text())
            rep["gpu"] = [dev.get("name") for dev in d.get("devices", [])]
            rep["driver_cuda"] = d.get("cuda", {}).get("driver supports CUDA")
            rep["cupy"] = d.get("versions", {}).get("cupy")
            rep["nvrtc"] = d.get("cuda", {}).get("NVRTC")
        except json.JSONDecodeError:
            pass
    if (out / "bench.json").exists():
        b = json.loads((out / "bench.json").read_text())
        rep["bench"] = [{"config": r["config"], "title": r["title"],
                         "xpnet_samples_per_s": r["xpnet"]["samples_per_s"],
                         "torch_samples_per_s": (r.get("torch") or {}).get("samples_per_s")}
                        for r in b.get("results", [])]
    summary = out / "main-job" / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        r = s.get("results") or {}
        rep["main_job"] = {"status": s.get("status"), "test_acc": r.get("test_acc"), "epochs": r.get("epochs"),
                           "seconds": r.get("seconds"), "dataset": s.get("dataset"), "device": s.get("device")}
    for step in steps:
        result = out / f"{step['name']}.json"
        if step["name"].startswith("nosync") and result.exists():
            step["result"] = json.loads(result.read_text())
    rep["ok"] = all(s["rc"] == 0 for s in steps)
    return rep


def markdown(rep: dict[str, Any]) -> str:
    lines = ["# xpnet gpu-check", "", f"GPU: {', '.join(map(str, rep.get('gpu') or ['?']))}; driver supports "
             f"CUDA {rep.get('driver_cuda', '?')}; CuPy {rep.get('cupy', '?')}; NVRTC {rep.get('nvrtc', '?')}", "",
             "| step | exit | seconds |", "| --- | --- | --- |"]
    lines += [f"| {s['name']} | {s['rc']} | {s['seconds']} |" for s in rep["steps"]]
    if rep.get("bench"):
        lines += ["", "| bench config | xpnet samples/s | PyTorch CUDA samples/s |", "| --- | --- | --- |"]
        for b in rep["bench"]:
            torch = f"{b['torch_samples_per_s']:,.0f}" if b["torch_samples_per_s"] else "n/a"
            lines.append(f"| {b['title']} | {b['xpnet_samples_per_s']:,.0f} | {torch} |")
    if rep.get("main_job"):
        m = rep["main_job"]
        lines += ["", f"Main job: status {m.get('status')}, test accuracy {m.get('test_acc')}, "
                      f"{m.get('seconds')} s."]
    lines += ["", "result: " + ("every step passed" if rep["ok"] else "FAILED (see the logs beside this file)"), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "gpu-report", help="report folder (default gpu-report/)")
    p.add_argument("--_nosync", dest="nosync", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_result", dest="result", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.nosync:  # child: one no-sync run, its result as JSON
        sys.path.insert(0, str(ROOT))
        res = nosync_steps(NOSYNC_STEPS, args.nosync)
        atomic_write(args.result, json.dumps(res, indent=2))
        print(json.dumps(res))
        return 0 if res["ok"] else 1

    why = missing()
    if why:
        print(f"gpu-check: cannot run here: {why}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    real_mnist = any((Path(d) / sub / "train-images-idx3-ubyte.gz").exists()
                     for d in filter(None, [os.environ.get("XPNET_DATA_DIR")]) for sub in ("mnist", "."))
    data_env = {} if real_mnist else {"XPNET_OFFLINE": "1"}  # the bundled sample, no download
    steps = [
        run_step("doctor", [py, "-m", "xpnet", "doctor", "--require-cuda"], out),
        run_step("doctor-json", [py, "-m", "xpnet", "doctor", "--json", "--require-cuda"], out,
                 stdout=out / "doctor.json"),
    ]
    steps.append(run_step("tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                    "--junitxml", str(out / "tests.xml")], out, {"XPNET_REQUIRE_CUPY": "1"}))
    steps.append(run_step("bench", [py, "scripts/bench.py", "--device", "cuda", "--out", str(out / "bench.json")],
                          out))
    main_out = out / "main-job"
    if (main_out / "summary.json").exists():
        for f in main_out.iterdir():
            f.unlink()
    steps.append(run_step("main-job", [py, "scripts/train.py", "--device", "cuda", "--out", str(main_out)],
                          out, data_env))
    for variant in ("main", "dropout+batchnorm"):
        name = f"nosync-{variant.replace('+', '-')}"
        steps.append(run_step(name, [py, str(Path(__file__).resolve()), "--_nosync", variant,
                                     "--_result", str(out / f"{name}.json")], out, data_env))
    rep = summarize(out, steps)
    main_job = rep.get("main_job") or {}
    if real_mnist:
        acc = main_job.get("test_acc")
        bar_ok = isinstance(acc, int | float) and acc >= MAIN_JOB_BAR
        rep["main_job_bar"] = {"required": MAIN_JOB_BAR, "ok": bar_ok}
        rep["ok"] = rep["ok"] and bar_ok
    else:
        rep["main_job_bar"] = {"required": None, "ok": None, "note": "real MNIST absent: the bundled sample ran"}
    atomic_write(out / "report.json", json.dumps(rep, indent=2, default=str))
    atomic_write(out / "report.md", markdown(rep))
    print(f"gpu-check: {'every step passed' if rep['ok'] else 'FAILED'}; report: {out / 'report.md'}")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
