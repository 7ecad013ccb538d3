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


@contextlib.contextmanager
def _handling(signals: tuple[int, ...], handler) -> Iterator[None]:
    """``handler`` for ``signals`` within the block, the previous handlers after it (``None``, one not set from
    Python, becomes the default). Only the main thread may set handlers; from another thread (a command run from
    a thread) signals are left as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


def sigterm_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main thread."""
    return _handling((signal.SIGTERM,), _raise_terminated)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while a step that must not be cut in half runs (renaming a folder into place,
    cleaning up), and deliver the first one afterwards (main thread only)."""
    caught: list[int] = []
    try:
        with _handling(STOP_SIGNALS, lambda signum, frame: caught.append(signum)):
            yield
    finally:
        if caught:
            signal.raise_signal(caught[0])


def signals_ignored() -> contextlib.AbstractContextManager[None]:
    """Ignore SIGINT and SIGTERM within the block (main thread only): a second Ctrl-C cannot cut a last message
    short."""
    return _handling(STOP_SIGNALS, signal.SIG_IGN)


def signal_number(interrupt: KeyboardInterrupt) -> int:
    """The signal behind ``interrupt``: its ``signum`` (SIGTERM for :class:`Terminated`), else SIGINT (Ctrl-C)."""
    return int(getattr(interrupt, "signum", signal.SIGINT))


def signal_name(signum: int) -> str:
    """``Ctrl-C (SIGINT)`` or the signal's name, for messages."""
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number (143 for SIGTERM, 130 for Ctrl-C)."""
    return 128 + signal_number(interrupt)


def interrupted_by(stop: KeyboardInterrupt | int) -> str:
    """``interrupted by Ctrl-C (SIGINT)`` or ``interrupted by SIGTERM`` (``stop``: the interrupt or its signal
    number): how a command's last message begins."""
    return f"interrupted by {signal_name(stop if isinstance(stop, int) else signal_number(stop))}"


def stopped(prog: str, message: str, interrupt: KeyboardInterrupt) -> int:
    """How a command ends after Ctrl-C or SIGTERM: ``prog: message`` on stderr, printed with further stop signals
    ignored, and the exit status (130 / 143) returned."""
    with signals_ignored():
        print(f"{prog}: {message}", file=sys.stderr)
    return exit_status(interrupt)


def ignore_sigint_in_worker() -> None:
    """Initializer for worker processes: Ctrl-C goes to the whole process group, the parent alone handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
