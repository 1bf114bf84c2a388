"""xpnet-train (= ``xpnet train``): flags → RunConfig → Trainer, with every failure a one-line message.

The flags and their translation into a RunConfig are :mod:`xpnet.runflags` (the search reads
trials with the same parser); the Trainer is built by :func:`xpnet.train.config.build_trainer`
(as every trial's is). This module checks, writes the run's files and says how the run ended.

Exit codes: 0 trained (also early-stopped), 2 bad input (flags, files named by
flags; nothing is written), 3 the loss diverged (the last good checkpoint is
kept), 130 interrupted by Ctrl-C and 143 by SIGTERM (a checkpoint is saved),
1 anything else (e.g. a full disk). summary.json's status says which.

Everything is checked before the first byte is written: the flags, the device,
the data, the --resume checkpoint and the --out folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from xpnet import backend, fast_paths, runflags
from xpnet.accel import tuning
from xpnet.cli import _run_folder as run_folder
from xpnet.cli._common import run_notices
from xpnet.dist.comm import MPIUnavailable, launched_rank
from xpnet.dist.launch import Launch
from xpnet.train import checkpoint as ckpt
from xpnet.train import config as cfgmod
from xpnet.train import signals
from xpnet.train.config import ConfigError, RunConfig

PROG = runflags.PROG
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130  # SIGTERM: 143
build_parser = runflags.build_parser


UsageError = run_folder.UsageError


# --- messages --------------------------------------------------------------------------------

def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# --- the run ---------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xpnet-train`` and ``scripts/train.py``; returns the exit status.

    Under ``mpiexec -n N`` (N > 1) every rank runs this: one data-parallel run (docs/distributed.md).
    """
    try:
        launch = Launch()
    except MPIUnavailable as exc:
        if launched_rank() == 0:
            _say(f"error: {exc}")
        return EXIT_USAGE
    with launch.quiet_others():  # rank 0 alone prints
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = [PROG, *(sys.argv[1:] if argv is None else argv)]  # for the summary
        args.launch = launch
        if launch.parallel and not args.out and not args.resume:  # the clock names it: rank 0's name
            args.out = launch.same(str(run_folder.default()))
        try:
            # SIGTERM stops like Ctrl-C from here on (the trainer makes both graceful while it trains); as a
            # container's PID 1 the process would otherwise never see it.
            with signals.raise_on_signals(), run_notices(PROG, args.quiet):
                return _main(parser, args)
        except KeyboardInterrupt as exc:  # before training started (e.g. while reading the data): nothing written
            signum = signals.signum_of(exc)
            _say(f"interrupted by {signals.signal_name(signum)}; nothing was written")
            launch.abort(signals.exit_status(signum))  # other ranks may be waiting for this one
            return signals.exit_status(signum)


def _usage(parser: argparse.ArgumentParser, msg: str) -> NoReturn:
    parser.error(msg)  # prints usage + "xpnet-train: error: msg", exits 2


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    launch, error, said = args.launch, None, False
    try:
        plan = _prepare(parser, args)
    except UsageError as exc:
        error = str(exc)
    except SystemExit as exc:  # parser.error: the usage and the message are out already
        if not launch.parallel:
            raise
        error, said = f"bad arguments (exit {exc.code})", True
    error = launch.agree(error)  # every rank goes on, or none: the first reason, once (rank 0)
    if error is not None:
        if not said:
            _say(f"error: {error}")
        return EXIT_USAGE
    return _run(plan, launch)


class _Plan:
    """Everything checked and built, nothing written yet."""

    cfg: RunConfig
    device: backend.Device
    net: Any
    optimizer: Any
    data: cfgmod.Data
    out: Path
    resume: Path | None
    resume_state: dict[str, Any] | None
    quiet: bool
    checkpoint_every: float | None
    device_request: str
    argv: list[str]


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> _Plan:
    given = runflags.given_config(args)
    plan = _Plan()
    plan.quiet, plan.device_request, plan.argv = bool(args.quiet), args.device, list(args.argv)
    plan.checkpoint_every = args.checkpoint_every
    plan.resume, plan.resume_state = None, None

    # 1. The config: from the flags, or from the checkpoint plus the flags a resume may change.
    if args.resume:
        plan.resume = Path(args.resume)
        try:
            plan.resume_state = ckpt.load(plan.resume)
            stored = ckpt.read_config(plan.resume_state)
            cfg = RunConfig.from_dict(stored["run"])
        except (ckpt.CheckpointError, ConfigError, KeyError, TypeError) as exc:
            raise UsageError(f"--resume: {exc}") from None
        if plan.resume.is_dir():
            plan.resume = plan.resume / ckpt.FILENAME
        for field, value in given.items():
            if field in cfgmod.RESUMABLE:
                setattr(cfg, field, value)
                continue
            # Compare resolved values: --hidden 256,128 equals a stored "model default".
            want, have = dataclasses.replace(cfg, **{field: value}).hyper_parameters(), cfg.hyper_parameters()
            if want != have:
                changeable = ", ".join(_flag(f) for f in cfgmod.RESUMABLE if f in runflags.CONFIG_FLAGS)
                raise UsageError(f"{_flag(field)} {_show(want[field])} differs from the checkpoint's "
                                 f"{_show(have[field])}; a resumed run keeps its settings (only {changeable} "
                                 "may change)")
    else:
        cfg = RunConfig(**given)
    try:
        cfg.validate()
    except ConfigError as exc:
        _usage(parser, str(exc))
    plan.cfg = cfg

    if plan.resume_state is not None:
        st = ckpt.from_json_array(plan.resume_state["trainer/state"])
        if int(st["epoch"]) >= cfg.epochs and int(st["step_in_epoch"]) == 0:
            raise UsageError(f"the checkpoint has already trained {st['epoch']} of {cfg.epochs} epochs; "
                             f"pass --epochs N with N > {st['epoch']} to train further")

    # 2. The output folder: it must be writable and must not hold another run.
    plan.out = run_folder.choose(args.out, plan.resume)

    # 3. The device (warns once when cuda falls back to the CPU).
    try:
        plan.device = backend.device(args.launch.device(args.device))  # several ranks: their own GPUs
    except (backend.DeviceError, ValueError) as exc:
        _usage(parser, str(exc))

    # 4. Net, optimizer and data: the slow checks (the data is read and decoded here).
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        raise UsageError(f"--data-dir {cfg.data_dir} is not a folder")
    from xpnet.data import DataError

    try:
        plan.optimizer = cfgmod.build_optimizer(cfg)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    try:  # the data first: the net takes its input shape and class count from it
        plan.net, plan.data = cfgmod.build_net_and_data(cfg, plan.device)
    except ConfigError as exc:
        _usage(parser, str(exc))
    except (DataError, OSError) as exc:
        raise UsageError(_one_line(exc)) from None
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    if plan.resume_state is not None:
        stored_data = ckpt.read_config(plan.resume_state).get("data", {})
        for key in ("name", "n_train", "n_val", "n_test", "sample_shape", "classes"):
            if key in stored_data and stored_data[key] != plan.data.info[key]:
                raise UsageError(f"--resume: the checkpoint was trained on {key}={stored_data[key]}, "
                                 f"but the data now gives {plan.data.info[key]}")
    return plan


def _show(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple | list) else str(v)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _describe_net(cfg: RunConfig, net: Any) -> dict[str, Any]:
    n_params = sum(math.prod(tuple(p.shape)) for p in net.params.values())
    return {"name": cfg.model, "class": type(net).__name__, "input_shape": list(net.input_shape),
            "hidden": list(cfg.hidden_sizes), "n_params": int(n_params)}


def _run(plan: _Plan, launch: Launch) -> int:
    from xpnet.train import metrics
    from xpnet.train.checkpoint import Checkpoint
    from xpnet.train.metrics import MetricsCSV
    from xpnet.train.plots import Plot, plot_curves
    from xpnet.train.progress import ConsoleProgress
    from xpnet.train.selection import BEST_FILENAME, BestCheckpoint, select_and_test
    from xpnet.train.trainer import EarlyStopping

    cfg, out, dev = plan.cfg, plan.out, plan.device
    if dev.is_host:
        # An application's choice, not the library's: glibc keeps freed blocks, so the temporaries every
        # step reallocates cost no page faults (see accel.tuning.keep_freed_host_memory).
        tuning.keep_freed_host_memory()
    info = plan.data.info
    blas = tuning.blas_info() if dev.is_host else None  # NumPy's BLAS kernel, and any pin of it
    model = _describe_net(cfg, plan.net)
    dist, root = launch.data_parallel(), launch.is_root  # rank 0 alone prints and writes files
    callbacks: list[Any] = []
    if not plan.quiet and root:
        callbacks.append(ConsoleProgress(sys.stderr))
    best = None
    if cfg.patience is not None:
        best = BestCheckpoint(out / BEST_FILENAME)
        callbacks += [EarlyStopping(cfg.patience), best]
    checkpoint = Checkpoint(out / ckpt.FILENAME, every=plan.checkpoint_every)
    title = f"{info['name']} · {cfg.model} {','.join(map(str, cfg.hidden_sizes))} · {cfg.optimizer} " \
            f"lr {cfg.resolved_lr():g}{_schedule_words(cfg)} · batch {cfg.batch_size}"
    # The checkpoint first: on SIGTERM it is what must be on disk before a process manager's grace period ends.
    callbacks.append(checkpoint)
    if root:
        callbacks += [MetricsCSV(out / "metrics.csv"), Plot(out / "curves.png", title=title)]
    try:
        trainer = cfgmod.build_trainer(cfg, plan.net, plan.data, optimizer=plan.optimizer, callbacks=callbacks,
                                       config={"run": cfg.to_dict(), "data": info, "model": model}, dist=dist)
    except ValueError as exc:  # the batches cannot be cut for this many ranks (the same on every rank)
        if dist is None:
            raise
        _say(f"error: {exc}")
        return EXIT_USAGE
    if dist is not None and plan.data.test is not None:
        dist.shard(plan.data.test)
    if plan.resume_state is not None:
        try:
            trainer.load_state_dict(plan.resume_state)
        except (ValueError, KeyError, TypeError) as exc:
            _say(f"error: --resume: the checkpoint does not fit this run: {_one_line(exc)}")
            return EXIT_USAGE
        checkpoint.saved_step, checkpoint.saved_epoch = trainer.global_step, trainer.epoch
        plan.optimizer.lr = cfg.resolved_lr()  # --lr may change on resume; the stored one must not win
    summary = _start_summary(plan, model, blas, with_best=best is not None)
    summary["distributed"] = launch.summary()
    failed = _start_files(out, summary) if root else None
    failed = launch.same(failed)  # rank 0 made the folder, or every rank stops here
    if failed is not None:
        return failed

    if not plan.quiet:
        _start_line(plan, trainer, model, blas, launch)
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    except KeyboardInterrupt as exc:  # a second Ctrl-C/SIGTERM: stop at once, keep the last checkpoint
        signum = signals.signum_of(exc)
        result = trainer.result(time.perf_counter() - t0, "interrupted",
                                f"interrupted by a second {signals.signal_name(signum)}")
        result.signal = signals.signal_name(signum)
        _record_end(summary, out, result, time.perf_counter() - t0, write=root)
        where = f"; the last checkpoint (epoch {checkpoint.saved_epoch}, step {checkpoint.saved_step}) is " \
                f"{checkpoint.path}" if checkpoint.saved_step is not None else "; no checkpoint was written"
        _say(f"interrupted by {result.signal}{where}")
        launch.abort(signals.exit_status(signum))  # the other ranks may be waiting in the step's allreduce
        return signals.exit_status(signum)
    except Exception as exc:  # the disk filled up, the folder went away, or a bug: say so, record it
        error = _one_line(exc)
        if isinstance(exc, OSError):
            error = f"cannot write {exc.filename or out}: {exc.strerror or exc}"
        result = trainer.result(time.perf_counter() - t0, "failed", error)
        recorded = _record_end(summary, out, result, time.perf_counter() - t0, error=error, write=root)
        _say(f"error: {error}" + ("" if recorded else " (summary.json could not be updated either)"))
        if launch.parallel:  # the other ranks wait for this one in a collective: end them all
            if not isinstance(exc, OSError):
                traceback.print_exc(file=sys.__stderr__)
            launch.abort(EXIT_FAIL)
        if not isinstance(exc, OSError):
            raise  # a bug: its traceback is what a report needs
        return EXIT_FAIL
    selection = None
    if result.ok:  # the test set, once, on the weights chosen by validation (or the last epoch's)
        with_val = "val" in plan.data.evals
        selection = select_and_test(trainer, plan.data.test if with_val else None, best)
        if with_val and selection.test_acc is not None and selection.selected_epoch is not None and root:
            plot_curves(out / "curves.png", trainer.history, trainer.step_losses, title,
                        final_test=(selection.selected_epoch, selection.test_acc))
        if with_val and not plan.quiet and selection.test_acc is not None:
            _say(f"test {selection.test_acc:.4f} with the weights of epoch {selection.selected_epoch} "
                 f"(val {selection.val_acc:.4f}; chosen on val: "
                 f"{'best epoch' if best is not None else 'last epoch'})")
    wall = time.perf_counter() - t0

    res = _record_end(summary, out, result, wall, selection=selection, write=root)
    print(_final_line(info["name"], cfg, dev, res or metrics.final_results(result, selection), out))
    if res is None:
        _say(f"error: summary.json could not be written to {out}")
        return EXIT_FAIL
    return _end_message(plan, trainer, checkpoint, result)


def _start_files(out: Path, summary: dict[str, Any]) -> int | None:
    """Make the run folder and write the starting summary.json; the exit status if that failed, else None."""
    from xpnet.train import metrics

    try:
        run_folder.make(out)
    except UsageError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    try:
        metrics.write_summary(out / "summary.json", summary)
    except OSError as exc:
        _say(f"error: cannot write {exc.filename or out / 'summary.json'}: {exc.strerror or exc}")
        return EXIT_FAIL
    return None


def _start_summary(plan: _Plan, model: dict[str, Any], blas: dict[str, Any] | None, with_best: bool
                   ) -> dict[str, Any]:
    """summary.json as the run starts (status "running"); a resumed run keeps its start and its commands."""
    from xpnet.train import metrics
    from xpnet.train.selection import BEST_FILENAME

    cfg, out, dev, info = plan.cfg, plan.out, plan.device, plan.data.info
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    summary: dict[str, Any] = {
        "status": "running",
        "command": plan.argv,
        "started": started,
        "out": str(out),
        "resumed_from": str(plan.resume) if plan.resume else None,
        "dataset": info,
        "device": {"name": dev.name, "backend": dev.backend, "requested": plan.device_request,
                   **({"blas": blas} if blas is not None else {})},
        "model": model,
        "fast_paths": fast_paths.describe(dev, plan.net),
        "hyper_parameters": cfg.hyper_parameters(),
        "versions": metrics.package_versions(),
        "files": {"metrics": "metrics.csv", "curves": "curves.png", "checkpoint": ckpt.FILENAME,
                  **({"best": BEST_FILENAME} if with_best else {})},
    }
    summary["commands"] = [summary["command"]]
    if plan.resume_state is not None:  # a continued run keeps when it started and every command it took
        try:
            old = _read_json(out / "summary.json")
            summary["started"] = old.get("started", started)
            summary["commands"] = [*old.get("commands", [old["command"]]), summary["command"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return summary


def _start_line(plan: _Plan, trainer: Any, model: dict[str, Any], blas: dict[str, Any] | None,
                launch: Launch) -> None:
    """What runs where, the fast paths, and a note when the BLAS kernel is pinned below what the CPU can do."""
    cfg, dev, info = plan.cfg, plan.device, plan.data.info
    where = f"resuming at epoch {trainer.epoch + 1}, step {trainer.global_step}" if plan.resume \
        else f"{cfg.epochs} epochs of {trainer.steps_per_epoch} steps"
    n_classes = len(info.get("classes") or []) or 10
    _say(f"{cfg.model} {'-'.join(map(str, [*model['input_shape'], *cfg.hidden_sizes, n_classes]))} "
         f"({model['n_params']:,} params) on {info['name']} ({info['n_train']} train, "
         f"{info['n_val']} val, {info['n_test']} test{_decode_words(info)}) | {dev.name} ({dev.backend}) | "
         f"{cfg.optimizer} lr "
         f"{cfg.resolved_lr():g}{_schedule_words(cfg)}"
         f"{f' | augment {cfg.augment}' if cfg.augment else ''} | {where} | out: {plan.out}"
         f"{f' | {launch.words()}' if launch.parallel else ''}")
    _say(fast_paths.describe_line(dev, plan.net))
    note = tuning.pin_note(blas["core"], blas["pinned"], tuning.cpu_flags()) if blas is not None else None
    if note:
        _say(f"note: {note}")


def _decode_words(info: dict[str, Any]) -> str:
    """How a folder's or CIFAR-10's arrays were had this time: decoded now, or read from the decoded cache."""
    if info.get("kind") not in ("folder", "cifar10"):
        return ""
    how = "from the decoded cache" if info.get("cache_hit") else "decoded"
    return f"; {how} in {float(info.get('decode_s', 0.0)):.1f} s"


def _end_message(plan: _Plan, trainer: Any, checkpoint: Any, result: Any) -> int:
    """The last word on a run that ended without an exception, and its exit status."""
    cfg = plan.cfg
    if result.status == "diverged":
        kept = (f"the last good checkpoint (epoch {checkpoint.saved_epoch}) is kept at {checkpoint.path}"
                if checkpoint.saved_epoch is not None and checkpoint.path.exists()
                else "no checkpoint was written")
        _say(f"error: training diverged: {result.reason}. Try a lower --lr (this run used "
             f"{cfg.resolved_lr():g}); {kept}")
        return EXIT_DIVERGED
    if result.status == "interrupted":
        where = (f"after epoch {trainer.epoch}" if trainer.step_in_epoch == 0 else
                 f"in epoch {trainer.epoch + 1} at step {trainer.step_in_epoch}/{trainer.steps_per_epoch}")
        _say(f"interrupted by {result.signal or 'a stop request'} {where}; checkpoint saved to "
             f"{checkpoint.path}. Continue with: {PROG} --resume {checkpoint.path}")
        return signals.exit_status(result.signal) if result.signal else EXIT_INTERRUPTED
    if result.status == "early-stopped" and not plan.quiet:
        _say(f"stopped early: {result.reason}")
    return EXIT_OK


def _schedule_words(cfg: RunConfig) -> str:
    """' cosine, warm-up 2' and the like for the header line and the plot title ('' for a constant lr)."""
    words = [] if cfg.schedule == "constant" else [cfg.schedule]
    if cfg.schedule == "step":
        gamma = cfg.lr_gamma if cfg.lr_gamma is not None else cfgmod.DEFAULT_LR_GAMMA
        words = [f"step x{gamma:g} after {_show(cfg.lr_steps or ())}"]
    if cfg.warmup_epochs:
        words.append(f"warm-up {cfg.warmup_epochs}")
    if cfg.clip_norm is not None:
        words.append(f"clip {cfg.clip_norm:g}")
    return (" " + ", ".join(words)) if words else ""


def _record_end(summary: dict[str, Any], out: Path, result: Any, wall: float,
                error: str | None = None, selection: Any = None, write: bool = True) -> dict[str, Any] | None:
    """Write summary.json with how the run ended; the results written, or None if even that failed.

    Called after a failed write too: the atomic write that failed has already removed its temp file,
    and the summary is a few kilobytes, so a full disk usually still takes it.
    """
    from xpnet.train import metrics

    res = metrics.final_results(result, selection)
    res["wall_seconds_this_session"] = wall
    if result.signal:
        res["signal"] = result.signal
    if error is not None:
        res["error"] = error
    finished = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    summary.update(status=result.status, finished=finished, results=res, history=result.history)
    if not write:  # another rank of a data-parallel run writes it
        return res
    try:
        metrics.write_summary(out / "summary.json", summary)
    except OSError:
        return None
    return res


def _read_json(path: Path) -> dict[str, Any]:
    import json

    with open(path, encoding="utf-8") as f:
        return dict(json.load(f))


def _final_line(name: str, cfg: RunConfig, dev: backend.Device, res: dict[str, Any], out: Path) -> str:
    def acc(k: str) -> str:
        return f"{res[k]:.4f}" if res.get(k) is not None else "-"

    sps = f"{res['samples_per_s']:,.0f} samples/s" if res.get("samples_per_s") else "- samples/s"
    return (f"{name} {cfg.model}: test {acc('test_acc')}  val {acc('val_acc')}  train {acc('train_acc')}  "
            f"{res['epochs']} epochs  {res['seconds']:.1f}s  {sps}  on {dev.name}  [{res['status']}]  {out}")


if __name__ == "__main__":
    sys.exit(main())
