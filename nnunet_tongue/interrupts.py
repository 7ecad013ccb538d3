"""Ctrl-C and SIGTERM end a command the same clean way: clean-up runs, one line is printed, exit 130 / 143."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

#: the signals a user or a scheduler stops a command with
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that the clean-up written for Ctrl-C runs for it too."""

    signum = signal.SIGTERM


def _raise_terminated(signum, frame):
    raise Terminated()


def _in_main_thread() -> bool:
    """Only the main thread may set signal handlers; a command run from a thread leaves them alone."""
    return threading.current_thread() is threading.main_thread()


def _restore(previous: dict) -> None:
    """Put back the handlers ``signal.signal`` returned (``None``, one not set from Python, becomes the default)."""
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main thread; elsewhere
    (a command run from a thread) signals are left as they are."""
    if not _in_main_thread():
        yield
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated)}
    try:
        yield
    finally:
        _restore(previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while a step that must not be cut in half runs (renaming a folder into place,
    cleaning up), and deliver the first one afterwards. Only the main thread can; elsewhere this does nothing."""
    if not _in_main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        _restore(previous)
        if caught:
            signal.raise_signal(caught[0])


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM within the block (main thread only): a second Ctrl-C cannot cut a last message
    short."""
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        _restore(previous)


def signal_number(interrupt: KeyboardInterrupt) -> int:
    """The signal behind ``interrupt``: its ``signum`` (SIGTERM for :class:`Terminated`), else SIGINT (Ctrl-C)."""
    return int(getattr(interrupt, "signum", signal.SIGINT))


def signal_name(signum: int) -> str:
    """``Ctrl-C (SIGINT)`` or the signal's name, for messages."""
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number (143 for SIGTERM, 130 for Ctrl-C)."""
    return 128 + signal_number(interrupt)


def interrupted_by(interrupt: KeyboardInterrupt) -> str:
    """``interrupted by Ctrl-C (SIGINT)`` or ``interrupted by SIGTERM``: how a command's last message begins."""
    return f"interrupted by {signal_name(signal_number(interrupt))}"


def stopped(prog: str, message: str, interrupt: KeyboardInterrupt) -> int:
    """How a command ends after Ctrl-C or SIGTERM: ``prog: message`` on stderr, printed with further stop signals
    ignored, and the exit status (130 / 143) returned."""
    with signals_ignored():
        print(f"{prog}: {message}", file=sys.stderr)
    return exit_status(interrupt)


def ignore_sigint_in_worker() -> None:
    """Initializer for worker processes: Ctrl-C goes to the whole process group, the parent alone handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
