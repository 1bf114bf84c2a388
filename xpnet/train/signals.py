"""Stopping on a signal: SIGTERM is handled like Ctrl-C, and a second signal stops at once.

Why SIGTERM: ``docker stop``, Kubernetes, systemd and batch schedulers send SIGTERM and, after a grace
period, SIGKILL. Python installs a handler for SIGINT only, and the kernel drops every signal that PID 1
(a container's entrypoint) has no handler for, so without one ``docker stop`` waits out its grace period
and kills the run. Two tools, for two kinds of work:

- :class:`GracefulStop` for loops with a safe point (the trainer's step, a search worker's trial): the
  first SIGINT or SIGTERM only calls ``on_signal`` (which asks the loop to stop after the current step);
  a second one raises :class:`Interrupted` at once.
- :func:`raise_on_signals` for work without one (reading data, an experiment script): SIGTERM raises
  :class:`Interrupted` just as SIGINT raises ``KeyboardInterrupt``, so one ``except KeyboardInterrupt``
  handles both.

Exit statuses follow the shell's convention, 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.
Signal handlers belong to the main thread; in any other thread both tools do nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

#: The signals that mean "please stop": Ctrl-C and the polite kill of every process manager.
HANDLED: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Stop now: a second signal (or the first, where no safe point exists). ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = int(signum)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(sig: int | str) -> int:
    """The shell's exit status for a process ended by a signal (number or name): 130 SIGINT, 143 SIGTERM."""
    return 128 + int(signal.Signals[sig] if isinstance(sig, str) else sig)


def signum_of(exc: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: its ``signum`` if it is :class:`Interrupted`, else SIGINT."""
    return int(getattr(exc, "signum", signal.SIGINT))


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class GracefulStop:
    """Context manager: the first handled signal calls ``on_signal(signum)``; a second raises Interrupted.

    ``received`` holds the first signal's number (None until one came). The previous handlers come back
    on exit, so nested uses and callers' own handlers keep working.
    """

    def __init__(self, on_signal: Callable[[int], None] | None = None,
                 signals: tuple[signal.Signals, ...] = HANDLED) -> None:
        self.on_signal = on_signal
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str | None:
        """The first signal's name (``SIGTERM``), or None."""
        return None if self.received is None else signal_name(self.received)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise Interrupted(signum)
        self.received = signum
        if self.on_signal is not None:
            self.on_signal(signum)

    def __enter__(self) -> GracefulStop:
        self.received = None
        if _in_main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        previous, self._previous = self._previous, {}
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def raise_on_signals(signals: tuple[signal.Signals, ...] = HANDLED) -> Iterator[None]:
    """Within the block every handled signal raises :class:`Interrupted` (a KeyboardInterrupt) at once."""
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
